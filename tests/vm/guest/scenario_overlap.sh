# Scenario 7: a partition of the main disk is refused as its spare, and the disk as the spare of
# its own partition, by what the kernel says they are (no path text in common); nothing is written.
note start
# An MBR with one partition: sectors 2048-67583 (type 0x83), then the 0x55AA signature.
printf '\000\000\000\000\203\000\000\000\000\010\000\000\000\000\001\000' |
  dd of="$DISK_MAIN" bs=1 seek=446 conv=notrunc 2>/dev/null
printf '\125\252' | dd of="$DISK_MAIN" bs=1 seek=510 conv=notrunc 2>/dev/null
check partition sh -c "blockdev --rereadpt $DISK_MAIN && sleep 1 && test -b ${DISK_MAIN}1"
before=$(sha256sum "$DISK_MAIN" | cut -d' ' -f1)
# refused CHECK MAIN SPARE: `create` must exit 4 and say that the spare lies on the main disk.
refused() {
  out=$(dmremap create overlap --main "$2" --spare "$3" 2>&1)
  code=$?
  if [ $code -eq 4 ] && echo "$out" | grep -q "nothing was written"; then result "$1" true "$out"; else
    result "$1" false "exit $code: $out"
  fi
}
refused refuse_partition_as_spare "$DISK_MAIN" "${DISK_MAIN}1"
refused refuse_disk_as_spare_of_its_partition "${DISK_MAIN}1" "$DISK_MAIN"
after=$(sha256sum "$DISK_MAIN" | cut -d' ' -f1)
result disk_unchanged "$([ "$before" = "$after" ] && echo true || echo false)" "$before $after"
note end

# Scenario "removal": the spare disappears while serving (its virtio PCI device is removed, as
# a hot-unplugged disk is). A block remapped to it earlier, whose old copy the main disk can
# still read, must read as EIO, never the old copy; blocks that were not remapped still read
# and write; the status API reports the spare failed and the setup degraded.
note start
check dm_main sh -c "$(declare_functions) main_table | dmsetup create main" || return 1
check create dmremap create "$SETUP" --main "$MAIN" --spare "$DISK_SPARE" || return 1
# Without CAP_SYS_ADMIN in the first user namespace (root only inside a new one), the kernel
# refuses the nbd family's commands: serve says what is missing and exits 69.
no_capability() {
  unshare -U -r deno run -A /guest/dm-remap.js serve "$SETUP" --main "$MAIN" --spare "$DISK_SPARE" \
    --socket /tmp/uns.sock --api-socket /tmp/uns.api.sock --attach >/tmp/uns.log 2>&1
  code=$?
  tail -c 600 /tmp/uns.log
  [ $code -eq 69 ] && grep -q "needs CAP_SYS_ADMIN" /tmp/uns.log
}
check refused_without_capability no_capability
if serve_start --attach --connections 1; then result serve true "$(cat /tmp/serve.log)"; else
  result serve false "$(cat /tmp/serve.log)"
  return 1
fi
waited=0
until [ "$(cat /sys/block/nbd0/size 2>/dev/null)" -gt 0 ] 2>/dev/null || [ $waited -gt 100 ]; do
  sleep 0.1
  waited=$((waited + 1))
done
dd if=/dev/urandom of=/tmp/old bs=4096 count=1 2>/dev/null
dd if=/dev/urandom of=/tmp/new bs=4096 count=1 2>/dev/null
dd if=/dev/urandom of=/tmp/other bs=4096 count=1 2>/dev/null
check write_old dd if=/tmp/old of="$NBD" bs=4096 seek=2000 count=1 oflag=direct
# Block 2000 (main sectors 16000-16007) goes bad; the next write to it is remapped.
check set_bad main_set_bad 16000:8
check write_new dd if=/tmp/new of="$NBD" bs=4096 seek=2000 count=1 oflag=direct
check remapped sh -c "$(declare_functions) [ \$(status_json | json_number remaps) -eq 1 ]"
# The main disk reads again, with the old copy of block 2000 under the remap.
check main_readable_again main_set_bad
check read_new sh -c "dd if=$NBD bs=4096 skip=2000 count=1 iflag=direct 2>/dev/null | cmp - /tmp/new"

spare_pci=$(dirname "$(readlink -f /sys/block/"${DISK_SPARE#/dev/}"/device)")
check remove_spare sh -c "echo 1 >$spare_pci/remove && sleep 1 && ! [ -e $DISK_SPARE ]"
rm -f /tmp/got
dd if="$NBD" of=/tmp/got bs=4096 skip=2000 count=1 iflag=direct 2>/tmp/dd.err
code=$?
size=$(wc -c </tmp/got 2>/dev/null || echo 0)
stale=$(cmp -s /tmp/got /tmp/old && echo "THE OLD COPY" || echo "not the old copy")
result read_remapped_is_eio "$([ $code -ne 0 ] && [ "$size" -eq 0 ] && echo true || echo false)" "dd exit $code, $size bytes ($stale): $(cat /tmp/dd.err)"
check read_unremapped sh -c "dd if=$NBD bs=4096 skip=10 count=1 iflag=direct of=/dev/null"
check write_unremapped sh -c "dd if=/tmp/other of=$NBD bs=4096 seek=11 count=1 oflag=direct && dd if=$NBD bs=4096 skip=11 count=1 iflag=direct 2>/dev/null | cmp - /tmp/other"
status=$(status_json)
flat=$(echo "$status" | tr -d ' \n')
result status_degraded "$(echo "$flat" | grep -q '"state":"degraded"' && echo "$flat" | grep -q '"failed"' && echo true || echo false)" "$status"
kill -TERM "$SERVE_PID"
wait "$SERVE_PID"
observe serve_log "$(tail -c 1500 /tmp/serve.log)"
note end

# Scenario "main_removal": the main disk (a raw virtio disk here, so nothing stands between it
# and the server) disappears while serving: its virtio PCI device is removed, as a
# hot-unplugged disk is. Reads and writes then fail with EIO, the status API reports the setup
# failed, and nothing is remapped or made pending: the disk is gone, its blocks are not bad.
note start
MAIN=$DISK_MAIN
check create dmremap create "$SETUP" --main "$MAIN" --spare "$DISK_SPARE" || return 1
if serve_start --attach --connections 1; then result serve true "$(cat /tmp/serve.log)"; else
  result serve false "$(cat /tmp/serve.log)"
  return 1
fi
dd if=/dev/urandom of=/tmp/data bs=4096 count=4 2>/dev/null
check write_before dd if=/tmp/data of="$NBD" bs=4096 seek=100 count=4 oflag=direct
main_pci=$(dirname "$(readlink -f /sys/block/"${DISK_MAIN#/dev/}"/device)")
check remove_main sh -c "echo 1 >$main_pci/remove && sleep 1 && ! [ -e $DISK_MAIN ]"
eio() { ! "$@" 2>/tmp/eio.err && grep -q "Input/output error" /tmp/eio.err && cat /tmp/eio.err; }
check read_is_eio eio dd if="$NBD" of=/dev/null bs=4096 skip=100 count=1 iflag=direct
check write_is_eio eio dd if=/tmp/data of="$NBD" bs=4096 seek=200 count=1 oflag=direct
check read_elsewhere_is_eio eio dd if="$NBD" of=/dev/null bs=4096 skip=5000 count=1 iflag=direct
status=$(status_json)
flat=$(echo "$status" | tr -d ' \n')
result status_failed "$(echo "$flat" | grep -q '"state":"failed"' && echo true || echo false)" "$status"
result nothing_remapped "$([ "$(echo "$status" | json_number remaps)" = 0 ] && echo "$flat" | grep -q '"pendingBlocks":\[\]' && echo true || echo false)" "$status"
kill -TERM "$SERVE_PID"
wait "$SERVE_PID"
observe serve_log "$(tail -c 1500 /tmp/serve.log)"
note end

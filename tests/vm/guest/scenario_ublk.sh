# Scenario "ublk" (trixie's 6.12 kernel): the server serves /dev/ublkb0 itself through
# io_uring (--ublk, 2 queues). ext4 on it (mkfs discards the whole device: DISCARD requests);
# a tree of files verifies after a remount; free blocks of the filesystem turn bad under it
# (dm-error segments swapped in live) and a second tree written over them verifies: remapped,
# no I/O error in the kernel log; e2fsck is clean; the status API and discover name /dev/ublkb0;
# `dm-remap stop` refuses while the filesystem is mounted and, once it is not, stops the server,
# which removes the device.
note start
NBD=/dev/ublkb0
echo ublkb0 >/tmp/io_watch.dev

check ublk_control sh -c "ls -l /dev/ublk-control && cat /proc/sys/kernel/io_uring_disabled" || return 1
check dm_main sh -c "$(declare_functions) main_table | dmsetup create main" || return 1
check create dmremap create "$SETUP" --main "$MAIN" --spare "$DISK_SPARE" || return 1
: >/tmp/serve.log
if serve_start --ublk --queues 2 --depth 32 && wait_lines /tmp/serve.log 1 &&
  sleep 1 && grep -q "KERNEL  /dev/ublkb0" /tmp/serve.log; then
  result serve true "$(cat /tmp/serve.log)"
else
  result serve false "$(cat /tmp/serve.log; dmesg | tail -20)"
  return 1
fi
check ublk_device sh -c "test -b $NBD && echo size \$(cat /sys/block/ublkb0/size) lbs \$(cat /sys/block/ublkb0/queue/logical_block_size) fua \$(cat /sys/block/ublkb0/queue/fua) wc \$(cat /sys/block/ublkb0/queue/write_cache) discard \$(cat /sys/block/ublkb0/queue/discard_max_bytes) nr_hw_queues \$(ls /sys/block/ublkb0/mq | wc -l)"
check api_device sh -c "$(declare_functions) status_json | grep '\"kernelDevice\": *\"/dev/ublkb0\"'"
discover_device() { dmremap discover --timeout-ms 15000 | grep "kernel device: /dev/ublkb0"; }
check discover_device discover_device
check mkfs mkfs.ext4 -q -F "$NBD" || return 1
check mount mount -t ext4 "$NBD" "$MNT" || return 1
rm -f /tmp/sums
check write_tree write_tree "$MNT/t1" 60
check umount umount "$MNT"
drop_caches
check mount_again mount -t ext4 "$NBD" "$MNT"
check verify_after_remount verify_sums /tmp/sums

# Live defects: every free block of the filesystem (up to 40 MiB) fails on the main disk.
ranges=$(free_bad_ranges 10240)
check set_bad main_set_bad $ranges
check write_over_bad sh -c "$(declare_functions) MNT=$MNT write_tree $MNT/t2 60 && sync"
check umount_bad umount "$MNT"
drop_caches
check mount_bad mount -t ext4 "$NBD" "$MNT"
check verify_over_bad verify_sums /tmp/sums
status=$(status_json 2>&1)
remaps=$(echo "$status" | json_number remaps)
result status_shows_remaps "$([ "${remaps:-0}" -gt 0 ] && echo true || echo false)" "remaps ${remaps:-none}: $(echo "$status" | tr -d '\n ' | head -c 1200)"
errors=$(dmesg | grep -iE "ublk|I/O error|EXT4-fs (error|warning)|Buffer I/O" | grep -ivE "command line|mounted filesystem|unmounting filesystem|recovery complete")
result dmesg_clean "$([ -z "$errors" ] && echo true || echo false)" "$errors"
out=$(dmremap stop "$SETUP" 2>&1)
code=$?
result stop_refused_while_mounted "$([ $code -ne 0 ] && echo "$out" | grep -q "in use" && echo true || echo false)" "exit $code: $out"
check umount_end umount "$MNT"
check e2fsck e2fsck -fn "$NBD"
# `dm-remap stop` with nothing using the device: the server stops and removes it.
check dmremap_stop dmremap stop "$SETUP"
wait "$SERVE_PID"
code=$?
result serve_stop "$([ $code -eq 0 ] && echo true || echo false)" "exit $code: $(tail -c 1000 /tmp/serve.log)"
check device_removed sh -c "sleep 1; ! test -e $NBD && ! test -e /sys/block/ublkb0 && grep 'removed' /tmp/serve.log"

# Scenario 2: with the fs mounted and files being written, the free space of the main disk
# turns bad (dm-error segments loaded live); writes go on without errors, data written after
# the fault reads back intact, the kernel logs no I/O error, the status API shows the remaps.
note start
setup_serve_attach --fresh || return 1
note mkfs
check mkfs mkfs.ext4 -q -F -E nodiscard "$NBD"
note mkfs_done
check mount mount -t ext4 "$NBD" "$MNT"
check write_before write_tree "$MNT/before" 20
sync
ranges=$(free_bad_ranges 1000000)
result bad_ranges true "$(echo $ranges)"
writer live /tmp/stop >/tmp/writer.log 2>&1 &
writer_pid=$!
wait_lines /tmp/live.sums 5
note fault
check set_bad main_set_bad $ranges
check dm_table dmsetup table main
before_fault=$(wc -l </tmp/live.sums)
check written_after_fault wait_lines /tmp/live.sums $((before_fault + 12))
touch /tmp/stop
wait $writer_pid
writer_code=$?
result writer_no_errors "$([ $writer_code -eq 0 ] && echo true || echo false)" "exit $writer_code: $(cat /tmp/writer.log); $(wc -l </tmp/live.sums) files"
status=$(status_json)
remaps=$(echo "$status" | json_number remaps)
result status_shows_remaps "$([ "${remaps:-0}" -gt 0 ] && echo true || echo false)" "$status"
drop_caches
# Files the writer started after the table swap (one more is skipped: it may have been in
# flight) must verify; files written before may lie in a range that went bad: each of them
# must verify or fail to read with EIO, never read back wrong data.
sed -n "$((before_fault + 2)),\$p" /tmp/live.sums >/tmp/after.sums
sed -n "1,$((before_fault + 1))p" /tmp/live.sums >/tmp/before.sums
cat /tmp/after.sums >>/tmp/sums
result after_fault_files "$([ "$(wc -l </tmp/after.sums)" -ge 10 ] && echo true || echo false)" "$(wc -l </tmp/after.sums) files written after the fault"
check verify_after_fault verify_sums /tmp/sums
(cd "$MNT" && sha256sum -c /tmp/before.sums) >/tmp/before.out 2>&1
wrong=$(grep -c 'FAILED$' /tmp/before.out)
eio=$(grep -c "Input/output error" /tmp/before.out)
result before_fault_files_eio_or_intact "$([ "$wrong" -eq "$eio" ] && echo true || echo false)" \
  "$(grep -c ': OK$' /tmp/before.out) intact, $eio EIO, $wrong failed of $(wc -l </tmp/before.sums) written before the fault"
check umount umount "$MNT"
check remount mount -t ext4 -o ro "$NBD" "$MNT"
check verify_after_remount verify_sums /tmp/sums
check umount2 umount "$MNT"
check e2fsck e2fsck -fn "$NBD"
check_no_write_errors dmesg_no_write_errors
serve_stop
note end

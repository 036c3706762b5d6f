# Scenario 3, second boot on the same images: PARAMS holds "RANGES <bad ranges>" and the
# "<sha256>  <path>" lines the first boot printed after each fsync. The main disk is still
# bad in the same places. The spare's metadata checks clean, the journal replays, e2fsck
# -fn is clean, and every fsynced file verifies.
note start
ranges=$(echo "$PARAMS" | sed -n 's/^RANGES //p')
echo "$PARAMS" | grep -v '^RANGES' | grep . >/tmp/sums
result fsynced_files "$([ "$(wc -l </tmp/sums)" -ge 12 ] && echo true || echo false)" "$(wc -l </tmp/sums) files fsynced before the cut"
check spare_check_after_cut dmremap check "$DISK_SPARE"
setup_serve_attach $ranges || return 1
check replay sh -c "mount -t ext4 $NBD $MNT && umount $MNT"
check e2fsck e2fsck -fn "$NBD"
check mount mount -t ext4 -o ro "$NBD" "$MNT"
check verify_fsynced verify_sums /tmp/sums
status=$(status_json)
remaps=$(echo "$status" | json_number remaps)
result remaps_survived "$([ "${remaps:-0}" -gt 0 ] && echo true || echo false)" "$remaps remaps"
umount "$MNT"
check_no_write_errors dmesg_no_write_errors
serve_stop
note end

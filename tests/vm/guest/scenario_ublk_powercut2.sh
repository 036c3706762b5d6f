# Scenario "ublk_powercut2" (trixie's 6.12 kernel), second boot on the same images: PARAMS holds
# "RANGES <bad ranges>" and the "<sha256>  <path>" lines the first boot printed after each
# fsync. The main disk is still bad in the same places. The spare's metadata checks clean,
# `assemble --scan` serves the setup on /dev/ublkb0 again, the journal replays, e2fsck -fn is
# clean, every fsynced file verifies, the remaps survived, no write failed in the kernel log,
# and `dm-remap stop` stops the server, which removes the device.
note start
NBD=/dev/ublkb0
echo ublkb0 >/tmp/io_watch.dev
LOG=/run/dm-remap/$SETUP.log
ranges=$(echo "$PARAMS" | sed -n 's/^RANGES //p')
echo "$PARAMS" | grep -v '^RANGES' | grep . >/tmp/sums
result fsynced_files "$([ "$(wc -l </tmp/sums)" -ge 12 ] && echo true || echo false)" "$(wc -l </tmp/sums) files fsynced before the cut"
check spare_check_after_cut dmremap check "$DISK_SPARE"
check dm_main sh -c "$(declare_functions) main_table $ranges | dmsetup create main" || return 1
mark after-cut
check assemble_chose_ublk assemble_ublk || return 1
check replay sh -c "mount -t ext4 $NBD $MNT && umount $MNT"
check e2fsck e2fsck -fn "$NBD"
check mount mount -t ext4 -o ro "$NBD" "$MNT"
check verify_fsynced verify_sums /tmp/sums
status=$(dmremap status "$SETUP" --json 2>&1)
remaps=$(echo "$status" | json_number remaps)
result remaps_survived "$([ "${remaps:-0}" -gt 0 ] && echo true || echo false)" "$remaps remaps: $(echo "$status" | tr -d '\n ' | head -c 600)"
# status_device: the API's status and `dm-remap status` name /dev/ublkb0.
status_device() {
  echo "$status" | grep -q '"kernelDevice": *"/dev/ublkb0"' && dmremap status "$SETUP" | grep /dev/ublkb0
}
check status_device status_device
umount "$MNT"
# Reads of blocks never written (the bad free space) may fail (readahead); a failed write, a
# filesystem error or a lost page may not.
errors=$(dmesg_since after-cut | grep -iE "ublk|I/O error|EXT4-fs|Buffer I/O|lost (async )?page write")
bad=$(echo "$errors" | grep -iE "op 0x[1-9]|EXT4-fs (error|warning)|Buffer I/O error|lost (async )?page write")
result dmesg_no_write_errors "$([ -z "$bad" ] && echo true || echo false)" "$errors"
check dmremap_stop dmremap stop "$SETUP"
check device_removed sh -c "sleep 1; ! test -e $NBD && ! test -e /sys/block/ublkb0 && grep 'removed' $LOG"
note end

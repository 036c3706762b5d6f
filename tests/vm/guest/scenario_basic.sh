# Scenario 1: serve, nbd-client (unix socket, -b 4096, -C 2), mkfs.ext4, mount, a tree of
# files with known checksums, sync, umount, verify after a remount; e2fsck clean.
note start
setup_serve_attach --fresh || return 1
check nbd_size sh -c "blockdev --getsize64 $NBD; blockdev --getbsz $NBD"
note mkfs
check mkfs mkfs.ext4 -q -F -E nodiscard "$NBD"
note mkfs_done
check mount mount -t ext4 "$NBD" "$MNT"
note writing
check write_tree write_tree "$MNT/tree" 60
check sync sync
check verify_mounted verify_sums /tmp/sums
check umount umount "$MNT"
check remount mount -t ext4 -o ro "$NBD" "$MNT"
check verify_after_remount verify_sums /tmp/sums
# Negative control: a deliberately wrong checksum must be reported.
sed '1s/^./x/' /tmp/sums >/tmp/sums.bad
if verify_sums /tmp/sums.bad >/dev/null 2>&1; then result negative_control false "a wrong checksum verified"; else
  result negative_control true "a wrong checksum was reported"
fi
check connections sh -c "$(declare_functions) status_json | grep -E '\"connections\": *2'"
check umount2 umount "$MNT"
check e2fsck e2fsck -fn "$NBD"
check_no_nbd_errors dmesg_clean
check nbd_disconnect nbd-client -d "$NBD"
serve_stop
note end

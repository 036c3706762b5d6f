# Scenario 3, first boot: the free space of the main disk is bad (so new data lives on the
# spare), a writer without fsync runs in the background, and a second one fsyncs each file
# (and its directory) and then prints "DMREMAP-FSYNCED <sha256>  <path>". The host kills
# qemu (SIGKILL) after a few of those lines: a power cut in the middle of the writes.
note start
setup_serve_attach --fresh || return 1
check mkfs mkfs.ext4 -q -F -E nodiscard "$NBD"
check mount mount -t ext4 "$NBD" "$MNT"
check write_base write_tree "$MNT/base" 12
check sync sync
sed 's/^/DMREMAP-FSYNCED /' /tmp/sums
ranges=$(free_bad_ranges 1000000)
result bad_ranges true "$(echo $ranges)"
check set_bad main_set_bad $ranges
mkdir -p "$MNT/bulk" "$MNT/synced"
(
  i=0
  while :; do
    dd if=/dev/urandom of="$MNT/bulk/b$i" bs=65536 count=4 2>/dev/null
    i=$((i + 1))
  done
) &
note writing
i=0
while :; do
  dd if=/dev/urandom of="$MNT/synced/s$i" bs=1024 count=$(((i * 29) % 200 + 8)) conv=fsync 2>/dev/null ||
    { result fsync_writer false "dd failed on s$i"; break; }
  sync "$MNT/synced" || { result fsync_writer false "fsync of the directory failed"; break; }
  echo "DMREMAP-FSYNCED $(cd "$MNT" && sha256sum "synced/s$i")"
  i=$((i + 1))
  [ $i -ge 200 ] && break
done
result not_killed false "the host should have killed the VM by now"

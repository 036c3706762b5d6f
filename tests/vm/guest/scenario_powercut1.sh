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
power_cut_writers

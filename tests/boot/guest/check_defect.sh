# A grown defect made live under the mounted root: the main disk is dmr-main, a dm-linear device
# (tests/boot/guest/initramfs-dm-main); the blocks of a file are swapped for dm-error there, then
# the file is written again. The server must remap those blocks to the spare, so the write, a
# read back past the page cache and the filesystem see no error.
file=/var/lib/boot-test/defect.bin
mkdir -p /var/lib/boot-test
head -c 1048576 /dev/urandom >"$file"
sync "$file"
# The file's first extent, in 4 KiB blocks of the filesystem: the remapped device's block N is
# block N of the main disk.
extent=$(filefrag -v -b4096 "$file" | awk '$1 == "0:" { print $4, $6 }' | tr -d '.:')
start=${extent% *}
length=${extent#* }
under=$(dmsetup table dmr-main | awk '{ print $4 }')
total=$(blockdev --getsz /dev/mapper/dmr-main)
s=$((start * 8))
n=$((length * 8))
printf '0 %s linear %s 0\n%s %s error\n%s %s linear %s %s\n' \
  "$s" "$under" "$s" "$n" $((s + n)) $((total - s - n)) "$under" $((s + n)) >/run/defect.table
# Reload and resume only: a dmsetup suspend of the disk under root would leave the next command
# waiting on root itself; resume swaps the tables inside one call.
check defect_made_live sh -c "dmsetup reload dmr-main /run/defect.table && dmsetup resume dmr-main && dmsetup table dmr-main"
check defect_is_an_error sh -c "! dd if=/dev/mapper/dmr-main of=/dev/null bs=4096 skip=$start count=1 iflag=direct 2>&1"
head -c 1048576 /dev/urandom >/run/defect.new
want=$(sha256sum </run/defect.new | cut -d' ' -f1)
check defect_write_ok dd if=/run/defect.new of="$file" bs=1M count=1 oflag=direct conv=notrunc,fsync
echo 3 >/proc/sys/vm/drop_caches
check defect_reads_back sh -c "have=\$(sha256sum <$file | cut -d' ' -f1); echo \$have; [ \$have = $want ]"
check defect_remapped sh -c "dm-remap status root --json | grep -o '\"remaps\": *[0-9][0-9]*' | head -1 | awk -F: '{ print; exit !(\$2 >= $length) }'"
check no_errors_after_defect sh -c "! dmesg | grep -E 'I/O error, dev nbd|Buffer I/O error|EXT4-fs (error|warning)|nbd.*error'"
result observe:defect_dmesg true "$(dmesg | grep -E 'dm-0|critical' | tail -5)"

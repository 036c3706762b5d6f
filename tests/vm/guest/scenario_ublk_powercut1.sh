# Scenario "ublk_powercut1" (trixie's 6.12 kernel), the power cut of scenario 3 on ublk, first
# boot: `assemble --scan` finds the setup and, as the kernel has ublk_drv, starts its serve with
# /dev/ublkb0 (export auto). ext4 on it; the free space of the main disk turns bad (new data
# lives on the spare); the writers of power_cut_writers run until the host kills qemu.
note start
NBD=/dev/ublkb0
echo ublkb0 >/tmp/io_watch.dev
LOG=/run/dm-remap/$SETUP.log
check dm_main sh -c "$(declare_functions) main_table | dmsetup create main" || return 1
check create dmremap create "$SETUP" --main "$MAIN" --spare "$DISK_SPARE" || return 1
check assemble_chose_ublk assemble_ublk || return 1
check mkfs mkfs.ext4 -q -F -E nodiscard "$NBD"
check mount mount -t ext4 "$NBD" "$MNT"
check write_base write_tree "$MNT/base" 12
check sync sync
sed 's/^/DMREMAP-FSYNCED /' /tmp/sums
ranges=$(free_bad_ranges 1000000)
result bad_ranges true "$(echo $ranges)"
check set_bad main_set_bad $ranges
power_cut_writers

# rd.dm_remap=0 (and root on the main disk itself): the initramfs assembled nothing.
check root_not_on_nbd sh -c 'src=$(findmnt -no SOURCE /); echo "$src"; [ "$src" != /dev/nbd0 ]'
check no_root_daemon sh -c '! grep -l "^@dm-remap" /proc/[0-9]*/cmdline 2>/dev/null'
check no_runtime_copy_in_run sh -c '! findmnt /run/dm-remap/bin'

# The boot tests' first stage for the grown defect (tests/boot/boot_vm.ts), in a VM of its own: a
# disk holding a setup named "root" already would make create refuse the name.
export DM_REMAP_STATE_DIR=/tmp/state
# On the disks of serials defect-main and defect-spare: a setup "root" whose main disk is a
# dm-linear device, dmr-main, over the disk, as the guest's initramfs makes it again
# (tests/boot/guest/initramfs-dm-main) before assembling.
defect_main=$(disk_by_serial defect-main)
echo "0 $(blockdev --getsz "$defect_main") linear $defect_main 0" | dmsetup create dmr-main
if dmremap create root --main /dev/mapper/dmr-main \
  --spare "$(disk_by_serial defect-spare)" >/tmp/create.out 2>&1; then
  result create_defect true "$(dmsetup info -c --noheadings -o major,minor dmr-main)"
else
  result create_defect false "$(tr '\n"' ' _' </tmp/create.out)"
fi
dmsetup remove dmr-main

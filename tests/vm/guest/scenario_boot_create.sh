# The boot tests' first stage (tests/boot/boot_vm.ts): creates the setup "root" on the virtio
# disks, so the main disk (an ext4 root tree) and the spare are recognised by their serials in the
# real Debian guest. create never writes the main disk.
export DM_REMAP_STATE_DIR=/tmp/state
if dmremap create root --main "$DISK_MAIN" --spare "$DISK_SPARE" >/tmp/create.out 2>&1; then
  result create true ""
else
  result create false "$(tr '\n"' ' _' </tmp/create.out)"
fi
# A second setup, "data", on two more disks (serials data-main and data-spare): the boot tests
# plug its spare in while the guest runs, for udev and systemd to assemble it.
if dmremap create data --main "$(disk_by_serial data-main)" --spare "$(disk_by_serial data-spare)" >/tmp/create.out 2>&1; then
  result create_data true ""
else
  result create_data false "$(tr '\n"' ' _' </tmp/create.out)"
fi

#!/usr/bin/env bash
# Builds the Debian bookworm base system of the boot tests (tests/boot/) with mmdebstrap, from the
# apt sources only: systemd, udev, the kernel, initramfs-tools, dracut-core, e2fsprogs and kmod, as the directory
# tests/boot/.cache/base/. Idempotent: a stamp of this script and the package list skips it.
# dm-remap itself is installed on top by scripts/boot_vm_setup.sh (which calls this first).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=tests/boot/.cache
mkdir -p "$cache"
scripts/apt_ensure.sh mmdebstrap qemu-system-x86 e2fsprogs zstd cpio

# dracut-core (dracut's tools without the package that replaces initramfs-tools) builds the second
# initramfs of the guest.
packages=(systemd-sysv udev linux-image-amd64 initramfs-tools dracut-core e2fsprogs kmod util-linux
  procps dmsetup zstd)
stamp=$({
  cat "$0"
  echo "${packages[*]}"
} | sha256sum | cut -c1-16)
if [ -f "$cache/base.stamp" ] && [ "$(cat "$cache/base.stamp")" = "$stamp" ] && [ -d "$cache/base" ]; then
  exit 0
fi
echo "boot_vm_base: building the bookworm base system in $cache/base/" >&2
rm -rf "$cache/base.stamp" "$cache/base.part" "$cache/base"
# The kernel's own postinst builds an initramfs that boot_vm_setup.sh replaces: skip it here.
mmdebstrap --variant=minbase --include="$(
  IFS=,
  echo "${packages[*]}"
)" \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d"; echo COMPRESS=zstd >"$1/etc/initramfs-tools/conf.d/compress"' \
  --customize-hook='rm -f "$1"/boot/initrd.img-*' \
  bookworm "$cache/base.part" 2>&1 | tail -5 >&2
mv "$cache/base.part" "$cache/base"
echo "$stamp" >"$cache/base.stamp"

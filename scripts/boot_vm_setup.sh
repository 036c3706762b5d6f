#!/usr/bin/env bash
# Builds the real Debian guest of the boot tests (tests/boot/) in tests/boot/.cache/:
#   base/          bookworm with systemd, udev, the kernel, initramfs-tools (scripts/boot_vm_base.sh)
#   vmlinuz        the guest's kernel
#   initrd.img     built by the guest's own mkinitramfs, with dm-remap's hook (install.sh)
#   initrd-dracut.img  built by the guest's own dracut, with dm-remap's module (install.sh)
#   root.img       ext4 made from the guest tree with dm-remap installed (mke2fs -d), 2 GiB sparse:
#                  the main disk's content; the tests create the setup on it in a first VM
# Idempotent: a stamp of the inputs (this script, the base, the bundle, the install step's files).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/boot_vm_base.sh
cache=$(realpath tests/boot/.cache)
bundle=$(mktemp --suffix .js)
trap 'rm -f "$bundle"' EXIT
node_modules/.bin/deno bundle --quiet --output "$bundle" main.ts
stamp=$({
  cat "$0" "$cache/base.stamp" "$bundle" scripts/install.sh scripts/dm-remap.sh systemd/* udev/* \
    initramfs/hooks/* initramfs/scripts/*/* initramfs/dracut/*/* tests/boot/guest/*.service \
    tests/boot/guest/initramfs-*
  ls -l --time-style=+%s "$(readlink -f node_modules/.bin/deno)"
} | sha256sum | cut -c1-16)
if [ -f "$cache/stamp" ] && [ "$(cat "$cache/stamp")" = "$stamp" ] && [ -f "$cache/root.img" ]; then
  exit 0
fi
echo "boot_vm_setup: building the guest in $cache" >&2
rm -f "$cache/stamp"
root=$cache/root
# A run killed in its chroot step leaves /proc, /sys and /dev bound in the tree: unbind them
# before anything is removed, and refuse to remove a tree that still has a mount in it.
for fs in dev sys proc; do umount "$root/$fs" 2>/dev/null || true; done
if grep -q " $root/" /proc/mounts; then
  echo "boot_vm_setup: $root still has mounts in it; unmount them first" >&2
  exit 1
fi
rm -rf "$root"
cp -a "$cache/base" "$root"
scripts/install.sh --root "$root" --bundle "$bundle"

# The guest: root on the remapped device, serial console, no password needed for the checks.
echo dm-remap-guest >"$root/etc/hostname"
echo "/dev/nbd0 / ext4 defaults,errors=remount-ro 0 1" >"$root/etc/fstab"
ln -sf /usr/lib/systemd/system/dm-remap@.service "$root/etc/systemd/system/multi-user.target.wants/dm-remap@root.service"
mkdir -p "$root/etc/systemd/system/sysinit.target.wants"
ln -sf /usr/lib/systemd/system/dm-remap-assemble.service "$root/etc/systemd/system/sysinit.target.wants/dm-remap-assemble.service"
install -m 0644 tests/boot/guest/dm-remap-boot-check.service "$root/etc/systemd/system/"
ln -sf /etc/systemd/system/dm-remap-boot-check.service "$root/etc/systemd/system/multi-user.target.wants/"
# Under TCG every unit costs seconds: the appliance has no getty, no timers, no first-boot or
# after-upgrade jobs (each boot starts from the same image: with an empty machine id, and no
# /etc/.updated, every boot would be a first boot that rebuilds hwdb and the linker cache), and
# a journal in memory only (no flush to /var).
for unit in serial-getty@ttyS0.service getty@tty1.service apt-daily.timer apt-daily-upgrade.timer \
  dpkg-db-backup.timer e2scrub_all.timer fstrim.timer systemd-tmpfiles-clean.timer \
  e2scrub_reap.service systemd-pstore.service ldconfig.service systemd-hwdb-update.service \
  systemd-journal-catalog-update.service systemd-update-done.service systemd-firstboot.service \
  systemd-machine-id-commit.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
tr -d '-' </proc/sys/kernel/random/uuid >"$root/etc/machine-id"
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$root/etc/systemd/journald.conf.d/dm-remap-test.conf"

# Only the modules this guest needs (virtio disks, nbd, ext4): under TCG, on a loaded machine,
# MODULES=most made mkinitramfs take minutes. The dm-remap hook adds nbd and virtio itself.
echo MODULES=list >"$root/etc/initramfs-tools/conf.d/dm-remap-test-modules"
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic >>"$root/etc/initramfs-tools/modules"
# The grown-defect boot's main disk is a dm-linear device, made before dm-remap assembles.
install -D -m 0755 tests/boot/guest/initramfs-dm-main \
  "$root/etc/initramfs-tools/scripts/init-premount/dmremap-test-dm-main"
# The real mkinitramfs of the guest, in a chroot of it.
kernel=$(basename "$(ls "$root"/boot/vmlinuz-*)")
version=${kernel#vmlinuz-}
unmount() { for fs in dev sys proc; do umount "$root/$fs" 2>/dev/null || true; done; }
trap 'unmount; rm -f "$bundle"' EXIT
trap 'exit 1' INT TERM
for fs in proc sys dev; do mount --bind "/$fs" "$root/$fs"; done
chroot "$root" mkinitramfs -o "/boot/initrd.img-$version" "$version"
# And the guest's dracut, not host-only (the chroot is not the guest's hardware): systemd in the
# initramfs, root on a block device, dm-remap's module, and only the drivers this guest needs.
chroot "$root" dracut --quiet --force --no-hostonly --no-hostonly-cmdline --compress zstd \
  --modules "base systemd systemd-initrd dracut-systemd udev-rules rootfs-block fs-lib dm-remap" \
  --drivers "virtio_pci virtio_blk ext4 crc32c_generic nbd" \
  "/boot/initrd-dracut.img-$version" "$version"
unmount
cp "$root/boot/$kernel" "$cache/vmlinuz"
cp "$root/boot/initrd.img-$version" "$cache/initrd.img"
cp "$root/boot/initrd-dracut.img-$version" "$cache/initrd-dracut.img"

rm -f "$cache/root.img"
mke2fs -q -t ext4 -L dmremap-root -d "$root" "$cache/root.img" 2G
rm -rf "$root"
echo "$stamp" >"$cache/stamp"
ls -l "$cache/vmlinuz" "$cache/initrd.img" "$cache/initrd-dracut.img" "$cache/root.img" >&2

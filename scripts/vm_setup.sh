#!/usr/bin/env bash
# Builds what the VM test harness (tests/vm/) boots, from Debian packages only:
#   tests/vm/.cache/vmlinuz      Debian's linux-image-amd64 kernel
#   tests/vm/.cache/initrd.cpio  busybox-static, the kernel modules the scenarios need, /init
#   tests/vm/.cache/tools.img    a read-only ext4 image with Deno, nbd-client, dmsetup,
#                                e2fsprogs, fio and every shared library they load
# It is idempotent: a stamp holding the hash of its inputs skips the work when nothing changed.
# The project bundle and the guest scenario scripts are not built here: the runner
# (tests/vm/vm.ts) packs them fresh from the work tree into a small second cpio on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

cache=tests/vm/.cache
mkdir -p "$cache"
# The suite's VM and boot tests may both ask for the artefacts at once: one builds, the other waits.
exec 9>"$cache/.lock"
flock 9

apt_packages=(qemu-system-x86 busybox-static nbd-client dmsetup e2fsprogs fio cpio kmod smartmontools)
scripts/apt_ensure.sh "${apt_packages[@]}"

deno_elf=$(readlink -f node_modules/.bin/deno)
if ! file -L "$deno_elf" 2>/dev/null | grep -q ELF && ! head -c4 "$deno_elf" | grep -q ELF; then
  echo "vm_setup: $deno_elf is not an ELF binary" >&2
  exit 1
fi

# The kernel package that linux-image-amd64 points to today.
kernel_package=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$kernel_package" ]; then
  echo "vm_setup: apt-cache knows no linux-image-amd64 (run apt-get update)" >&2
  exit 1
fi

tools_bins=(/usr/sbin/nbd-client /usr/sbin/dmsetup /usr/sbin/mke2fs /usr/sbin/e2fsck /usr/sbin/dumpe2fs
  /usr/bin/fio /usr/sbin/blockdev /usr/sbin/smartctl)
# ata_piix, ahci, sd_mod and nvme: the emulated IDE, AHCI and NVMe disks that answer SMART (vm 13).
# dm-flakey and dm-delay: the flaky and slow regions the scanner finds (vm 14).
modules_wanted=(virtio_pci virtio_blk nbd dm-mod dm-flakey dm-delay crc32c_generic ext4 ata_piix ahci sd_mod nvme)

stamp_input=$(
  cat "$0" tests/vm/guest/init 2>/dev/null
  echo "$kernel_package"
  ls -l --time-style=+%s "$deno_elf"
  for bin in "${tools_bins[@]}"; do dpkg -S "$bin" 2>/dev/null || echo "$bin"; done
  dpkg-query -W busybox-static nbd-client dmsetup e2fsprogs fio smartmontools
)
stamp=$(echo "$stamp_input" | sha256sum | cut -c1-16)
if [ -f "$cache/stamp" ] && [ "$(cat "$cache/stamp")" = "$stamp" ] &&
  [ -f "$cache/vmlinuz" ] && [ -f "$cache/initrd.cpio" ] && [ -f "$cache/tools.img" ]; then
  exit 0
fi
echo "vm_setup: building the VM artefacts in $cache ($kernel_package)" >&2
rm -f "$cache/stamp"

# 1. The kernel and its modules, unpacked from the .deb (never installed on the host).
if [ ! -d "$cache/kernel/$kernel_package" ]; then
  rm -rf "$cache/kernel" "$cache/deb"
  mkdir -p "$cache/deb" "$cache/kernel/$kernel_package"
  (cd "$cache/deb" && apt-get download "$kernel_package" 2>&1 | grep -v "^W: Download is performed unsandboxed" >&2 || true)
  dpkg-deb -x "$cache"/deb/"$kernel_package"_*.deb "$cache/kernel/$kernel_package"
  rm -rf "$cache/deb"
fi
kroot="$(realpath "$cache/kernel/$kernel_package")"
kver=$(ls "$kroot/lib/modules")
# Each artefact is replaced by a rename, never rewritten in place: a VM booting from it keeps
# the whole old file.
cp "$kroot/boot/vmlinuz-$kver" "$cache/vmlinuz.tmp"
mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
depmod -b "$kroot" "$kver"

# Modules in load order: each one's dependencies (from modules.dep) before it.
declare -A seen=()
ordered=()
add_module() {
  local path=$1 dep
  [ -n "${seen[$path]:-}" ] && return 0
  seen[$path]=1
  for dep in $(awk -v m="$path:" '$1 == m { $1 = ""; print }' "$kroot/lib/modules/$kver/modules.dep"); do
    add_module "$dep"
  done
  ordered+=("$path")
}
for module in "${modules_wanted[@]}"; do
  path=$(modinfo -b "$kroot" -k "$kver" -n "$module" 2>/dev/null || true)
  case "$path" in
  "" | "(builtin)" | builtin*) echo "vm_setup: module $module is built in or missing" >&2 ;;
  *) add_module "${path#"$kroot/lib/modules/$kver/"}" ;;
  esac
done

# 2. The initramfs: busybox, modules, /init.
initrd=$(mktemp -d)
trap 'rm -rf "$initrd" "${tools:-}"' EXIT
mkdir -p "$initrd"/{bin,dev,proc,sys,tmp,run,mnt,tools,modules}
cp /bin/busybox "$initrd/bin/busybox"
ln -s busybox "$initrd/bin/sh"
for path in "${ordered[@]}"; do
  cp "$kroot/lib/modules/$kver/$path" "$initrd/modules/"
  basename "$path" >>"$initrd/modules/order"
done
cp tests/vm/guest/init "$initrd/init"
chmod +x "$initrd/init"
(cd "$initrd" && find . -print0 | sort -z | cpio --null -o -H newc --quiet --owner 0:0) >"$cache/initrd.cpio.tmp"
mv "$cache/initrd.cpio.tmp" "$cache/initrd.cpio"

# 3. The tools image: a root-like tree (lib64/, lib/, usr/) the guest links / into.
tools=$(mktemp -d)
mkdir -p "$tools/bin" "$tools/lib64" "$tools/lib/x86_64-linux-gnu"
cp "$deno_elf" "$tools/bin/deno"
for bin in "${tools_bins[@]}"; do cp "$bin" "$tools/bin/"; done
ln -sf mke2fs "$tools/bin/mkfs.ext4"
ln -sf e2fsck "$tools/bin/fsck.ext4"
for bin in "$tools"/bin/*; do
  [ -L "$bin" ] && continue
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/lib64\// {print $1}'
done | sort -u | while read -r lib; do
  case "$lib" in
  */ld-linux-x86-64.so.2) cp -L "$lib" "$tools/lib64/ld-linux-x86-64.so.2" ;;
  *) cp -L "$lib" "$tools/lib/x86_64-linux-gnu/" ;;
  esac
done
size_mb=$(($(du -sm "$tools" | cut -f1) + 64))
rm -f "$cache/tools.img.tmp"
mke2fs -q -t ext4 -L dmr-tools -O ^has_journal -d "$tools" "$cache/tools.img.tmp" "${size_mb}M"
mv "$cache/tools.img.tmp" "$cache/tools.img"

echo "$stamp" >"$cache/stamp"
echo "vm_setup: kernel $kver, ${#ordered[@]} modules, initrd $(du -h "$cache/initrd.cpio" | cut -f1), tools $(du -h "$cache/tools.img" | cut -f1)" >&2

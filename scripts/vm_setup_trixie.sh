#!/usr/bin/env bash
# Builds a second kernel for the VM harness: Debian trixie's 6.12 kernel, which has ublk_drv.
#   tests/vm/.cache-trixie/vmlinuz      trixie's linux-image-6.12* kernel
#   tests/vm/.cache-trixie/initrd.cpio  busybox-static, the modules the scenarios need
#                                       (ublk_drv among them, decompressed), /init
# The tools image (Deno, nbd-client, fio, ...) is the one scripts/vm_setup.sh builds in
# tests/vm/.cache: it holds user-space programs only, which any kernel runs.
# Trixie's package lists live in the cache too (a private sources list and lists directory):
# the host's apt configuration is never changed. Idempotent: a stamp skips the work.
set -euo pipefail
cd "$(dirname "$0")/.."
# The tools image comes from the main VM setup (which exits at once when it is current).
[ -f tests/vm/.cache/stamp ] && [ -f tests/vm/.cache/tools.img ] || scripts/vm_setup.sh

cache=tests/vm/.cache-trixie
# shellcheck source=scripts/trixie_apt.sh
. scripts/trixie_apt.sh

modules_wanted=(virtio_pci virtio_blk nbd dm-mod dm-flakey crc32c_generic ext4 ublk_drv)
stamp_input=$(cat "$0" tests/vm/guest/init; cat tests/vm/.cache/stamp)

kernel_package=$(trixie_depends linux-image-amd64 'linux-image-6\.12')
if [ -z "$kernel_package" ]; then
  echo "vm_setup_trixie: trixie's linux-image-amd64 names no 6.12 kernel" >&2
  exit 1
fi
stamp=$( (echo "$stamp_input"; echo "$kernel_package") | sha256sum | cut -c1-16)
if [ -f "$cache/stamp" ] && [ "$(cat "$cache/stamp")" = "$stamp" ] &&
  [ -f "$cache/vmlinuz" ] && [ -f "$cache/initrd.cpio" ]; then
  exit 0
fi
echo "vm_setup_trixie: building $cache ($kernel_package)" >&2
rm -f "$cache/stamp"

if [ ! -d "$cache/kernel/$kernel_package" ]; then
  rm -rf "$cache/kernel" "$cache/deb"
  mkdir -p "$cache/deb" "$cache/kernel/$kernel_package"
  trixie_download "$kernel_package" "$cache/deb"
  dpkg-deb -x "$cache"/deb/"$kernel_package"_*.deb "$cache/kernel/$kernel_package"
  rm -rf "$cache/deb"
fi
kroot="$(realpath "$cache/kernel/$kernel_package")"
# Trixie merged /lib into /usr: depmod and modinfo look under lib/modules of their base.
[ -e "$kroot/lib" ] || ln -s usr/lib "$kroot/lib"
kver=$(ls "$kroot/lib/modules")
cp "$kroot/boot/vmlinuz-$kver" "$cache/vmlinuz"
depmod -b "$kroot" "$kver"

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
  "" | "(builtin)" | builtin*) echo "vm_setup_trixie: module $module is built in or missing" >&2 ;;
  *) add_module "${path#"$kroot/lib/modules/$kver/"}" ;;
  esac
done

initrd=$(mktemp -d)
trap 'rm -rf "$initrd"' EXIT
mkdir -p "$initrd"/{bin,dev,proc,sys,tmp,run,mnt,tools,modules}
cp /bin/busybox "$initrd/bin/busybox"
ln -s busybox "$initrd/bin/sh"
for path in "${ordered[@]}"; do
  # Trixie compresses its modules; busybox insmod loads plain ones only.
  name=$(basename "$path")
  case "$name" in
  *.ko.xz) xz -dc "$kroot/lib/modules/$kver/$path" >"$initrd/modules/${name%.xz}"; name=${name%.xz} ;;
  *.ko.zst) zstd -qdc "$kroot/lib/modules/$kver/$path" >"$initrd/modules/${name%.zst}"; name=${name%.zst} ;;
  *) cp "$kroot/lib/modules/$kver/$path" "$initrd/modules/" ;;
  esac
  echo "$name" >>"$initrd/modules/order"
done
cp tests/vm/guest/init "$initrd/init"
chmod +x "$initrd/init"
(cd "$initrd" && find . -print0 | sort -z | cpio --null -o -H newc --quiet --owner 0:0) >"$cache/initrd.cpio.tmp"
mv "$cache/initrd.cpio.tmp" "$cache/initrd.cpio"

echo "$stamp" >"$cache/stamp"
echo "vm_setup_trixie: kernel $kver, ${#ordered[@]} modules, initrd $(du -h "$cache/initrd.cpio" | cut -f1)" >&2

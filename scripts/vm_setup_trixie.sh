#!/usr/bin/env bash
# Builds a second kernel for the VM harness: Debian trixie's 6.12 kernel, which has ublk_drv.
#   tests/vm/.cache-trixie/vmlinuz      trixie's linux-image-6.12* kernel
#   tests/vm/.cache-trixie/initrd.cpio  busybox-static, the modules the scenarios need
#                                       (ublk_drv among them, decompressed), /init, and
#                                       /perf: trixie's linux-perf with every library it loads
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
perf_version=$(trixie_version linux-perf)
stamp=$( (echo "$stamp_input"; echo "$kernel_package"; echo "linux-perf $perf_version") | sha256sum | cut -c1-16)
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

# linux-perf (the server's CPU per request and its profile in scenario_ublk_perf.sh) and the
# libraries of its dependency tree, unpacked side by side. The tools image's libraries are the
# host's (bookworm's glibc), older than trixie's perf needs: the guest starts perf through trixie's
# own loader and library directory (/perf/bin/perf, a wrapper).
if [ ! -x "$cache/perf/$perf_version/usr/bin/perf" ]; then
  rm -rf "$cache/perf" "$cache/perf-deb"
  mkdir -p "$cache/perf-deb" "$cache/perf/$perf_version"
  mapfile -t perf_packages < <(apt-cache "${apt_trixie[@]}" depends --recurse --no-recommends \
    --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances --no-pre-depends linux-perf |
    grep -E '^(lib|zlib|linux-perf)' | grep -vE 'stdlib|minimal|-perl$|-common$' | sort -u)
  (cd "$cache/perf-deb" && apt-get "${apt_trixie[@]}" download "${perf_packages[@]}" 2>&1 |
    grep -v "^W: Download is performed unsandboxed" >&2 || true)
  for deb in "$cache"/perf-deb/*.deb; do dpkg-deb -x "$deb" "$cache/perf/$perf_version"; done
  rm -rf "$cache/perf-deb"
fi
proot="$(realpath "$cache/perf/$perf_version")"
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
# perf, and the libraries trixie's loader resolves for it (listed on the host, which runs it).
mkdir -p "$initrd/perf/bin" "$initrd/perf/lib"
cp "$proot/usr/bin/perf" "$initrd/perf/bin/perf.elf"
perf_libs=$("$proot/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
  --library-path "$proot/usr/lib/x86_64-linux-gnu" --list "$proot/usr/bin/perf")
if echo "$perf_libs" | grep -q "not found"; then
  echo "vm_setup_trixie: perf needs libraries its packages lack:" >&2
  echo "$perf_libs" | grep "not found" >&2
  exit 1
fi
echo "$perf_libs" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' |
  while read -r lib; do cp -L "$lib" "$initrd/perf/lib/"; done
[ -f "$initrd/perf/lib/ld-linux-x86-64.so.2" ] || { echo "vm_setup_trixie: perf's loader is missing" >&2; exit 1; }
cat >"$initrd/perf/bin/perf" <<'WRAPPER'
#!/bin/sh
exec /perf/lib/ld-linux-x86-64.so.2 --library-path /perf/lib /perf/bin/perf.elf "$@"
WRAPPER
chmod +x "$initrd/perf/bin/perf"
cp tests/vm/guest/init "$initrd/init"
chmod +x "$initrd/init"
(cd "$initrd" && find . -print0 | sort -z | cpio --null -o -H newc --quiet --owner 0:0) >"$cache/initrd.cpio.tmp"
mv "$cache/initrd.cpio.tmp" "$cache/initrd.cpio"

echo "$stamp" >"$cache/stamp"
echo "vm_setup_trixie: kernel $kver, ${#ordered[@]} modules, initrd $(du -h "$cache/initrd.cpio" | cut -f1)" >&2

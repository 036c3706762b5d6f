#!/usr/bin/env bash
# Installs dm-remap as an administrator would: the program (the bundle of scripts/build.sh, run by
# the Deno runtime installed beside it), the /usr/sbin/dm-remap wrapper, the systemd units, the udev
# rule, the initramfs-tools hook and boot script, and the dracut module. Every installed path is listed in a manifest,
# PREFIX/lib/dm-remap/MANIFEST, which scripts/uninstall.sh removes exactly.
# Usage: scripts/install.sh [--prefix DIR (/usr)] [--root DIR (/)] [--bundle FILE] [--deno FILE]
#   --root installs into another system's tree (a guest image); paths inside it stay absolute.
#   --bundle and --deno default to dist/dm-remap.js (built here when missing) and this tree's Deno.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=/usr root= bundle= deno=
while [ $# -gt 0 ]; do
  case "$1" in
  --prefix) prefix=$2; shift 2 ;;
  --root) root=${2%/}; shift 2 ;;
  --bundle) bundle=$2; shift 2 ;;
  --deno) deno=$2; shift 2 ;;
  *) echo "install: unknown argument \"$1\"; usage: scripts/install.sh [--prefix DIR] [--root DIR] [--bundle FILE] [--deno FILE]" >&2; exit 2 ;;
  esac
done
case "$prefix" in /*) ;; *) echo "install: --prefix must be absolute, not \"$prefix\"" >&2; exit 2 ;; esac
if [ -z "$bundle" ]; then
  bundle=dist/dm-remap.js
  [ -f "$bundle" ] || node_modules/.bin/deno bundle --quiet --output "$bundle" main.ts
fi
deno=${deno:-$(readlink -f node_modules/.bin/deno)}
for file in "$bundle" "$deno"; do
  [ -f "$file" ] || { echo "install: \"$file\" is missing; run scripts/setup.sh and scripts/build.sh" >&2; exit 1; }
done

libdir=$prefix/lib/dm-remap
manifest=$libdir/MANIFEST
if [ -f "$root$manifest" ]; then
  echo "install: dm-remap is installed in \"${root:-/}\" already ($manifest); run scripts/uninstall.sh first" >&2
  exit 1
fi
installed=()
# place MODE SOURCE TARGET [render]: copies one file; "render" replaces @SBIN@ and @LIBDIR@ in it.
place() {
  local mode=$1 source=$2 target=$3
  mkdir -p "$root$(dirname "$target")"
  if [ "${4:-}" = render ]; then
    sed -e "s|@SBIN@|$prefix/sbin|g" -e "s|@LIBDIR@|$libdir|g" "$source" >"$root$target.tmp"
  else
    cp "$source" "$root$target.tmp"
  fi
  chmod "$mode" "$root$target.tmp"
  mv "$root$target.tmp" "$root$target"
  installed+=("$target")
}
place 0755 "$deno" "$libdir/deno"
place 0644 "$bundle" "$libdir/dm-remap.js"
place 0755 scripts/dm-remap.sh "$prefix/sbin/dm-remap" render
# The system's own places, whatever the prefix: systemd, udev and initramfs-tools look only there.
for unit in systemd/*.service; do place 0644 "$unit" "/usr/lib/systemd/system/${unit##*/}" render; done
place 0755 systemd/dm-remap.shutdown /usr/lib/systemd/system-shutdown/dm-remap render
place 0644 udev/69-dm-remap.rules /usr/lib/udev/rules.d/69-dm-remap.rules render
place 0755 initramfs/hooks/dm-remap /usr/share/initramfs-tools/hooks/dm-remap render
place 0755 initramfs/scripts/local-top/dm-remap /usr/share/initramfs-tools/scripts/local-top/dm-remap render
for file in initramfs/dracut/90dm-remap/*.sh; do
  place 0755 "$file" "/usr/lib/dracut/modules.d/90dm-remap/${file##*/}" render
done
printf '%s\n' "${installed[@]}" "$manifest" >"$root$manifest"
echo "install: ${#installed[@]} files into ${root:-/} (manifest $manifest)" >&2

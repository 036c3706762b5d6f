#!/usr/bin/env bash
# Removes exactly what scripts/install.sh installed: the paths its manifest lists, then the
# program's directory and the dracut module's if that leaves them empty. Nothing else is touched.
# Usage: scripts/uninstall.sh [--prefix DIR (/usr)] [--root DIR (/)]
set -euo pipefail
prefix=/usr root=
while [ $# -gt 0 ]; do
  case "$1" in
  --prefix) prefix=$2; shift 2 ;;
  --root) root=${2%/}; shift 2 ;;
  *) echo "uninstall: unknown argument \"$1\"; usage: scripts/uninstall.sh [--prefix DIR] [--root DIR]" >&2; exit 2 ;;
  esac
done
manifest=$prefix/lib/dm-remap/MANIFEST
if [ ! -f "$root$manifest" ]; then
  echo "uninstall: no dm-remap installed in \"${root:-/}\" with prefix $prefix ($manifest is missing)" >&2
  exit 1
fi
count=0
while IFS= read -r path; do
  case "$path" in /*) ;; *) echo "uninstall: $manifest lists a relative path \"$path\"; stopping" >&2; exit 1 ;; esac
  [ "$path" = "$manifest" ] && continue
  rm -f "$root$path"
  count=$((count + 1))
done <"$root$manifest"
rm -f "$root$manifest"
rmdir "$root$prefix/lib/dm-remap" "$root/usr/lib/dracut/modules.d/90dm-remap" 2>/dev/null || true
echo "uninstall: removed $count files from ${root:-/}" >&2

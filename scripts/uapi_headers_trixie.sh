#!/usr/bin/env bash
# Unpacks Debian trixie's linux-libc-dev (the 6.12 kernel's uapi headers) into
# tests/vm/.cache-trixie/uapi, for the host tests that check the ublk and io_uring layouts
# against include/linux/ublk_cmd.h and io_uring.h. Prints the include directory.
# Idempotent: the unpacked version is kept and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/trixie_apt.sh
. scripts/trixie_apt.sh
uapi=tests/vm/.cache-trixie/uapi
if [ ! -f "$uapi/usr/include/linux/ublk_cmd.h" ]; then
  rm -rf "$uapi" "$uapi.deb"
  # On a fresh clone trixie's lists are not fetched yet (trixie_version fetches them once).
  trixie_version linux-libc-dev >/dev/null
  trixie_download linux-libc-dev "$uapi.deb" >&2
  dpkg-deb -x "$uapi.deb"/linux-libc-dev_*.deb "$uapi"
  rm -rf "$uapi.deb"
fi
# The arch-specific asm/ headers of the package sit in the multiarch directory.
echo "$(realpath "$uapi/usr/include")"

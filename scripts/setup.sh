#!/usr/bin/env bash
# Installs everything dm-remap's demo and tests need on a fresh Debian machine:
# the pinned Deno runtime (npm) and the third-party NBD clients and fault injectors (apt).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(qemu-utils libnbd-bin python3-libnbd nbdkit fio fuse3 nbd-client e2fsprogs iproute2
  chromium prometheus curl util-linux smartmontools)
scripts/apt_ensure.sh "${apt_packages[@]}"

if [ ! -x node_modules/.bin/deno ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing Deno from npm" >&2
  # npm ci rejects the lock file npm 11 writes (it records only this platform's optional
  # Deno binary), so install from the lock with npm install.
  npm install --no-audit --no-fund --silent
fi
node_modules/.bin/deno --version | head -1 >&2

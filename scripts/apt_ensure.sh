#!/usr/bin/env bash
# Installs the named Debian packages that are not installed yet (apt-get update first, once).
# Usage: scripts/apt_ensure.sh PACKAGE...
# The suite's setups run at once (the boot image's and the VM's on a fresh machine); apt takes
# one at a time, so they queue on a lock here, and one that finds its packages installed by
# another while it waited installs nothing. Another program's apt is waited for too.
set -euo pipefail
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for package in "$@"; do installed "$package" || missing+=("$package"); done
[ ${#missing[@]} -gt 0 ] || exit 0
exec 9>/var/lock/dm-remap-apt.lock
flock 9
still_missing=()
for package in "${missing[@]}"; do installed "$package" || still_missing+=("$package"); done
[ ${#still_missing[@]} -gt 0 ] || exit 0
echo "apt: installing ${still_missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
wait_for_dpkg=(-o DPkg::Lock::Timeout=600)
apt-get "${wait_for_dpkg[@]}" update -qq
apt-get "${wait_for_dpkg[@]}" install -y -qq --no-install-recommends "${still_missing[@]}" >/dev/null

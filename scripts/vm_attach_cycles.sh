#!/usr/bin/env bash
# Runs VM scenario 8 (serve attaches /dev/nbd0 itself, ext4 on it, a writer fsyncing file
# after file) with N kill -9 restarts of serve (default 20) followed by a SIGTERM restart,
# and prints each restart's line and the kernel's log of them. The test passes only when the
# writer never failed, the kernel logged no I/O error, every fsynced file verifies and
# e2fsck -fn is clean (tests/vm/vm_test.ts, vm 8).
# Usage: scripts/vm_attach_cycles.sh [N] [LOG]
set -uo pipefail
cd "$(dirname "$0")/.."
cycles=${1:-20}
log=${2:-$(mktemp /tmp/dm-remap-vm-attach.XXXXXX.log)}
scripts/setup.sh
scripts/vm_setup.sh
echo "vm_attach_cycles: $cycles kill -9 restarts at $(git rev-parse --short HEAD), log in $log"
if DMREMAP_ATTACH_CYCLES=$cycles NO_COLOR=1 node_modules/.bin/deno test -A tests/vm/vm_test.ts \
  --filter "vm 8" >"$log" 2>&1; then outcome=passed; else outcome=FAILED; fi
grep -E '^  (kill9_restart_[0-9]+|sigterm_restart_next_build) ' "$log"
grep -E '^  observe:kernel_log' "$log"
grep -E '^vm 8: .* (ok|FAILED)' "$log"
echo "vm_attach_cycles: $outcome"
[ "$outcome" = passed ]

#!/usr/bin/env bash
# Runs VM test "vm ublk 2" on trixie's 6.12 kernel: ext4 on /dev/ublkb0 served with --ublk, a
# writer fsyncing file after file, and N kill -9 restarts of serve (default 10), each new server
# taking the device back with the kernel's user recovery, after the control without recovery
# (--no-recovery: the same kill fails the I/O). Prints each cycle's line, the writer's
# and the verification's, and the kernel's log of the cycles. The test passes only when the
# writer never failed, the kernel logged no I/O error, every fsynced file verifies and
# e2fsck -fn is clean. Results are quoted in docs/ublk.md.
# Usage: scripts/vm_ublk_recovery_cycles.sh [N] [LOG]
set -uo pipefail
cd "$(dirname "$0")/.."
cycles=${1:-10}
log=${2:-$(mktemp /tmp/dm-remap-vm-ublk.XXXXXX.log)}
scripts/vm_setup_trixie.sh
echo "vm_ublk_recovery_cycles: $cycles kill -9 restarts at $(git rev-parse --short HEAD), log in $log"
if DMREMAP_UBLK_CYCLES=$cycles NO_COLOR=1 node_modules/.bin/deno test -A tests/vm/vm_test.ts \
  --filter "vm ublk 2" >"$log" 2>&1; then outcome=passed; else outcome=FAILED; fi
grep -E '^  (no_recovery_kill9_fails_io|kill9_restart_[0-9]+|writer_ok|verify_fsynced|dmesg_clean) ' "$log"
grep -E '^  observe:' "$log"
grep -E '^vm ublk 2: .* (ok|FAILED)' "$log"
echo "vm_ublk_recovery_cycles: $outcome"
[ "$outcome" = passed ]

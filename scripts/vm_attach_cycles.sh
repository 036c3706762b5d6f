#!/usr/bin/env bash
# Runs VM scenario 8 (serve attaches /dev/nbd0 itself, ext4 on it, a writer fsyncing file
# after file) with N kill -9 restarts of serve (default 20) followed by a SIGTERM restart,
# and prints each restart's line and the checks that decide it: no I/O error in the kernel
# log, the writer never failed, every fsynced file verifies, e2fsck -fn clean.
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
grep -oE '"check":"(kill9_restart_[0-9]+|sigterm_restart_next_build)","ok":(true|false),"detail":"[^"]*' "$log" |
  sed -E 's/"check":"([^"]*)","ok":([a-z]*),"detail":"(Killed\\n)?/\1 \2: /'
grep -oE '"check":"(writer_never_failed|no_io_errors|verify_fsynced|e2fsck|io_watch)","ok":(true|false)' "$log" |
  sed -E 's/"check":"([^"]*)","ok":/\1 /'
echo "vm_attach_cycles: $outcome"
[ "$outcome" = passed ]

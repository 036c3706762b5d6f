#!/usr/bin/env bash
# Runs the whole VM suite (tests/vm/) N times in a row (default 10) and prints one line per run
# and a total: whether it passed, its duration, how many io_stall checks and kernel NBD
# timeouts the guests reported, and how often nbd_attach had to attach again. Each run's output is kept in DIR (default a new temporary
# directory). Usage: scripts/vm_repeat.sh [N] [DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
dir=${2:-$(mktemp -d /tmp/dm-remap-vm-repeat.XXXXXX)}
mkdir -p "$dir"
scripts/setup.sh
scripts/vm_setup.sh
deno=node_modules/.bin/deno
passed=0
echo "vm_repeat: $runs runs of tests/vm/ at $(git rev-parse --short HEAD), logs in $dir"
for run in $(seq 1 "$runs"); do
  log="$dir/run$run.log"
  started=$(date +%s)
  if NO_COLOR=1 "$deno" test -A tests/vm/ >"$log" 2>&1; then outcome=passed; passed=$((passed + 1)); else outcome=FAILED; fi
  stalls=$(grep -c '"check":"io_stall"' "$log")
  timeouts=$(grep -ciE 'nbd[0-9]*: .*timed out' "$log")
  retries=$(grep -c 'observe:attach_unread_connection' "$log")
  echo "run $run: $outcome in $(($(date +%s) - started)) s, io_stall $stalls, kernel timeouts $timeouts, attach retries $retries"
done
echo "vm_repeat: $passed of $runs runs passed"
[ "$passed" -eq "$runs" ]

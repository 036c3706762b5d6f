#!/usr/bin/env bash
# fio in the trixie 6.12 VM: the ublk export ÷ the NBD export ÷ the raw virtio disk, 4K random
# QD1/QD32 and 1M sequential, one run, each job on the three devices back to back (TCG: the
# ratios, not the absolute numbers, are the finding). Writes bench/results/<date>-ublk-vm.json.
set -euo pipefail
cd "$(dirname "$0")/.."
out="bench/results/$(date -u +%Y-%m-%dT%H%M)-ublk-vm.json"
mkdir -p bench/results
UBLK_BENCH_JSON="$out" node_modules/.bin/deno test -A tests/vm/vm_test.ts --filter "vm ublk perf"
echo "bench_ublk: $out" >&2

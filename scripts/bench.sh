#!/usr/bin/env bash
# dm-remap's benchmark suite (issue 4): raw file, nbdkit, and dm-remap (passthrough,
# buffered, 1M remaps, remaps being created) side by side with fio's nbd engine.
# Writes bench/results/<date>.json and bench/RESULTS.md. Takes about 35 minutes
# on 2 cores with the defaults; `scripts/bench.sh --quick` is a 3-minute smoke run.
# Options are passed to bench/run.ts (see bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# fio (with its nbd engine), nbdkit, libnbd and Deno come from the common setup.
scripts/setup.sh
# perf profiles the servers (every thread; the data plane runs in workers).
scripts/apt_ensure.sh linux-perf
# bench/run.ts stops its servers and empties this directory itself; the trap
# also covers a hard kill of it.
BENCH_DIR="$(mktemp -d /dev/shm/dm-remap-bench-XXXXXX)"
export BENCH_DIR
trap 'rm -rf "$BENCH_DIR"' EXIT
node_modules/.bin/deno run -A bench/run.ts "$@"

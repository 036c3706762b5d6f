#!/usr/bin/env bash
# The long boot series of the real Debian guest with root on the remapped disk (not part of the
# suite): scripts/boot_series.sh N boots N times, every other boot cut mid-write, and prints one
# JSON line per boot. docs/boot.md records the results.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node_modules/.bin/deno run -A tests/boot/boot_series.ts "${1:-20}"

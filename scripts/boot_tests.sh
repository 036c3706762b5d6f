#!/usr/bin/env bash
# The boot-integration scenarios (issue 19, docs/boot.md): a Debian bookworm guest whose root is
# ext4 on the remapped device, booted under qemu (TCG) seven times. They are not in
# scripts/test.sh yet: under TCG on 2 cores they take about 30 minutes, and boot 2 still fails
# (the attach's own retry disconnects /dev/nbd0 while udev reads it; docs/boot.md).
# Extra arguments go to `deno test` (e.g. --filter "boot 1").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec node_modules/.bin/deno test --allow-all tests/boot/boot_scenarios.ts "$@"

#!/usr/bin/env bash
# The boot scenarios beside the suite's five boots (issue 19, docs/boot.md): a Debian bookworm
# guest whose root is ext4 on the remapped device, booted under qemu (TCG) with rd.dm_remap=0,
# without its main disk, with a spare plugged in while it runs, from its dracut initramfs, and with
# a grown defect made live under the mounted root. Not in scripts/test.sh: with the suite's boots
# they would not fit its 45 minutes (one boot takes 2 to 7 minutes here).
# Extra arguments go to `deno test` (e.g. --filter "boot 9").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec node_modules/.bin/deno test --allow-all tests/boot/boot_scenarios.ts "$@"

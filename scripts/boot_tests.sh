#!/usr/bin/env bash
# The boot-integration scenarios (issue 19, docs/boot.md): a Debian bookworm guest whose root is
# ext4 on the remapped device, booted under qemu (TCG) eight times (the eighth from the guest's
# dracut initramfs). They are not in scripts/test.sh: under TCG on 2 shared cores one boot took
# 3 to 11 minutes (docs/boot.md).
# Extra arguments go to `deno test` (e.g. --filter "boot 1").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec node_modules/.bin/deno test --allow-all tests/boot/boot_scenarios.ts "$@"

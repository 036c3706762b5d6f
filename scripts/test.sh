#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, type-checks,
# lints, then runs every test (unit, simulation, and third-party NBD clients).
# Extra arguments go to `deno test` (e.g. a path or --filter).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
deno=node_modules/.bin/deno
"$deno" fmt --check
"$deno" lint
# With no arguments: every test file, and every JSDoc example in the library (--doc).
[ $# -gt 0 ] || set -- tests/ mod/
exec "$deno" test --allow-all --parallel --doc "$@"

#!/usr/bin/env bash
# Sets up a fresh machine and runs the embedded demo: image files with a few failing
# sectors, remapped to spares, served over NBD and the status API. Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec node_modules/.bin/deno run --allow-all main.ts demo "$@"

#!/usr/bin/env bash
# Builds the single-file deployment: dist/dm-remap.js (run with `deno run -A`), and,
# where a Deno runtime for standalone binaries exists (DENORT_BIN=/path/to/denort),
# the self-contained executable dist/dm-remap.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
deno=node_modules/.bin/deno
"$deno" bundle --output dist/dm-remap.js main.ts
if [ -n "${DENORT_BIN:-}" ]; then
  if [ ! -x "$DENORT_BIN" ]; then
    echo "build: DENORT_BIN=$DENORT_BIN is not an executable denort; unset it to build only the bundle" >&2
    exit 2
  fi
  "$deno" compile --allow-all --output dist/dm-remap main.ts
  echo "build: dist/dm-remap (standalone, runtime $DENORT_BIN)" >&2
else
  echo "build: dist/dm-remap.js; set DENORT_BIN to also build the standalone binary" >&2
fi

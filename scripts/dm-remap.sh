#!/bin/sh
# /usr/sbin/dm-remap, as scripts/install.sh installs it: runs the bundle with the Deno runtime
# installed beside it. DM_REMAP_ARGV0 is not read here: `serve` sets argv[0] itself (see
# mod/cli/setup_starter.ts) where a root storage daemon needs '@'.
export DENO_DIR="${DENO_DIR:-/run/dm-remap/deno}" DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
# `probe` is what udev runs (69-dm-remap.rules), inside systemd-udevd's sandbox, whose
# MemoryDenyWriteExecute=yes refuses the executable memory V8's compilers need: Deno panics
# there ("Check failed: 12 == errno"). The interpreter alone needs none, and a probe is short.
case "${1:-}" in
probe) exec @LIBDIR@/deno run --allow-all --v8-flags=--jitless @LIBDIR@/dm-remap.js "$@" ;;
esac
exec @LIBDIR@/deno run --allow-all @LIBDIR@/dm-remap.js "$@"

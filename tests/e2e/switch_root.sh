#!/bin/bash
# A switch_root under a root storage daemon, on the host (run in mount and PID namespaces of its
# own by switch_root_test.ts): a tmpfs "initramfs" root with the runtime, the bundle and libc;
# /proc (twice, as the initramfs scripts leave it, or once) and a /run tmpfs mounted in it;
# `serve` started chrooted there with argv[0] '@dm-remap'. Then what switch_root does to it: /proc and /run are moved out (into the real root), the old root's files
# are deleted, and a tmpfs is mounted over it. Prints "CONNECTION N: <qemu-io's last line>" for
# NBD connections before and after, and the server's log after "LOG:".
# Usage: unshare -m -p -f switch_root.sh BUNDLE WORKDIR two-proc|one-proc
set -u
bundle=$1 work=$2 procs=$3
deno=$(readlink -f "${DENO:-$(command -v deno)}")
root=$work/initramfs
mkdir -p "$root" "$work/real-proc" "$work/real-run"
mount -t tmpfs initramfs "$root"
mkdir -p "$root/lib/x86_64-linux-gnu" "$root/lib64" "$root/run" "$root/tmp" "$root/proc" "$root/dev"
for lib in $(ldd "$deno" | grep -o '/lib[^ ]*'); do cp "$lib" "$root$lib"; done
mount -t proc proc "$root/proc"
# The second /proc the initramfs scripts mount over the first (not with "one-proc").
[ "$procs" = one-proc ] || mount -t proc dm-remap-proc "$root/proc"
mount --bind /dev "$root/dev"
mount -t tmpfs run "$root/run"
mkdir -p "$root/run/bin"
cp "$deno" "$root/run/bin/deno"
cp "$bundle" "$root/run/bin/dm-remap.js"
truncate -s 64M "$root/run/main.img"
truncate -s 32M "$root/run/spare.img"
export DM_REMAP_STATE_DIR=/run/state DM_REMAP_RUN_DIR=/run DENO_DIR=/run/deno HOME=/run NO_COLOR=1
chroot "$root" /run/bin/deno run -A /run/bin/dm-remap.js create root --main /run/main.img \
  --spare /run/spare.img >/dev/null
# chroot and argv[0] '@dm-remap' in one step (python3: chroot(1) takes no argv[0]).
python3 -c 'import os, sys; os.chroot(sys.argv[1]); os.chdir("/"); os.execv(sys.argv[2], ["@dm-remap"] + sys.argv[3:])' \
  "$root" /run/bin/deno run -A /run/bin/dm-remap.js serve root --socket /tmp/nbd.sock --no-scan \
  >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "serving" "$work/serve.log" 2>/dev/null && break; sleep 0.2; done
# The socket stays reachable from here once the old root is covered.
touch "$work/nbd.sock"
mount --bind "$root/tmp/nbd.sock" "$work/nbd.sock"
connect() { echo "CONNECTION $1: $(qemu-io -f raw "nbd+unix:///root?socket=$work/nbd.sock" \
  -c "write -P $1 $(($1 * 65536)) 64k" -c "read -P $1 $(($1 * 65536)) 64k" 2>&1 | tail -1)"; }
connect 1
mount --move "$root/proc" "$work/real-proc"
mount --move "$root/run" "$work/real-run"
umount "$root/dev"
find "$root" -mindepth 1 -xdev -not -path "$root/tmp*" -delete 2>/dev/null
mount -t tmpfs realroot "$root"
for n in 2 3 4; do connect $n; sleep 0.3; done
echo "ALIVE: $(kill -0 "$pid" 2>/dev/null && echo yes || echo no)"
kill -TERM "$pid" 2>/dev/null
sleep 1
echo "LOG:"
cat "$work/serve.log"

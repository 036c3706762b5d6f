# Scenario "attach": the server attaches /dev/nbd0 itself (netlink, 2 connections, no
# nbd-client); ext4 on it; a writer fsyncs file after file while the server is killed with
# SIGKILL and started again $PARAMS times (default 3), then stopped with SIGTERM and replaced
# by another build. The filesystem must see no error: no failed request in the kernel log,
# the writer never fails, every fsynced file verifies, e2fsck -fn is clean. Last, `dm-remap stop`
# refuses while the device is mounted and detaches it once it is not.
note start
CYCLES=${PARAMS:-3}
ATTACH_ARGS="--attach --connections 2 --io-timeout 5 --dead-timeout 600"
# Requests in flight on a killed server's sockets are sent again after --io-timeout: the
# kernel logs "Connection timed out, retrying" for them, which here is expected (io_watch_end).
IO_WATCH_REQUEUE_EXPECTED=true

check dm_main sh -c "$(declare_functions) main_table | dmsetup create main" || return 1
check create dmremap create "$SETUP" --main "$MAIN" --spare "$DISK_SPARE" || return 1

# attach_serve [BUNDLE]: starts serve with --attach; ok once it serves and names the device.
attach_serve() {
  : >/tmp/serve.log
  SERVE_BUNDLE=${1:-/guest/dm-remap.js}
  serve_start $ATTACH_ARGS || return 1
  # The device line follows the "serving" line serve_start waits for.
  waited=0
  until grep -q "KERNEL  /dev/nbd0" /tmp/serve.log; do
    waited=$((waited + 1))
    [ $waited -gt 50 ] && return 1
    sleep 0.1
  done
}

if attach_serve; then result serve true "$(cat /tmp/serve.log)"; else
  result serve false "$(cat /tmp/serve.log)"
  return 1
fi
check nbd_attach sh -c "grep 'attached with 2 connections' /tmp/serve.log && test \$(cat /sys/block/nbd0/size) -gt 0"
check backend sh -c "grep -q '^dm-remap:' /sys/block/nbd0/backend && cat /sys/block/nbd0/backend"
check runtime_state sh -c "grep '\"kernelDevice\": *\"/dev/nbd0\"' /run/dm-remap/setups/*.json"
check api_device sh -c "$(declare_functions) status_json | grep '\"kernelDevice\": *\"/dev/nbd0\"'"
check mkfs mkfs.ext4 -q -F -E nodiscard "$NBD" || return 1
check mount mount -t ext4 "$NBD" "$MNT" || return 1
mark restart-cycles
rm -f /tmp/stop /tmp/w.sums
writer w /tmp/stop >/tmp/writer.log 2>&1 &
writer_pid=$!
wait_lines /tmp/w.sums 3

# restart SIGNAL [BUNDLE]: stops serve with SIGNAL under the writer, starts it again, and
# waits until the writer has fsynced 3 more files.
restart() {
  before=$(wc -l </tmp/w.sums)
  touch /tmp/io_watch.pause
  kill -"$1" "$SERVE_PID"
  wait "$SERVE_PID"
  stopped=$?
  cp /tmp/serve.log "/tmp/serve.$1.log"
  attach_serve "$2" || { echo "restart failed: $(tail -c 800 /tmp/serve.log)"; return 1; }
  grep -q "taken back with" /tmp/serve.log || { echo "not taken back: $(cat /tmp/serve.log)"; return 1; }
  wait_lines /tmp/w.sums $((before + 3)) 90 || { echo "writer did not resume: $(tail -c 400 /tmp/writer.log)"; return 1; }
  rm -f /tmp/io_watch.pause
  echo "stop exit $stopped; $(grep -E 'taken back|reads .* of' /tmp/serve.log); files $before -> $(wc -l </tmp/w.sums)"
}

# checked_restart CHECK ARGS...: restart in this shell (it sets SERVE_PID), then its result.
checked_restart() {
  name=$1
  shift
  restart "$@" >/tmp/restart.out 2>&1
  code=$?
  result "$name" "$([ $code -eq 0 ] && echo true || echo false)" "$(tail -c 1500 /tmp/restart.out)"
  return $code
}

i=1
while [ $i -le "$CYCLES" ]; do
  checked_restart "kill9_restart_$i" KILL || break
  i=$((i + 1))
done
# "Another build": a copy of the bundle at another path, standing in for an upgrade's new file.
{ cat /guest/dm-remap.js; echo "// another build"; } >/tmp/dm-remap-next.js
checked_restart sigterm_restart_next_build TERM /tmp/dm-remap-next.js
check kept_attached_on_sigterm grep -q "left attached" /tmp/serve.TERM.log

touch /tmp/stop
wait "$writer_pid"
writer_code=$?
check writer_never_failed sh -c "[ $writer_code -eq 0 ] && echo \"$(wc -l </tmp/w.sums) files fsynced\" || { tail -c 800 /tmp/writer.log; exit 1; }"
observe kernel_log "$(dmesg_since restart-cycles | grep -iE 'nbd0|EXT4' | sort | uniq -c | sort -rn | head -12)"
failed=$(dmesg_since restart-cycles | grep -iE "I/O error|EXT4-fs (error|warning)|Aborting journal|lost (async )?page write|shutting down sockets" || true)
if [ -z "$failed" ]; then result no_io_errors true ""; else result no_io_errors false "$failed"; fi
check umount umount "$MNT"
drop_caches
check mount_verify mount -t ext4 -o ro "$NBD" "$MNT"
cp /tmp/w.sums /tmp/sums
check verify_fsynced verify_sums /tmp/sums
umount "$MNT"
check e2fsck e2fsck -fn "$NBD"
# dm-remap stop refuses while the device is mounted, naming the mount; unmounted, it detaches.
check mount_for_stop mount -t ext4 -o ro "$NBD" "$MNT"
stop_refused() { dmremap stop "$SETUP"; [ $? -eq 69 ]; }
check stop_refused_while_mounted stop_refused
umount "$MNT"
check stop_detaches dmremap stop "$SETUP"
wait "$SERVE_PID"
check detached_on_stop sh -c "grep 'detached' /tmp/serve.log && test \$(cat /sys/block/nbd0/size) -eq 0"
note end

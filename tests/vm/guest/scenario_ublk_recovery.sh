# Scenario "ublk_recovery" (trixie's 6.12 kernel): ext4 on /dev/ublkb0 served with --ublk; a
# writer fsyncs file after file while the server is killed with SIGKILL and started again
# $PARAMS times (default 10). Each new server is started with the command line of
# dm-remap@.service, `serve NAME --export --adopt` (no configuration file: export auto), as
# systemd's Restart=on-failure would start it: it must choose ublk itself (ublk_drv is loaded),
# find its device by the setup's fingerprint and take it back (START_USER_RECOVERY, new queues, END_USER_RECOVERY) while the kernel holds the
# I/O. The filesystem must see no error: no I/O error in the kernel log, the writer never fails,
# every fsynced file verifies, e2fsck -fn is clean; then SIGTERM with the fs unmounted removes
# the device. First, the negative control: a server without recovery (--no-recovery) killed the
# same way makes the device fail its I/O and disappear.
note start
CYCLES=${PARAMS:-10}
NBD=/dev/ublkb0
echo ublkb0 >/tmp/io_watch.dev

check dm_main sh -c "$(declare_functions) main_table | dmsetup create main" || return 1
check create dmremap create "$SETUP" --main "$MAIN" --spare "$DISK_SPARE" || return 1

# ublk_serve: starts serve with --ublk; ok once it serves and names the device.
ublk_serve() {
  : >/tmp/serve.log
  serve_start --ublk --queues 2 --depth 32 || return 1
  waited=0
  until grep -q "KERNEL  /dev/ublkb0" /tmp/serve.log; do
    waited=$((waited + 1))
    [ $waited -gt 50 ] && return 1
    sleep 0.1
  done
}

# unit_serve: the unit's command line, `serve NAME --export --adopt`: the spares found by name,
# the sockets in /run/dm-remap; ok once it serves and names the device.
unit_serve() {
  : >/tmp/serve.log
  deno run -A /guest/dm-remap.js serve "$SETUP" --export --adopt >>/tmp/serve.log 2>&1 &
  SERVE_PID=$!
  waited=0
  until grep -q "KERNEL  /dev/ublkb0" /tmp/serve.log; do
    waited=$((waited + 1))
    if [ $waited -gt 1200 ] || ! kill -0 $SERVE_PID 2>/dev/null; then return 1; fi
    sleep 0.1
  done
}

# The negative control: the same kill -9 of a server started with --no-recovery (no
# UBLK_F_USER_RECOVERY) under a writer on the raw device. The kernel must fail the writer's I/O
# and remove the disk: what the cycles below survive is the recovery's doing. The next server
# (with recovery) deletes the dead device and adds a new /dev/ublkb0.
no_recovery_control() {
  : >/tmp/serve.log
  serve_start --ublk --queues 2 --depth 32 --no-recovery || { echo "serve: $(cat /tmp/serve.log)"; return 1; }
  waited=0
  until grep -q "KERNEL  /dev/ublkb0" /tmp/serve.log; do
    waited=$((waited + 1))
    [ $waited -gt 50 ] && { echo "no device: $(cat /tmp/serve.log)"; return 1; }
    sleep 0.1
  done
  grep -q "without user recovery" /tmp/serve.log || { echo "recovery on: $(cat /tmp/serve.log)"; return 1; }
  (
    i=0
    while dd if=/dev/urandom of=$NBD bs=4096 count=16 seek=$(((i * 16) % 4096)) oflag=direct conv=fsync 2>/tmp/nr.err; do
      i=$((i + 1))
      echo $i >>/tmp/nr.count
    done
    echo "dd failed after $i writes: $(cat /tmp/nr.err)" >/tmp/nr.end
  ) &
  nr_writer=$!
  wait_lines /tmp/nr.count 5 60 || { echo "the raw writer did not start"; return 1; }
  kill -KILL "$SERVE_PID"
  wait "$SERVE_PID"
  # The driver sees the dead server within its monitor period (5 s) and stops the device.
  waited=0
  while [ ! -e /tmp/nr.end ] || test -e /sys/block/ublkb0; do
    waited=$((waited + 1))
    if [ $waited -gt 600 ]; then
      kill -KILL "$nr_writer" 2>/dev/null
      echo "after 60 s: writer $(cat /tmp/nr.end 2>/dev/null || echo 'still running'), $(ls /sys/block | grep ublk)"
      return 1
    fi
    sleep 0.1
  done
  wait "$nr_writer"
  echo "$(cat /tmp/nr.end); /dev/ublkb0 gone after $((waited / 10)) s; kernel: $(dmesg | grep -iE 'ublk|I/O error' | tail -3)"
}
check no_recovery_kill9_fails_io no_recovery_control
mark recovery-part

if ublk_serve; then result serve true "$(cat /tmp/serve.log)"; else
  result serve false "$(cat /tmp/serve.log; dmesg | tail -20)"
  return 1
fi
check dead_device_replaced grep "left without user recovery by process" /tmp/serve.log
check mkfs mkfs.ext4 -q -F "$NBD" || return 1
check mount mount -t ext4 "$NBD" "$MNT" || return 1
mark restart-cycles
rm -f /tmp/stop /tmp/w.sums
writer w /tmp/stop >/tmp/writer.log 2>&1 &
writer_pid=$!
wait_lines /tmp/w.sums 3

# restart: SIGKILL under the writer, a new server, and 3 more fsynced files.
restart() {
  before=$(wc -l </tmp/w.sums)
  io_watch_pause
  kill -KILL "$SERVE_PID"
  wait "$SERVE_PID"
  cp /tmp/serve.log /tmp/serve.killed.log
  unit_serve || { echo "restart failed: $(tail -c 800 /tmp/serve.log)"; return 1; }
  grep -q "taken back with" /tmp/serve.log || { echo "not taken back: $(cat /tmp/serve.log)"; return 1; }
  grep -q "kernel device: ublk, auto: ublk_drv is loaded" /tmp/serve.log ||
    { echo "--export did not choose ublk as auto: $(cat /tmp/serve.log)"; return 1; }
  wait_lines /tmp/w.sums $((before + 3)) 120 || { echo "writer did not resume: $(tail -c 400 /tmp/writer.log)"; return 1; }
  io_watch_resume
  echo "$(grep -oE 'kernel device: ublk, auto[^"]*' /tmp/serve.log | head -1); $(grep -E 'taken back' /tmp/serve.log); files $before -> $(wc -l </tmp/w.sums)"
}

passed=0
i=1
while [ $i -le "$CYCLES" ]; do
  restart >/tmp/restart.out 2>&1
  code=$?
  result "kill9_restart_$i" "$([ $code -eq 0 ] && echo true || echo false)" "$(tail -c 1500 /tmp/restart.out)"
  [ $code -eq 0 ] || break
  passed=$((passed + 1))
  i=$((i + 1))
done
observe cycles "$passed of $CYCLES kill -9 cycles recovered"
observe kernel_log "$(dmesg_since restart-cycles | tail -20)"
touch /tmp/stop
wait "$writer_pid"
writer_code=$?
result writer_ok "$([ $writer_code -eq 0 ] && echo true || echo false)" "exit $writer_code: $(tail -c 600 /tmp/writer.log); $(wc -l </tmp/w.sums) files"
check umount umount "$MNT"
drop_caches
check mount_again mount -t ext4 "$NBD" "$MNT"
check verify_fsynced verify_sums /tmp/w.sums
check umount_end umount "$MNT"
check e2fsck e2fsck -fn "$NBD"
errors=$(dmesg_since recovery-part | grep -iE "ublk|I/O error|EXT4-fs (error|warning)|Buffer I/O|blocked for more" | grep -ivE "command line|mounted filesystem|unmounting filesystem|recovery complete")
result dmesg_clean "$([ -z "$errors" ] && echo true || echo false)" "$errors"
serve_stop
check device_removed sh -c "sleep 1; ! test -e $NBD && grep 'removed' /tmp/serve.log"

# Scenario 4: the server restarts under a mounted fs. Two client modes are tried:
# netlink (nbd-client's default, -C 2) and ioctl with -persist (-L -p). Assertions are on
# what must hold either way (clean stop and restart, fsynced data intact, fs consistent);
# the kernel's behaviour during the gap is reported as observe:* lines.
note start
setup_serve_attach --fresh || return 1
check mkfs mkfs.ext4 -q -F -E nodiscard "$NBD"

# restart_under_writer MODE: mount, writer, SIGTERM serve, restart it, let the writer go on.
restart_under_writer() {
  mode=$1
  check "$mode:mount" mount -t ext4 "$NBD" "$MNT" || return 1
  rm -f /tmp/stop /tmp/$mode.sums
  writer $mode /tmp/stop >/tmp/writer.log 2>&1 &
  writer_pid=$!
  wait_lines /tmp/$mode.sums 3
  mark "$mode-stop"
  # The requests held while no server runs are what this scenario reports on, until the
  # device is detached (the caller resumes the watch).
  io_watch_pause
  serve_stop
  cp /tmp/$mode.sums /tmp/$mode.before
  note "$mode: server stopped, $(wc -l </tmp/$mode.sums) files fsynced"
  sleep 2
  serve_start && result "$mode:restart" true "" || result "$mode:restart" false "$(tail -c 1000 /tmp/serve.log)"
  note "$mode: server restarted"
  before=$(wc -l </tmp/$mode.sums)
  resumed=false
  wait_lines /tmp/$mode.sums $((before + 3)) 6 && resumed=true
  touch /tmp/stop
  sleep 2
  if kill -0 $writer_pid 2>/dev/null; then
    stuck="writer blocked 8 s after the restart: $(for p in /proc/[0-9]*; do s=$(cut -d' ' -f3 $p/stat 2>/dev/null); [ "$s" = D ] && echo "$(cat $p/comm) D in $(cat $p/wchan)"; done)"
    observe "$mode:stuck" "$stuck; inflight $(cat /sys/block/nbd0/inflight)"
    note "$mode: nbd-client -d to release the writer"
    nbd-client -d "$NBD"
    sleep 3
  fi
  kill -0 $writer_pid 2>/dev/null && observe "$mode:still_stuck" "after nbd-client -d: $(cut -d' ' -f3 /proc/$writer_pid/stat)"
  observe "$mode:writer" "resumed=$resumed, files before stop $(wc -l </tmp/$mode.before), after $(wc -l </tmp/$mode.sums); $(tail -c 600 /tmp/writer.log)"
  observe "$mode:dmesg" "$(dmesg_since "$mode-stop" | head -30)"
  observe "$mode:nbd_state" "pid=$(cat /sys/block/nbd0/pid 2>&1) size=$(cat /sys/block/nbd0/size) check=$(nbd-client -c $NBD 2>&1; echo $?); $(grep nbd0 /proc/mounts); $(ps | grep nbd-clien[t])"
  umount "$MNT" 2>/dev/null || umount -l "$MNT"
  observe "$mode:umount" "$(grep nbd0 /proc/mounts)"
}

restart_under_writer netlink
nbd-client -d "$NBD"
check netlink:detached nbd_wait_detached
io_watch_resume
note "netlink done"
check ioctl:attach nbd_attach_ioctl -L -p
restart_under_writer ioctl
nbd-client -d "$NBD"
check ioctl:detached nbd_wait_detached
io_watch_resume
check reattach nbd_attach
nbd_report_retries
# A mount replays the journal the aborted runs left; then the fs must be clean.
check replay sh -c "mount -t ext4 $NBD $MNT && umount $MNT"
check e2fsck e2fsck -fn "$NBD"
check mount_final mount -t ext4 -o ro "$NBD" "$MNT"
cat /tmp/netlink.before /tmp/ioctl.before >/tmp/sums
check verify_fsynced_before_stop verify_sums /tmp/sums
umount "$MNT"
serve_stop
note end

# Helpers the scenario scripts share (sourced by /init, and again before scenario_<name>.sh;
# busybox sh). Environment from /init: DISK_MAIN, DISK_SPARE (virtio disks named by serial).

SETUP=vmtest
NBD_SOCKET=/run/dmr.nbd.sock
API_SOCKET=/run/dmr.api.sock
MAIN=/dev/mapper/main

# disk_by_serial SERIAL: the virtio disk of that serial (the order of -drive options does not matter).
disk_by_serial() {
  for block in /sys/block/vd*; do
    [ "$(cat "$block/serial" 2>/dev/null)" = "$1" ] && echo "/dev/${block##*/}" && return 0
  done
  return 1
}

# json_string TEXT: TEXT as a JSON string literal.
json_string() {
  printf '"'
  printf '%s' "$1" | tr -d '\r' | tr '\t' ' ' | sed 's/\\/\\\\/g; s/"/\\"/g' |
    awk '{ printf "%s%s", (NR > 1 ? "\\n" : ""), $0 }'
  printf '"'
}

# result CHECK true|false DETAIL: one machine-readable line on the console.
result() {
  echo "DMREMAP-RESULT {\"check\":\"$1\",\"ok\":$2,\"detail\":$(json_string "$3")}"
}

# check CHECK COMMAND...: runs COMMAND; ok when it exits 0; detail is the tail of its output.
check() {
  name=$1
  shift
  out=$("$@" 2>&1)
  code=$?
  if [ $code -eq 0 ]; then result "$name" true "$(printf '%s' "$out" | tail -c 1500)"; else
    result "$name" false "exit $code: $(printf '%s' "$out" | tail -c 1500)"
  fi
  return $code
}

# note TEXT: a progress line with the guest uptime, for the log and for timings.
note() { echo "guest[$(cut -d' ' -f1 /proc/uptime)]: $*"; }

dmremap() { deno run -A /guest/dm-remap.js "$@"; }

# main_table [BAD_START_SECTOR:BAD_SECTOR_COUNT ...] (sorted, not overlapping): prints a
# dm table for $MAIN: linear over $DISK_MAIN, with error targets over the bad ranges.
main_table() {
  total=$(blockdev --getsz "$DISK_MAIN")
  at=0
  for range in "$@"; do
    start=${range%:*}
    count=${range#*:}
    [ "$start" -gt "$at" ] && echo "$at $((start - at)) linear $DISK_MAIN $at"
    echo "$start $count error"
    at=$((start + count))
  done
  [ "$total" -gt "$at" ] && echo "$at $((total - at)) linear $DISK_MAIN $at"
}

main_create() { main_table | dmsetup create main; }

# main_set_bad [RANGES...]: swaps $MAIN's table live (suspend, reload, resume).
main_set_bad() {
  main_table "$@" >/tmp/table
  dmsetup suspend main && dmsetup reload main /tmp/table && dmsetup resume main
}

# serve_start [ARGS...]: starts `dm-remap serve` in the background; waits until it serves.
serve_start() {
  # A restart appends to the same log: wait for a "serving" line of this server's own.
  served_before=$(grep -c "serving [0-9]* bytes" /tmp/serve.log 2>/dev/null)
  deno run -A "${SERVE_BUNDLE:-/guest/dm-remap.js}" serve "$SETUP" --main "$MAIN" --spare "$DISK_SPARE" --socket "$NBD_SOCKET" \
    --api-socket "$API_SOCKET" "$@" >>/tmp/serve.log 2>&1 &
  SERVE_PID=$!
  echo "$SERVE_PID" >/run/serve.pid
  tries=0
  until [ "$(grep -c "serving [0-9]* bytes" /tmp/serve.log 2>/dev/null)" -gt "${served_before:-0}" ]; do
    tries=$((tries + 1))
    if [ $tries -gt 600 ] || ! kill -0 $SERVE_PID 2>/dev/null; then
      cat /tmp/serve.log
      return 1
    fi
    sleep 0.1
  done
}

# serve_stop: SIGTERM, wait for the clean stop (not inside `check`: wait needs this shell).
serve_stop() {
  kill -TERM "$SERVE_PID"
  wait "$SERVE_PID"
  code=$?
  result serve_stop "$([ $code -eq 0 ] && echo true || echo false)" "exit $code: $(tail -c 1000 /tmp/serve.log)"
}

# status_json: the status API's answer.
status_json() { dmremap status --api-socket "$API_SOCKET" --json; }

# json_number KEY: the first numeric value of "KEY" in the JSON on stdin.
json_number() { grep -o "\"$1\": *[0-9]*" | head -1 | grep -o '[0-9]*$'; }

# write_tree DIR COUNT: COUNT random files of 4 KiB to 300 KiB in DIR/a..d; appends their
# checksums to /tmp/sums (paths relative to the mount point in $MNT).
write_tree() {
  dir=$1
  count=$2
  i=0
  while [ $i -lt "$count" ]; do
    sub="$dir/$(echo abcd | cut -c$((i % 4 + 1)))"
    mkdir -p "$sub"
    kib=$(((i * 37) % 300 + 4))
    dd if=/dev/urandom of="$sub/f$i" bs=1024 count=$kib 2>/dev/null || return 1
    i=$((i + 1))
  done
  (cd "$MNT" && find "${dir#"$MNT"/}" -type f | sort | xargs sha256sum) >>/tmp/sums
}

# verify_sums FILE: sha256sum -c relative to $MNT; prints only failures.
verify_sums() { (cd "$MNT" && sha256sum -c "$1" 2>&1 | grep -v ': OK$'; exit 0) && (cd "$MNT" && sha256sum -c -s "$1"); }

NBD=/dev/nbd0
MNT=/mnt

NBD_CONNECTIONS=2

# nbd_attach [ARGS...]: nbd-client on the unix socket, block size 4096, two connections
# (the server offers multi-conn), netlink; extra ARGS go to nbd-client. Then it waits until
# the kernel reads every connection, and attaches again (at most 3 times) when it does not.
#
# Why: the 6.1 driver reads each connection in a recv_work item on the device's workqueue
# (nbd0-recv, WQ_MEM_RECLAIM). When the kernel cannot start a worker for them quickly (TCG
# under load), the workqueue's rescuer thread takes every pending item and runs them one
# after the other; recv_work returns only when its connection ends, so the second connection
# is never read. Its replies then wait in the socket until the kernel's 30 s timeout requeues
# the request on the other connection (docs/vm.md, "A kernel that does not read a connection").
nbd_attach() {
  attempt=1
  while :; do
    nbd-client -unix "$NBD_SOCKET" "$NBD" -N "$SETUP" -b 4096 -C $NBD_CONNECTIONS "$@" || return 1
    waited=0
    while [ "$(nbd_receivers)" -lt $NBD_CONNECTIONS ] && [ $waited -lt 50 ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    if [ "$(nbd_receivers)" -ge $NBD_CONNECTIONS ]; then
      # The kernel log of the attempts given up on is not this scenario's business.
      [ $attempt -gt 1 ] && mark attach-retried
      return 0
    fi
    # Reported by nbd_report_retries: this function runs inside `check`, which keeps its output.
    echo "attempt $attempt: $(nbd_receiver_stacks)" >>/tmp/attach_retries
    nbd-client -d "$NBD" >/dev/null 2>&1
    [ $attempt -ge 3 ] && echo "the kernel read $(nbd_receivers) of $NBD_CONNECTIONS connections" && return 1
    attempt=$((attempt + 1))
  done
}

# nbd_attach_ioctl ARGS...: nbd-client in ioctl mode, then waits (up to 30 s) until the kernel
# serves $NBD. Its child sets the socket and enters NBD_DO_IT after the parent returned; a mount
# before that reads EIO, which a TCG guest beside two other VMs showed.
nbd_attach_ioctl() {
  nbd-client -unix "$NBD_SOCKET" "$NBD" -N "$SETUP" -b 4096 "$@" || return 1
  waited=0
  while [ ! -e "/sys/block/${NBD#/dev/}/pid" ] && [ $waited -lt 300 ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  [ -e "/sys/block/${NBD#/dev/}/pid" ]
}

# nbd_wait_detached: waits (up to 30 s) until the kernel has let go of $NBD after a disconnect.
# The disconnect returns before the device's receive workers end and its configuration is
# released (the pid attribute goes with it); an ioctl-mode attach before that is refused
# ("Device being setup by another task", CONNECT failed), which a loaded TCG guest showed.
nbd_wait_detached() {
  waited=0
  while [ -e "/sys/block/${NBD#/dev/}/pid" ] && [ $waited -lt 300 ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  [ ! -e "/sys/block/${NBD#/dev/}/pid" ]
}

# nbd_report_retries: one observe:attach_unread_connection line when nbd_attach attached again.
nbd_report_retries() {
  [ -e /tmp/attach_retries ] || return 0
  observe attach_unread_connection "$(cat /tmp/attach_retries)"
  rm -f /tmp/attach_retries
}

# nbd_receivers: how many kernel tasks run recv_work, the NBD driver's reader of one connection.
nbd_receivers() { cat /proc/[0-9]*/task/*/stack 2>/dev/null | grep -c recv_work; }

# nbd_receiver_stacks: the kernel stacks of the tasks that run recv_work.
nbd_receiver_stacks() {
  for stack in /proc/[0-9]*/task/*/stack; do
    grep -q recv_work "$stack" 2>/dev/null || continue
    task=${stack%/stack}
    echo "$(cat "$task/comm"): $(cut -d' ' -f2 "$stack" | tr '\n' ' ')"
  done
}

# setup_serve_attach [--fresh] [BAD_RANGES...]: the dm device over the main disk (with
# BAD_RANGES as error segments), `dm-remap create` when --fresh, serve, nbd-client.
setup_serve_attach() {
  fresh=false
  [ "$1" = --fresh ] && fresh=true && shift
  check dm_main sh -c "$(declare_functions) main_table $* | dmsetup create main" || return 1
  if $fresh; then check create dmremap create "$SETUP" --main "$MAIN" --spare "$DISK_SPARE" || return 1; fi
  if serve_start; then result serve true "$(cat /tmp/serve.log)"; else
    result serve false "$(cat /tmp/serve.log)"
    return 1
  fi
  check nbd_attach nbd_attach
  code=$?
  nbd_report_retries
  return $code
}

# Every I/O on $NBD is watched for the whole run (io_watch_start before the scenario,
# io_watch_end after it): requests in flight with none completing for IO_STALL_SECONDS is a
# stall. The kernel's own timeout is 30 s; no request of these scenarios takes seconds.
IO_STALL_SECONDS=10
# A scenario whose server attaches the device itself with several connections writes their
# number to /tmp/io_watch.connections: there the 6.1 kernel may leave a connection unread
# (the rescuer case, nbd_attach above), and its requests complete only after the server's
# request timeout (serve's default --io-timeout, 30 s) requeues them on a read connection.
# A stall that the kernel was reading fewer connections than that when it reached
# IO_STALL_SECONDS is allowed up to RESCUER_STALL_SECONDS and reported as
# observe:io_watch_unread_connection; a longer one fails. The allowance holds for the rest of
# that stall even when the count of readers changes before it ends (the kernel's recovery
# can change it: the server's replacement connection gets a reader of its own).
RESCUER_STALL_SECONDS=45

# io_watch_pause, io_watch_resume: around what a scenario does to the server on purpose
# (stops or kills it, leaves requests unanswered), until the kernel is done with it (the
# device detached or the requests answered). The watch sees no stall in between, and
# io_watch_end leaves out the kernel's request timeouts logged in between (the kernel log
# is marked at both ends).
io_watch_pause() {
  mark io-watch-paused
  touch /tmp/io_watch.pause
}
io_watch_resume() {
  rm -f /tmp/io_watch.pause
  mark io-watch-resumed
}

io_watch_start() {
  rm -f /tmp/io_watch.stop /tmp/io_watch.pause /tmp/io_watch.connections /tmp/io_stalls
  io_watch &
  IO_WATCH_PID=$!
}

# io_watch: samples /sys/block/nbd0 (or the device named in /tmp/io_watch.dev, e.g. ublkb0)
# twice a second. Each stall is reported at once as a
# failed check io_stall, with the stall report taken while it lasts; none while paused.
io_watch() {
  last="" still=0 reported=false unread_stall=false
  while [ ! -e /tmp/io_watch.stop ]; do
    sleep 0.5
    dev=$(cat /tmp/io_watch.dev 2>/dev/null || echo nbd0)
    [ -e "/sys/block/$dev/inflight" ] || continue
    inflight=$(awk '{ print $1 + $2 }' "/sys/block/$dev/inflight")
    # Completed reads, writes, discards and flushes (Documentation/block/stat.rst).
    completed=$(awk '{ print $1 + $5 + $12 + $16 }' "/sys/block/$dev/stat")
    if [ "$inflight" -eq 0 ] || [ "$completed" != "$last" ] || [ -e /tmp/io_watch.pause ]; then
      last=$completed still=0 reported=false unread_stall=false
      continue
    fi
    still=$((still + 1))
    [ $still -ge $((IO_STALL_SECONDS * 2)) ] && ! $reported || continue
    if [ $still -eq $((IO_STALL_SECONDS * 2)) ] && [ -e /tmp/io_watch.connections ] &&
      [ "$(nbd_receivers)" -lt "$(cat /tmp/io_watch.connections)" ]; then
      unread_stall=true
    fi
    if $unread_stall && [ $still -lt $((RESCUER_STALL_SECONDS * 2)) ]; then
      [ -z "$unread_reported" ] && unread_reported=true &&
        observe io_watch_unread_connection "$inflight requests waited $IO_STALL_SECONDS s: $(nbd_receiver_stacks)"
    else
      reported=true
      echo "stall at $(cut -d' ' -f1 /proc/uptime)" >>/tmp/io_stalls
      result io_stall false "$inflight requests in flight, none completed for $((still / 2)) s: $(stall_report)"
    fi
  done
}

# io_watch_end: stops the watch and reports io_watch: ok when it saw no stall and the kernel
# logged no request timeout ("timed out") on any NBD device while the watch was not paused.
# A scenario that kills the server sets IO_WATCH_REQUEUE_EXPECTED=true: requests in flight
# on its sockets are then sent again after the timeout ("Connection timed out, retrying"),
# which is the kernel's recovery.
io_watch_end() {
  touch /tmp/io_watch.stop
  wait "$IO_WATCH_PID"
  stalls=$(cat /tmp/io_stalls 2>/dev/null)
  timeouts=$(dmesg | awk '/dmremap-mark io-watch-paused/ { paused = 1 }
    /dmremap-mark io-watch-resumed/ { paused = 0 }
    !paused' | grep -i "nbd.*timed out")
  [ "$IO_WATCH_REQUEUE_EXPECTED" = true ] && timeouts=$(echo "$timeouts" | grep -v "timed out, retrying")
  if [ -z "$stalls$timeouts" ]; then result io_watch true "no stall, no timeout"; else
    result io_watch false "stalls: $stalls; kernel: $timeouts"
  fi
}

# stall_report: the server's threads (what each waits in), its counters and sockets, and the
# kernel's view of the connections and of the requests it holds.
stall_report() {
  mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
  pid=$(cat /run/serve.pid 2>/dev/null)
  echo "uptime $(cut -d' ' -f1 /proc/uptime)"
  for task in /proc/"$pid"/task/*; do
    echo "thread ${task##*/} $(cat "$task/comm") state $(sed 's/.*) //' "$task/stat" | cut -d' ' -f1) wchan $(cat "$task/wchan") syscall $(cut -d' ' -f1-4 "$task/syscall" 2>/dev/null)"
  done
  # What each connection's worker received and answered, and what its socket holds unread
  # (SIGUSR1 makes the server print it), beside the kernel's count in flight below.
  kill -USR1 "$pid" 2>/dev/null && sleep 1 && grep "worker connection" /tmp/serve.log | tail -4
  # Requests the server answered, to set beside the kernel's count in flight below.
  echo "status: $(status_json 2>&1 | tr -d ' \n' | grep -o '"counters":{[^}]*}\|"nbd":{[^}]*}' | tr '\n' ' ')"
  echo "server sockets: $(ls -l /proc/"$pid"/fd 2>/dev/null | grep -o '[0-9]* -> socket:.*' | tr '\n' ' ')"
  dev=$(cat /tmp/io_watch.dev 2>/dev/null || echo nbd0)
  for file in /sys/kernel/debug/nbd/$dev/*; do echo "$file: $(cat "$file" 2>&1 | tr '\n' ' ')"; done
  # Where the kernel holds the request: dispatched to the driver (busy) or still queued.
  echo "inflight: $(cat /sys/block/$dev/inflight)"
  for file in /sys/kernel/debug/block/$dev/hctx*/busy /sys/kernel/debug/block/$dev/hctx*/dispatch \
    /sys/kernel/debug/block/$dev/hctx*/state /sys/kernel/debug/block/$dev/requeue_list; do
    [ -e "$file" ] && echo "$file: $(cat "$file" 2>&1 | tr '\n' ' ')"
  done
  # Kernel stacks of every task in the NBD, socket or blk-mq code, sleeping or not: a request
  # the kernel started but never sent shows its sender here (sysrq w lists only D state).
  for stack in /proc/[0-9]*/task/*/stack; do
    frames=$(cut -d' ' -f2 "$stack" 2>/dev/null | tr '\n' ' ')
    case "$frames" in *nbd* | *ublk* | *io_uring* | *sock_sendmsg* | *unix_stream* | *blk_mq*)
      task=${stack%/stack}
      echo "stack ${task##*/} $(cat "$task/comm" 2>/dev/null): $frames" ;;
    esac
  done
  echo w >/proc/sysrq-trigger 2>/dev/null
  dmesg | tail -40
}

# The helper functions as text, for `sh -c`.
declare_functions() { echo ". /guest/lib.sh;"; }

# free_bad_ranges MAX_BLOCKS: sector ranges START:COUNT (for main_table) covering the free
# extents of the ext4 on $NBD, longest-first order not needed: ascending, at most MAX_BLOCKS.
# The main disk maps 1:1 onto the exported device, so block b is main sector 8b.
free_bad_ranges() {
  dumpe2fs "$NBD" 2>/dev/null | awk -v max="$1" '
    /^  Free blocks: [0-9]/ {
      sub(/^  Free blocks: /, "")
      n = split($0, parts, ", ")
      for (i = 1; i <= n; i++) {
        k = split(parts[i], ab, "-")
        a = ab[1] + 0; b = (k > 1 ? ab[2] + 0 : a)
        len = b - a + 1
        if (len < 16 || total >= max) continue
        if (total + len > max) len = max - total
        printf "%d:%d\n", a * 8, len * 8
        total += len
      }
    }'
}

# writer DIR STOPFILE: writes files of 16-256 KiB with fsync (file and directory) until
# STOPFILE exists; "sum  path" lines go to DIR.sums after each fsync; exits 1 on any error.
writer() {
  dir=$1
  mkdir -p "$MNT/$dir" || return 1
  i=0
  while [ ! -e "$2" ]; do
    kib=$(((i * 53) % 240 + 16))
    dd if=/dev/urandom of="$MNT/$dir/w$i" bs=1024 count=$kib conv=fsync 2>/tmp/dd.err ||
      { cat /tmp/dd.err; return 1; }
    sync "$MNT/$dir" || return 1
    (cd "$MNT" && sha256sum "$dir/w$i") >>"/tmp/$dir.sums" || return 1
    i=$((i + 1))
  done
}

# wait_lines FILE N [SECONDS]: waits until FILE has at least N lines (default at most 120 s).
wait_lines() {
  tries=0
  while [ "$(cat "$1" 2>/dev/null | wc -l)" -lt "$2" ]; do
    tries=$((tries + 1))
    [ $tries -gt $((${3:-120} * 10)) ] && return 1
    sleep 0.1
  done
}

# nbd_dmesg: the kernel log, from the last attach that nbd_attach had to repeat if there was one.
nbd_dmesg() {
  if dmesg | grep -q "dmremap-mark attach-retried"; then dmesg_since attach-retried; else dmesg; fi
}

# nbd_errors: kernel log lines about I/O errors on $NBD or the filesystem on it.
nbd_errors() { nbd_dmesg | grep -iE "nbd0|EXT4-fs (error|warning)|I/O error" | grep -ivE "detected capacity change|nbd0: p|mounted filesystem|unmounting filesystem|recovery complete"; }

# check_no_nbd_errors CHECK: ok when the kernel logged no I/O error on $NBD.
check_no_nbd_errors() {
  errors=$(nbd_errors)
  if [ -z "$errors" ]; then result "$1" true ""; else result "$1" false "$errors"; fi
}

# check_no_write_errors CHECK: ok when the kernel logged no failed WRITE or flush on $NBD and
# no ext4 error; failed reads (readahead into never-written bad blocks) go in the detail.
check_no_write_errors() {
  errors=$(nbd_errors)
  bad=$(echo "$errors" | grep -E "op 0x[1-9].*\((WRITE|FLUSH)|EXT4-fs (error|warning)|Buffer I/O error|lost (async )?page write")
  reads=$(echo "$errors" | grep -c "(READ)")
  if [ -z "$bad" ]; then result "$1" true "$reads failed reads (readahead): $(echo "$errors" | head -4)"; else
    result "$1" false "$errors"
  fi
}

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# observe CHECK DETAIL: a finding reported for the record (always ok).
observe() { result "observe:$1" true "$2"; }

# mark TEXT: a line in the kernel log, to cut dmesg later (dmesg_since TEXT).
mark() { echo "dmremap-mark $1" >/dev/kmsg; }
dmesg_since() { dmesg | sed -n "/dmremap-mark $1/,\$p" | grep -v "dmremap-mark"; }

# power_cut_writers: the writes a power cut interrupts (scenarios powercut1, ublk_powercut1): a
# writer without fsync in the background, and one that fsyncs each file (and its directory)
# and then prints "DMREMAP-FSYNCED <sha256>  <path>" for the host, which kills qemu after a
# few of those lines.
power_cut_writers() {
  mkdir -p "$MNT/bulk" "$MNT/synced"
  (
    i=0
    while :; do
      dd if=/dev/urandom of="$MNT/bulk/b$i" bs=65536 count=4 2>/dev/null
      i=$((i + 1))
    done
  ) &
  note writing
  i=0
  while :; do
    dd if=/dev/urandom of="$MNT/synced/s$i" bs=1024 count=$(((i * 29) % 200 + 8)) conv=fsync 2>/dev/null ||
      { result fsync_writer false "dd failed on s$i"; break; }
    sync "$MNT/synced" || { result fsync_writer false "fsync of the directory failed"; break; }
    echo "DMREMAP-FSYNCED $(cd "$MNT" && sha256sum "synced/s$i")"
    i=$((i + 1))
    [ $i -ge 200 ] && break
  done
  result not_killed false "the host should have killed the VM by now"
}

# assemble_ublk: `assemble --scan` starts the setup, and it chose /dev/ublkb0 itself (export
# auto, ublk_drv loaded); its serve logs to $LOG (scenarios ublk_powercut1 and 2).
assemble_ublk() {
  dmremap assemble --scan --timeout-ms 15000 >/tmp/assemble.log 2>&1
  code=$?
  cat /tmp/assemble.log
  [ $code -eq 0 ] || return 1
  grep -q "kernel device: auto: ublk_drv is loaded" /tmp/assemble.log || return 1
  waited=0
  until grep -q "KERNEL  /dev/ublkb0" "$LOG" 2>/dev/null; do
    waited=$((waited + 1))
    [ $waited -gt 900 ] && { cat "$LOG"; return 1; }
    sleep 0.1
  done
  test -b "$NBD"
}

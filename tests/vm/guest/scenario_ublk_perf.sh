# Performance view (not asserted), trixie's 6.12 kernel: one server exports the setup as
# /dev/ublkb0 (--ublk, 2 queues of depth 64) and on its Unix socket, which nbd-client attaches
# as /dev/nbd0 (-C 2); fio (libaio, O_DIRECT) runs each job on the raw virtio main disk, nbd0
# and ublkb0 back to back, in an order rotated per job, so each ratio compares runs seconds
# apart. One "perf" result per job and device: IOPS, KiB/s, and the server's CPU time per request
# (from /proc/PID/stat before and after the job; on the raw disk the server is idle, which gives
# the baseline). TCG distorts absolute numbers.
note start
check dm_main sh -c "$(declare_functions) main_table | dmsetup create main" || return 1
check create dmremap create "$SETUP" --main "$MAIN" --spare "$DISK_SPARE" || return 1
: >/tmp/serve.log
if serve_start --ublk --queues 2 --depth 64; then result serve true "$(cat /tmp/serve.log)"; else
  result serve false "$(cat /tmp/serve.log)"
  return 1
fi
check nbd_attach nbd_attach || return 1
# server_cpu_ticks: the server process's user and system CPU time so far (all its threads, the
# queue workers among them), in clock ticks (USER_HZ, 100 per second on x86): /proc/PID/stat
# fields 14 and 15.
server_cpu_ticks() { sed 's/^.*) //' "/proc/$SERVE_PID/stat" | cut -d' ' -f12,13; }
fio_job() { # NAME DEVICE RW BS QD
  cpu_before=$(server_cpu_ticks)
  line=$(fio --name="$1" --filename="$2" --rw="$3" --bs="$4" --ioengine=libaio --direct=1 \
    --iodepth="$5" --size=128M --runtime="${PERF_SECONDS:-4}" --time_based --minimal 2>&1 | tail -1)
  cpu_after=$(server_cpu_ticks)
  # Terse format v3: read total KiB, KiB/s, IOPS, runtime ms at 6-9; write at 47-50.
  case "$3" in
  *read) total=$(echo "$line" | cut -d';' -f6) iops=$(echo "$line" | cut -d';' -f8) kib=$(echo "$line" | cut -d';' -f7) ;;
  *) total=$(echo "$line" | cut -d';' -f47) iops=$(echo "$line" | cut -d';' -f49) kib=$(echo "$line" | cut -d';' -f48) ;;
  esac
  ok=$(echo "$iops$total" | grep -qE '^[0-9]+$' && echo true || echo false)
  # Requests: the KiB moved over the request size (fio's IOPS are rounded).
  cpu=$(echo "$cpu_before $cpu_after ${total:-0} $4" | awk '{
    bs = $6; kib = (bs ~ /M$/) ? bs * 1024 : bs * 1; requests = $5 / kib
    usr = $3 - $1; sys = $4 - $2
    printf "\"requests\":%d,\"serverUserTicks\":%d,\"serverSystemTicks\":%d,\"serverCpuUsPerRequest\":%.1f",
      requests, usr, sys, (requests > 0 ? (usr + sys) * 10000 / requests : 0) }')
  echo "DMREMAP-RESULT {\"check\":\"perf:$1:${2##*/}\",\"ok\":$ok,\"detail\":{\"iops\":${iops:-0},\"kibPerSecond\":${kib:-0},$cpu}}"
}
rotation=0
for job in "randread4k-qd1 randread 4k 1" "randread4k-qd32 randread 4k 32" \
  "randwrite4k-qd1 randwrite 4k 1" "randwrite4k-qd32 randwrite 4k 32" \
  "read1m read 1M 4" "write1m write 1M 4"; do
  set -- $job
  case $((rotation % 3)) in
  0) devices="$DISK_MAIN $NBD /dev/ublkb0" ;;
  1) devices="$NBD /dev/ublkb0 $DISK_MAIN" ;;
  *) devices="/dev/ublkb0 $DISK_MAIN $NBD" ;;
  esac
  for device in $devices; do fio_job "$1" "$device" "$2" "$3" "$4"; done
  rotation=$((rotation + 1))
done
check nbd_detach nbd-client -d "$NBD"
serve_stop
note end

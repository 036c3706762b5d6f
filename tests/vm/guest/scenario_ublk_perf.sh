# Performance view (not asserted), trixie's 6.12 kernel: one server exports the setup as
# /dev/ublkb0 (--ublk, 2 queues of depth 64) and on its Unix socket, which nbd-client attaches
# as /dev/nbd0 (-C 2); fio (libaio, O_DIRECT) runs each job on the raw virtio main disk, nbd0
# and ublkb0 back to back, in an order rotated per job, so each ratio compares runs seconds
# apart. One "perf" result per job and device: IOPS, KiB/s, and the server's CPU per request,
# twice: from /proc/PID/stat before and after the job, and from `perf stat -p` (task-clock and
# cycles) counting the server while fio runs; on the raw disk the server is idle, which gives
# the baseline. Then a `perf record -g` profile of the server during one more 4K QD32 random read
# on /dev/ublkb0 (not one of the measured runs, which it would slow down), its top entries as the
# "profile" result. perf is trixie's linux-perf under /perf (scripts/vm_setup_trixie.sh); the
# server runs with V8's --perf-basic-prof, so its JIT frames have names (/tmp/perf-PID.map).
# TCG distorts absolute numbers.
note start
check dm_main sh -c "$(declare_functions) main_table | dmsetup create main" || return 1
check create dmremap create "$SETUP" --main "$MAIN" --spare "$DISK_SPARE" || return 1
: >/tmp/serve.log
export DENO_V8_FLAGS=--perf-basic-prof
if serve_start --ublk --queues 2 --depth 64; then result serve true "$(cat /tmp/serve.log)"; else
  result serve false "$(cat /tmp/serve.log)"
  return 1
fi
unset DENO_V8_FLAGS
check nbd_attach nbd_attach || return 1
# server_cpu_ticks: the server process's user and system CPU time so far (all its threads, the
# queue workers among them), in clock ticks (USER_HZ, 100 per second on x86): /proc/PID/stat
# fields 14 and 15.
server_cpu_ticks() { sed 's/^.*) //' "/proc/$SERVE_PID/stat" | cut -d' ' -f12,13; }
# fio_args NAME DEVICE RW BS QD: the options of one fio job (perf runs fio, so not a function).
fio_args() {
  echo "--name=$1 --filename=$2 --rw=$3 --bs=$4 --ioengine=libaio --direct=1 --iodepth=$5" \
    "--size=128M --runtime=${PERF_SECONDS:-4} --time_based --minimal"
}
# perf stat counts the server's threads (-p) while the fio it starts runs, so counting begins
# before the first request; CSV (-x,) in /tmp/perf-stat.csv: value,unit,event,...
fio_job() { # NAME DEVICE RW BS QD
  cpu_before=$(server_cpu_ticks)
  line=$(/perf/bin/perf stat -x, -o /tmp/perf-stat.csv -e task-clock,cycles -p "$SERVE_PID" -- \
    fio $(fio_args "$@") 2>&1 | tail -1)
  cpu_after=$(server_cpu_ticks)
  task_clock_ms=$(awk -F, '$3 == "task-clock" { print $1 }' /tmp/perf-stat.csv)
  cycles=$(awk -F, '$3 ~ /^cycles/ { print $1 }' /tmp/perf-stat.csv)
  # Terse format v3: read total KiB, KiB/s, IOPS, runtime ms at 6-9; write at 47-50.
  case "$3" in
  *read) total=$(echo "$line" | cut -d';' -f6) iops=$(echo "$line" | cut -d';' -f8) kib=$(echo "$line" | cut -d';' -f7) ;;
  *) total=$(echo "$line" | cut -d';' -f47) iops=$(echo "$line" | cut -d';' -f49) kib=$(echo "$line" | cut -d';' -f48) ;;
  esac
  ok=$(echo "$iops$total" | grep -qE '^[0-9]+$' && echo true || echo false)
  # Requests: the KiB moved over the request size (fio's IOPS are rounded).
  # task-clock is in ms; cycles is a number, or "<not supported>" where the CPU has no counter.
  cpu=$(echo "$cpu_before $cpu_after ${total:-0} $4 ${task_clock_ms:-none} ${cycles:-none}" | awk '{
    bs = $6; kib = (bs ~ /M$/) ? bs * 1024 : bs * 1; requests = $5 / kib
    usr = $3 - $1; sys = $4 - $2
    printf "\"requests\":%d,\"serverUserTicks\":%d,\"serverSystemTicks\":%d,\"serverCpuUsPerRequest\":%.1f",
      requests, usr, sys, (requests > 0 ? (usr + sys) * 10000 / requests : 0)
    if ($7 ~ /^[0-9.]+$/ && requests > 0) {
      printf ",\"perfTaskClockMs\":%.1f,\"perfTaskClockUsPerRequest\":%.1f", $7, $7 * 1000 / requests
    } else printf ",\"perfTaskClockMs\":null,\"perfTaskClockUsPerRequest\":null"
    if ($8 ~ /^[0-9]+$/ && requests > 0) {
      printf ",\"perfCycles\":%d,\"perfCyclesPerRequest\":%.0f", $8, $8 / requests
    } else {
      cycles = $8; for (i = 9; i <= NF; i++) cycles = cycles " " $i
      printf ",\"perfCycles\":\"%s\",\"perfCyclesPerRequest\":null", cycles
    }
  }')
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
# The profile: call graphs (frame pointers) of every server thread at perf's default frequency.
/perf/bin/perf record -g -o /tmp/perf.data -p "$SERVE_PID" -- \
  fio $(fio_args profile-randread4k-qd32 /dev/ublkb0 randread 4k 32) >/tmp/perf-record.log 2>&1
record_code=$?
# Two views: the share of each object (kernel, deno, V8's JIT code, libc), then the top symbols.
perf_report() {
  /perf/bin/perf report -i /tmp/perf.data --stdio --no-children -g none "$@" 2>>/tmp/perf-report.err |
    grep -vE '^$|^#$|tips.txt|please install perf|perf.data header'
}
{ perf_report --sort dso --percent-limit 0.2; perf_report --sort dso,sym --percent-limit 0.3 | head -70; } \
  >/tmp/perf-report.txt
if [ $record_code -eq 0 ] && grep -q '%' /tmp/perf-report.txt; then
  result profile true "$(cat /tmp/perf-report.txt)"
else
  result profile false "record exit $record_code: $(tail -c 800 /tmp/perf-record.log) $(tail -c 400 /tmp/perf-report.err)"
fi
check nbd_detach nbd-client -d "$NBD"
serve_stop
note end

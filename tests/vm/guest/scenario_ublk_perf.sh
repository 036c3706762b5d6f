# Performance view (not asserted), trixie's 6.12 kernel: one server exports the setup as
# /dev/ublkb0 (--ublk, 2 queues of depth 64) and on its Unix socket, which nbd-client attaches
# as /dev/nbd0 (-C 2); fio (libaio, O_DIRECT) runs each job on the raw virtio main disk, nbd0
# and ublkb0 back to back, in an order rotated per job, so each ratio compares runs seconds
# apart. One "perf" result per job and device: IOPS and KiB/s. TCG distorts absolute numbers.
note start
check dm_main sh -c "$(declare_functions) main_table | dmsetup create main" || return 1
check create dmremap create "$SETUP" --main "$MAIN" --spare "$DISK_SPARE" || return 1
: >/tmp/serve.log
if serve_start --ublk --queues 2 --depth 64; then result serve true "$(cat /tmp/serve.log)"; else
  result serve false "$(cat /tmp/serve.log)"
  return 1
fi
check nbd_attach nbd_attach || return 1
fio_job() { # NAME DEVICE RW BS QD
  line=$(fio --name="$1" --filename="$2" --rw="$3" --bs="$4" --ioengine=libaio --direct=1 \
    --iodepth="$5" --size=128M --runtime="${PERF_SECONDS:-4}" --time_based --minimal 2>&1 | tail -1)
  case "$3" in
  *read) iops=$(echo "$line" | cut -d';' -f8) kib=$(echo "$line" | cut -d';' -f7) ;;
  *) iops=$(echo "$line" | cut -d';' -f49) kib=$(echo "$line" | cut -d';' -f48) ;;
  esac
  ok=$(echo "$iops" | grep -qE '^[0-9]+$' && echo true || echo false)
  echo "DMREMAP-RESULT {\"check\":\"perf:$1:${2##*/}\",\"ok\":$ok,\"detail\":{\"iops\":${iops:-0},\"kibPerSecond\":${kib:-0}}}"
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

# Performance view (not asserted): fio (libaio, O_DIRECT) on /dev/nbd0 against the same
# jobs on the raw virtio disk. One "perf" result per job and device: IOPS and KiB/s.
note start
setup_serve_attach --fresh || return 1
fio_job() { # NAME DEVICE RW BS
  line=$(fio --name="$1" --filename="$2" --rw="$3" --bs="$4" --ioengine=libaio --direct=1 \
    --iodepth=16 --size=128M --runtime="${PERF_SECONDS:-4}" --time_based --minimal 2>&1 | tail -1)
  case "$3" in
  *read) iops=$(echo "$line" | cut -d';' -f8) kib=$(echo "$line" | cut -d';' -f7) ;;
  *) iops=$(echo "$line" | cut -d';' -f49) kib=$(echo "$line" | cut -d';' -f48) ;;
  esac
  ok=$(echo "$iops" | grep -qE '^[0-9]+$' && echo true || echo false)
  echo "DMREMAP-RESULT {\"check\":\"perf:$1:${2##*/}\",\"ok\":$ok,\"detail\":{\"iops\":${iops:-0},\"kibPerSecond\":${kib:-0}}}"
}
for device in "$DISK_MAIN" "$NBD"; do
  fio_job randread4k "$device" randread 4k
  fio_job randwrite4k "$device" randwrite 4k
  fio_job read1m "$device" read 1M
  fio_job write1m "$device" write 1M
done
serve_stop
note end

#!/bin/bash
# Quick side-by-side fio runs against NBD servers that are already running:
# the development runs quoted in docs, comments and commit messages (the
# before/after figures of one change, each side served from its own commit).
# scripts/bench.sh is the full, repeatable suite; this is the quick look.
#
# Usage: bench/side_by_side.sh LABEL=URI [LABEL=URI...]
#   W   workloads, "rw bs depth [jobs]|..."  (default below)
#   RT  seconds per run (3)
# Prints per target and workload: read IOPS, write IOPS, MiB/s, fio errors.
# For 1 MiB blocks, IOPS equals MiB/s.
set -euo pipefail
out=$(mktemp)
trap 'rm -f "$out"' EXIT
W=${W:-"randread 4k 32|randwrite 4k 32|randread 4k 1|randwrite 4k 1|read 1m 8|write 1m 8"}
IFS='|' read -ra workloads <<< "$W"
for workload in "${workloads[@]}"; do
  read -r rw bs depth jobs <<< "$workload"
  for target in "$@"; do
    label=${target%%=*} uri=${target#*=}
    fio --name=t --rw="$rw" --bs="$bs" --iodepth="$depth" --numjobs="${jobs:-1}" \
      --group_reporting=1 --ioengine=nbd --uri="$uri" --size=1G --norandommap=1 \
      --time_based=1 --runtime="${RT:-3}" --randrepeat=0 --output-format=json \
      --output="$out" >/dev/null 2>&1 || true
    python3 - "$out" "$label" "$rw $bs qd$depth x${jobs:-1}" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
mib = (job["read"]["bw_bytes"] + job["write"]["bw_bytes"]) / 2**20
print("%-10s %-24s %9d %9d %8.0f %d" % (sys.argv[2], sys.argv[3],
      job["read"]["iops"], job["write"]["iops"], mib, job["error"]))
PY
  done
done

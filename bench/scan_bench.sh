#!/bin/bash
# The background scanner's cost (issue 15), side by side in one run:
# 1. foreground fio (nbd engine) against two setups served at once, one with
#    the scanner scanning all the time at its default rate cap
#    (--scan-interval 1s: a new pass starts a second after one ends; paused with
#    `scan stop` while the other target runs, as both share one disk) and one
#    with --no-scan; workloads 4K random read QD1 and QD32 and 1M sequential
#    read, each run on both targets back to back, order swapped every repetition;
#    the ratio scan/no-scan is taken per repetition (median, min, max);
# 2. the idle time of one full pass over the 1 GiB main disk (the scanner's
#    own pass times), against `dd iflag=direct bs=1M` of the same file, and
#    that dd against a second dd (A/A: the machine's noise).
# The main disks are 1 GiB files of random data (not sparse: a hole reads
# without disk I/O).
#
# Usage: bench/scan_bench.sh [OUT.json]   (REPS=3, RT=10 seconds per fio run)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deno="$root/node_modules/.bin/deno"
out=${1:-$root/bench/results/$(date -u +%Y-%m-%dT%H%M)-scan.json}
reps=${REPS:-3} rt=${RT:-10}
dir=$(mktemp -d /var/tmp/dm-remap-scan-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
export DM_REMAP_STATE_DIR=$dir/state DM_REMAP_RUN_DIR=$dir/run
dm() { "$deno" run -A "$root/main.ts" "$@"; }

for name in scan noscan; do
  head -c 1G /dev/urandom >"$dir/$name-main.img"
  truncate -s 64M "$dir/$name-spare.img"
  dm create "$name" --main "$dir/$name-main.img" --spare "$dir/$name-spare.img" \
    --backup-dir "$dir/backup" >/dev/null
done
serve() { # name, flags...
  local name=$1
  shift
  # Not through dm(): the pid must be the server's own, for kill.
  "$deno" run -A "$root/main.ts" serve "$name" --spare "$dir/$name-spare.img" --socket "$dir/$name.nbd.sock" \
    --api-socket "$dir/$name.api.sock" --events-db "$dir/$name.events.sqlite" \
    --backup-dir "$dir/backup" "$@" >"$dir/$name.log" 2>&1 &
  pids+=($!)
  until grep -q "serving" "$dir/$name.log"; do sleep 0.2; done
}
status() { dm scan "$1" status --json --api-socket "$dir/$1.api.sock"; }

# 2 first, on an idle machine: one full pass at the default settings, then dd. The
# schedule's first pass is due a day after create: this one is started by hand.
serve scan
dm scan scan start --api-socket "$dir/scan.api.sock" >/dev/null
until [ "$(status scan | python3 -c 'import json,sys; print(json.load(sys.stdin)["passesCompleted"])')" -ge 1 ]; do
  sleep 0.5
done
pass_s=$(status scan | python3 -c 'import json,sys; s=json.load(sys.stdin); print((s["lastPassCompletedMs"]-s["lastPassStartedMs"])/1000)')
# dd twice: the second is the A/A comparison (the same read again), the machine's noise.
dd_time() {
  local start
  start=$(date +%s.%N)
  dd if="$dir/scan-main.img" of=/dev/null bs=1M iflag=direct status=none
  echo "$(date +%s.%N) - $start" | bc
}
dd_s=$(dd_time)
dd_again_s=$(dd_time)
kill "${pids[0]}"
wait "${pids[0]}" || true
pids=()

# 1: both served at once; the scanner restarts its pass every second while
# its target is measured, and is paused (scan stop) while the other one is.
serve scan --scan-interval 1s
serve noscan --no-scan
fio_run() { # uri rw bs depth -> IOPS
  fio --name=t --rw="$2" --bs="$3" --iodepth="$4" --ioengine=nbd --uri="$1" --size=1G \
    --norandommap=1 --time_based=1 --runtime="$rt" --randrepeat=0 --output-format=json \
    --output="$dir/fio.json" >"$dir/fio.log" 2>&1 || { cat "$dir/fio.log" "$dir"/*.log >&2; exit 1; }
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]; print(j["read"]["iops"] + j["write"]["iops"], j["error"])' "$dir/fio.json"
}
results=()
for workload in "randread 4k 1" "randread 4k 32" "read 1m 8"; do
  read -r rw bs depth <<<"$workload"
  for rep in $(seq 1 "$reps"); do
    order=(scan noscan)
    if ((rep % 2 == 0)); then order=(noscan scan); fi
    declare -A iops=()
    for target in "${order[@]}"; do
      # Both main disks share this machine's disk: the scanner runs only while
      # its own target is measured, so it never slows the other target's run.
      if [ "$target" = scan ]; then action=start; else action=stop; fi
      dm scan scan "$action" --api-socket "$dir/scan.api.sock" >/dev/null
      read -r value errors <<<"$(fio_run "nbd+unix:///$target?socket=$dir/$target.nbd.sock" "$rw" "$bs" "$depth")"
      [ "$errors" = 0 ] || { echo "fio reported errors against $target" >&2; exit 1; }
      iops[$target]=$value
    done
    results+=("$rw $bs qd$depth,$rep,${iops[scan]},${iops[noscan]}")
  done
done
scanned=$(status scan)
printf '%s\n' "${results[@]}" >"$dir/results.csv"
python3 - "$out" "$pass_s" "$dd_s" "$scanned" "$reps" "$rt" "$dir/results.csv" "$dd_again_s" <<'PY'
import json, statistics, subprocess, sys
out, pass_s, dd_s, scanned, reps, rt = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rows = {}
for line in open(sys.argv[7]).read().split("\n"):
    if not line: continue
    workload, rep, scan, noscan = line.split(",")
    rows.setdefault(workload, []).append({"rep": int(rep), "scanIops": float(scan), "noScanIops": float(noscan), "ratio": float(scan) / float(noscan)})
report = {
    "what": "fio IOPS with the scanner scanning continuously at its default rate cap / scanner off, served side by side; idle full pass of 1 GiB vs dd iflag=direct",
    "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "loadavg": open("/proc/loadavg").read().split()[:3],
    "repetitions": reps, "runtimeS": rt,
    "workloads": {w: {"ratioMedian": statistics.median(r["ratio"] for r in runs), "ratioMin": min(r["ratio"] for r in runs), "ratioMax": max(r["ratio"] for r in runs), "runs": runs} for w, runs in rows.items()},
    "idlePass": {"scannerPassS": pass_s, "ddDirectS": dd_s, "ratioDdOverScanner": dd_s / pass_s,
                 "ddDirectAgainS": float(sys.argv[8]), "ratioDdAA": dd_s / float(sys.argv[8])},
    "scannerDuringFio": {k: scanned[k] for k in ("passesCompleted", "bytesScanned", "yields", "chunkSectors", "rateBytesPerS", "relocations")},
}
json.dump(report, open(out, "w"), indent=2)
for w, v in report["workloads"].items():
    print(f"{w:20s} scan/no-scan median {v['ratioMedian']:.3f} (min {v['ratioMin']:.3f}, max {v['ratioMax']:.3f})")
print(f"idle pass of 1 GiB: scanner {pass_s:.1f} s, dd iflag=direct {dd_s:.1f} s (again {float(sys.argv[8]):.1f} s)")
print(out)
PY

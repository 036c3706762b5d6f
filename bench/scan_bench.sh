#!/bin/bash
# The background scanner's cost (issue 15), side by side in one run:
# 1. foreground fio (nbd engine) against one setup, with its scanner scanning
#    all the time at its default rate cap (--scan-interval 1s: a new pass starts
#    a second after one ends) and with it stopped (`scan stop`), in alternating
#    pairs of runs; workloads 4K random read QD1 and QD32 and 1M sequential read;
#    the ratio on/off per pair (median, min, max, and the ratio of the sums), the
#    bytes the scanner read during each "on" run, the server's CPU time per
#    request on/off (all its threads), and the A/A ratio of the "off" runs of
#    consecutive pairs; the scanner is switched through the API (curl), so no
#    CLI start-up, during which the idle scanner reads at its full cap, falls
#    inside a run;
# 2. the idle time of one full pass over the 1 GiB main disk (the scanner's
#    own pass times), against `dd iflag=direct bs=1M` of the same file, and
#    that dd against a second dd (A/A: the machine's noise).
# The main disk is a 1 GiB file of random data (not sparse: a hole reads
# without disk I/O).
#
# Usage: bench/scan_bench.sh [OUT.json]   (REPS=8 pairs, RT=10 seconds per fio run (at least 4),
#        WORKLOADS="randread 4k 1,randread 4k 32,read 1m 8": fio's rw, bs and iodepth)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deno="$root/node_modules/.bin/deno"
out=${1:-$root/bench/results/$(date -u +%Y-%m-%dT%H%M)-scan.json}
reps=${REPS:-8} rt=${RT:-10}
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

head -c 1G /dev/urandom >"$dir/scan-main.img"
truncate -s 64M "$dir/scan-spare.img"
dm create scan --main "$dir/scan-main.img" --spare "$dir/scan-spare.img" --backup-dir "$dir/backup" >/dev/null
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

# 1: one setup, served with --scan-interval 1s (a new pass starts a second after one
# ends), its scanner switched on (`scan start`) and off (`scan stop`) between fio runs of the
# same workload on the same target: on/off pairs, in the order on-off, off-on, on-off, ...,
# so a drift of the machine cancels. Each pair gives a ratio on/off; the off runs of
# consecutive pairs give the A/A ratio (the same thing measured twice: the machine's noise).
serve scan --scan-interval 1s
fio_run() { # uri rw bs depth -> IOPS errors
  fio --name=t --rw="$2" --bs="$3" --iodepth="$4" --ioengine=nbd --uri="$1" --size=1G \
    --norandommap=1 --time_based=1 --runtime="$rt" --randrepeat=0 --output-format=json \
    --output="$dir/fio.json" >"$dir/fio.log" 2>&1 || { cat "$dir/fio.log" "$dir"/*.log >&2; exit 1; }
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]; print(j["read"]["iops"] + j["write"]["iops"], j["error"])' "$dir/fio.json"
}
# Straight from the API (curl, milliseconds), not through the CLI: while a CLI process starts
# (a second here) the scanner, idle between fio runs, reads at its full cap.
scanned_bytes() {
  curl -s --unix-socket "$dir/scan.api.sock" http://localhost/api/v1/scan |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["bytesScanned"])'
}
server_pid=${pids[-1]}
# The server's CPU time (all its threads: main, workers), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
results=()
IFS=, read -r -a workloads <<<"${WORKLOADS:-randread 4k 1,randread 4k 32,read 1m 8}"
for workload in "${workloads[@]}"; do
  read -r rw bs depth <<<"$workload"
  # A first run of the workload, not counted: the pairs then start from the same state.
  fio_run "nbd+unix:///scan?socket=$dir/scan.nbd.sock" "$rw" "$bs" "$depth" >/dev/null
  for rep in $(seq 1 "$reps"); do
    order=(on off)
    if ((rep % 2 == 0)); then order=(off on); fi
    declare -A iops=() cpu=() steady=()
    for scanner in "${order[@]}"; do
      if [ "$scanner" = on ]; then action=start; else action=stop; fi
      curl -s -f -X POST --unix-socket "$dir/scan.api.sock" "http://localhost/api/v1/scan/$action" >/dev/null
      before=$(scanned_bytes)
      ticks_before=$(cpu_ticks)
      # The scanner's bytes over the middle of the run (from 2 s in to 1 s before its end):
      # fio's start and end, when the scanner sees an idle disk, stay outside.
      (
        sleep 2
        first=$(scanned_bytes)
        sleep $((rt - 3))
        echo $(($(scanned_bytes) - first)) >"$dir/steady.bytes"
      ) &
      sampler=$!
      read -r value errors <<<"$(fio_run "nbd+unix:///scan?socket=$dir/scan.nbd.sock" "$rw" "$bs" "$depth")"
      cpu[$scanner]=$(($(cpu_ticks) - ticks_before))
      wait "$sampler"
      steady[$scanner]=$(cat "$dir/steady.bytes")
      [ "$errors" = 0 ] || { echo "fio reported errors (scanner $scanner)" >&2; exit 1; }
      iops[$scanner]=$value
      if [ "$scanner" = on ]; then scanned_during=$(($(scanned_bytes) - before)); fi
    done
    results+=("$rw $bs qd$depth,$rep,${iops[on]},${iops[off]},$scanned_during,${cpu[on]},${cpu[off]},${steady[on]}")
  done
done
scanned=$(status scan)
printf '%s\n' "${results[@]}" >"$dir/results.csv"
python3 - "$out" "$pass_s" "$dd_s" "$scanned" "$reps" "$rt" "$dir/results.csv" "$dd_again_s" <<'PY'
import json, os, statistics, subprocess, sys
out, pass_s, dd_s, scanned, reps, rt = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rows = {}
tick_s = 1 / os.sysconf("SC_CLK_TCK")
for line in open(sys.argv[7]).read().split("\n"):
    if not line: continue
    workload, rep, on, off, scanned_during, cpu_on, cpu_off, steady_on = line.split(",")
    rows.setdefault(workload, []).append({"pair": int(rep), "scanOnIops": float(on), "scanOffIops": float(off), "ratio": float(on) / float(off), "bytesScannedDuringOn": int(scanned_during),
                                          "serverCpuOnS": int(cpu_on) * tick_s, "serverCpuOffS": int(cpu_off) * tick_s,
                                          "scanBytesPerSMidRun": int(steady_on) / (rt - 3)})
def summary(runs):
    ratios = [r["ratio"] for r in runs]
    offs = [r["scanOffIops"] for r in runs]
    aa = [b / a for a, b in zip(offs, offs[1:])]
    return {"ratioMedian": statistics.median(ratios), "ratioMin": min(ratios), "ratioMax": max(ratios),
            "ratioOfSums": sum(r["scanOnIops"] for r in runs) / sum(offs),
            # The server's CPU per request, scanner on / off: what the scanner costs the CPUs.
            "cpuPerRequestRatioOfSums": (sum(r["serverCpuOnS"] for r in runs) / sum(r["scanOnIops"] for r in runs)) /
                                        (sum(r["serverCpuOffS"] for r in runs) / sum(offs)),
            "bytesScannedDuringOnMedian": statistics.median(r["bytesScannedDuringOn"] for r in runs),
            "scanBytesPerSMidRunMedian": statistics.median(r["scanBytesPerSMidRun"] for r in runs),
            "aaRatioMedian": statistics.median(aa) if aa else None, "aaRatioMin": min(aa) if aa else None, "aaRatioMax": max(aa) if aa else None,
            "runs": runs}
report = {
    "what": "fio IOPS with the scanner scanning continuously at its default rate cap / scanner stopped, on one setup in alternating pairs; idle full pass of 1 GiB vs dd iflag=direct",
    "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "loadavg": open("/proc/loadavg").read().split()[:3],
    "repetitions": reps, "runtimeS": rt,
    "workloads": {w: summary(runs) for w, runs in rows.items()},
    "idlePass": {"scannerPassS": pass_s, "ddDirectS": dd_s, "ratioDdOverScanner": dd_s / pass_s,
                 "ddDirectAgainS": float(sys.argv[8]), "ratioDdAA": dd_s / float(sys.argv[8])},
    "scannerDuringFio": {k: scanned[k] for k in ("passesCompleted", "bytesScanned", "yields", "chunkSectors", "rateBytesPerS", "relocations")},
}
json.dump(report, open(out, "w"), indent=2)
for w, v in report["workloads"].items():
    print(f"{w:20s} on/off median {v['ratioMedian']:.3f} (min {v['ratioMin']:.3f}, max {v['ratioMax']:.3f}), sums {v['ratioOfSums']:.3f}; A/A median {v['aaRatioMedian']:.3f} (min {v['aaRatioMin']:.3f}, max {v['aaRatioMax']:.3f}); server CPU per request on/off {v['cpuPerRequestRatioOfSums']:.3f}; scanned during a run, median {v['bytesScannedDuringOnMedian'] / 2**20:.1f} MiB, mid-run {v['scanBytesPerSMidRunMedian'] / 2**20:.2f} MiB/s")
print(f"idle pass of 1 GiB: scanner {pass_s:.1f} s, dd iflag=direct {dd_s:.1f} s (again {float(sys.argv[8]):.1f} s)")
print(out)
PY

#!/bin/bash
# The background scanner's cost (issue 15), side by side in one run:
# 1. foreground fio (nbd engine) against one setup, one long run per workload
#    (4K random read QD1 and QD32, 1M sequential read QD8), while the scanner is
#    switched on (`scan start`, scanning all the time at its default rate cap)
#    and off (`scan stop`) through the API (curl) every segment, in pairs
#    on-off, off-on, ...; from the server's /metrics at the start and end of
#    each segment: the requests answered (IOPS), the scanner's bytes, and the
#    server's CPU time (all its threads). Reported: the ratio on/off of the
#    sums with a 95 % bootstrap interval over the pairs, the median, min and
#    max of the pairs, the A/A ratio of the neighbouring segments of two pairs
#    (same state: the machine's noise), the server's CPU per request on/off,
#    and the scanner's rate on and off;
# 2. the idle time of one full pass over the 1 GiB main disk (the scanner's
#    own pass times), against `dd iflag=direct bs=1M` of the same file, and
#    that dd against a second dd (A/A: the machine's noise).
# The main disk is a 1 GiB file of random data (not sparse: a hole reads
# without disk I/O), in BENCH_DIR (default /var/tmp).
#
# Usage: bench/scan_bench.sh [OUT.json]   (PAIRS=60 per workload, SEGMENT=1 s counted
#        after SETTLE=0.25 s, WARMUP=5 s of each fio run not counted,
#        WORKLOADS="randread 4k 1,randread 4k 32,read 1m 8": fio's rw, bs and iodepth)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deno="$root/node_modules/.bin/deno"
out=${1:-$root/bench/results/$(date -u +%Y-%m-%dT%H%M)-scan.json}
pairs=${PAIRS:-60} segment=${SEGMENT:-1} settle=${SETTLE:-0.25} warmup=${WARMUP:-5}
dir=$(mktemp -d "${BENCH_DIR:-/var/tmp}/dm-remap-scan-bench.XXXXXX")
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
# ends). One long fio run per workload; while it runs, the scanner is switched on (`scan
# start`) and off (`scan stop`) every segment, in the order on off off on on off off on ...
# (pairs on-off, off-on, ...: a drift of the machine within a pair cancels, and between
# pairs it moves both sides alike). Each segment waits SETTLE seconds after the switch, then
# counts the requests the server answered (its own counters, from /metrics) over SEGMENT
# seconds, with the server's CPU time and the scanner's bytes. Short segments inside one run
# keep the on and off sides seconds apart; separate fio runs drifted by more than the effect.
serve scan --scan-interval 1s
api() { curl -s -f --unix-socket "$dir/scan.api.sock" "http://localhost$1" "${@:2}"; }
server_pid=${pids[-1]}
# One sample, from one read of /metrics: requests answered so far, the server's CPU time
# (all its threads: main, workers; clock ticks), the scanner's bytes so far, and the time
# (monotonic) it was taken at.
sample() {
  local time counters requests scanned
  time=$(awk '{print $1}' /proc/uptime)
  counters=$(api /metrics | awk '/^dm_remap_(reads|writes)_total/ {n += $2}
    /^dm_remap_scan_read_bytes_total/ {b = $2} END {print n, b}')
  read -r requests scanned <<<"$counters"
  echo "$requests $(awk '{print $14 + $15}' "/proc/$server_pid/stat") $scanned $time"
}
segments=()
IFS=, read -r -a workloads <<<"${WORKLOADS:-randread 4k 1,randread 4k 32,read 1m 8}"
for workload in "${workloads[@]}"; do
  read -r rw bs depth <<<"$workload"
  api /api/v1/scan/stop -X POST >/dev/null
  # Runs until it is interrupted after the last segment; its first WARMUP seconds are not counted.
  fio --name=t --rw="$rw" --bs="$bs" --iodepth="$depth" --ioengine=nbd \
    --uri="nbd+unix:///scan?socket=$dir/scan.nbd.sock" --size=1G --norandommap=1 --time_based=1 \
    --runtime=100000 --randrepeat=0 --output-format=json --output="$dir/fio.json" >"$dir/fio.log" 2>&1 &
  fio_pid=$!
  sleep "$warmup"
  for pair in $(seq 1 "$pairs"); do
    order=(on off)
    if ((pair % 2 == 0)); then order=(off on); fi
    for scanner in "${order[@]}"; do
      if [ "$scanner" = on ]; then action=start; else action=stop; fi
      api "/api/v1/scan/$action" -X POST >/dev/null
      sleep "$settle"
      before=$(sample)
      sleep "$segment"
      segments+=("$rw $bs qd$depth,$pair,$scanner,$before,$(sample)")
    done
  done
  # fio may end with status 1 when interrupted; its report says whether a request failed.
  kill -INT "$fio_pid"
  wait "$fio_pid" || true
  # (The report may follow a line about the signal.)
  errors=$(python3 -c 'import json,sys; t=open(sys.argv[1]).read(); print(json.loads(t[t.index("{"):])["jobs"][0]["error"])' "$dir/fio.json" ||
    cat "$dir/fio.log" "$dir"/*.log >&2)
  [ "$errors" = 0 ] || { echo "fio reported errors: $errors" >&2; exit 1; }
done
printf '%s\n' "${segments[@]}" >"$dir/segments.csv"
python3 - "$out" "$pass_s" "$dd_s" "$dd_again_s" "$dir/segments.csv" "$pairs" "$segment" "$settle" <<'PY'
import json, os, random, statistics, subprocess, sys
out, pass_s, dd_s, dd_again_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
pairs, segment_s, settle_s = int(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
tick_s = 1 / os.sysconf("SC_CLK_TCK")
segments = {}
for line in open(sys.argv[5]).read().split("\n"):
    if not line: continue
    workload, pair, scanner, before, after = line.split(",")
    r0, c0, b0, t0 = map(float, before.split())
    r1, c1, b1, t1 = map(float, after.split())
    segments.setdefault(workload, []).append({"pair": int(pair), "scanner": scanner, "seconds": t1 - t0, "iops": (r1 - r0) / (t1 - t0),
                                             "serverCpuS": (c1 - c0) * tick_s, "requests": r1 - r0, "scanBytesPerS": (b1 - b0) / (t1 - t0)})
def bootstrap(pairs_, statistic, rounds=10000):
    # 95 % interval of a statistic of the pairs, resampled with replacement (seeded: the same data gives the same interval).
    rng = random.Random(15)
    values = sorted(statistic([rng.choice(pairs_) for _ in pairs_]) for _ in range(rounds))
    return [values[int(rounds * 0.025)], values[int(rounds * 0.975)]]
def ratio_of_sums(pairs_):
    return sum(on["iops"] for on, off in pairs_) / sum(off["iops"] for on, off in pairs_)
def summary(runs):
    on = {s["pair"]: s for s in runs if s["scanner"] == "on"}
    off = {s["pair"]: s for s in runs if s["scanner"] == "off"}
    pairs_ = [(on[p], off[p]) for p in sorted(on)]
    ratios = [a["iops"] / b["iops"] for a, b in pairs_]
    # A/A: the segments either side of a boundary between pairs run with the scanner in the same state (off|off, on|on),
    # as far apart as the two sides of a pair: their ratio is what this machine's noise alone gives.
    aa_pairs = [(b, a) for a, b in zip(runs, runs[1:]) if a["pair"] != b["pair"]]
    aa = [b["iops"] / a["iops"] for b, a in aa_pairs]
    return {"pairs": len(pairs_), "ratioOfSums": ratio_of_sums(pairs_), "ratioOfSums95": bootstrap(pairs_, ratio_of_sums),
            "ratioMedian": statistics.median(ratios), "ratioMin": min(ratios), "ratioMax": max(ratios),
            "aaRatioOfSums": ratio_of_sums(aa_pairs), "aaRatioOfSums95": bootstrap(aa_pairs, ratio_of_sums),
            "aaRatioMedian": statistics.median(aa), "aaRatioMin": min(aa), "aaRatioMax": max(aa),
            # The server's CPU per request, scanner on / off: what the scanner costs the CPUs.
            "cpuPerRequestOnOverOff": (sum(a["serverCpuS"] for a, b in pairs_) / sum(a["requests"] for a, b in pairs_)) /
                                      (sum(b["serverCpuS"] for a, b in pairs_) / sum(b["requests"] for a, b in pairs_)),
            "scanBytesPerSOnMedian": statistics.median(a["scanBytesPerS"] for a, b in pairs_),
            "scanBytesPerSOffMax": max(b["scanBytesPerS"] for a, b in pairs_),
            "segments": runs}
report = {
    "what": "fio IOPS with the scanner at its default rate cap / scanner stopped, in alternating segments of one fio run per workload (server's request counters); idle full pass of 1 GiB vs dd iflag=direct",
    "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "loadavg": open("/proc/loadavg").read().split()[:3],
    "pairsPerWorkload": pairs, "segmentS": segment_s, "settleS": settle_s,
    "workloads": {w: summary(runs) for w, runs in segments.items()},
    "idlePass": {"scannerPassS": pass_s, "ddDirectS": dd_s, "ratioDdOverScanner": dd_s / pass_s,
                 "ddDirectAgainS": dd_again_s, "ratioDdAA": dd_s / dd_again_s},
}
json.dump(report, open(out, "w"), indent=2)
for w, v in report["workloads"].items():
    low, high = v["ratioOfSums95"]
    print(f"{w:14s} on/off sums {v['ratioOfSums']:.3f} (95 % {low:.3f}-{high:.3f}), median {v['ratioMedian']:.3f} (min {v['ratioMin']:.3f}, max {v['ratioMax']:.3f}); "
          f"A/A sums {v['aaRatioOfSums']:.3f} (95 % {v['aaRatioOfSums95'][0]:.3f}-{v['aaRatioOfSums95'][1]:.3f}), median {v['aaRatioMedian']:.3f} (min {v['aaRatioMin']:.3f}, max {v['aaRatioMax']:.3f}); server CPU per request on/off {v['cpuPerRequestOnOverOff']:.3f}; "
          f"scanner {v['scanBytesPerSOnMedian'] / 2**20:.2f} MiB/s on, at most {v['scanBytesPerSOffMax'] / 2**20:.2f} MiB/s off")
print(f"idle pass of 1 GiB: scanner {pass_s:.1f} s, dd iflag=direct {dd_s:.1f} s (again {dd_again_s:.1f} s)")
print(out)
PY

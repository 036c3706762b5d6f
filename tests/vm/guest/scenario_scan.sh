# Scenario 14: the scanner under a mounted ext4. Two files' blocks on the main disk are put
# behind dm-delay (every read takes 1 s: slow against the disk's baseline) and dm-flakey
# (up 1 s, down 1 s: reads fail while down); the scan passes relocate every one of those blocks
# (slow ones after confirming reads, flaky ones once a pending block reads again); then both
# regions are replaced by dm-error and the filesystem sees no error: every file verifies after
# drop_caches, the kernel logs no I/O error on nbd0, e2fsck is clean.
note start
setup_serve_attach --fresh || return 1
check mkfs mkfs.ext4 -q -F -E nodiscard "$NBD"
# commit=600: no journal commit every 5 s, so the scanner's reads stay quiet (its latency is
# judged only when no client request runs meanwhile).
check mount mount -t ext4 -o noatime,commit=600 "$NBD" "$MNT"
check write_base write_tree "$MNT/base" 16
check write_slow deno run -A /guest/scan_blocks.ts write "$MNT/slowfile" slow 16
check write_flaky deno run -A /guest/scan_blocks.ts write "$MNT/flakyfile" flaky 16
(cd "$MNT" && sha256sum slowfile flakyfile) >>/tmp/sums
check sync sync
drop_caches
slow=$(deno run -A /guest/scan_blocks.ts locate "$MAIN" slow 16)
result locate_slow "$([ -n "$slow" ] && echo true || echo false)" "$slow"
flaky=$(deno run -A /guest/scan_blocks.ts locate "$MAIN" flaky 16)
result locate_flaky "$([ -n "$flaky" ] && echo true || echo false)" "$flaky"
[ -n "$slow" ] && [ -n "$flaky" ] || return 1

# scan_passes: the passes completed so far.
scan_passes() { dmremap scan "$SETUP" status --api-socket "$API_SOCKET" --json | json_number passesCompleted; }
# A first pass over the healthy disk (the schedule's first is due a day after create): it learns
# the baseline.
dmremap scan "$SETUP" start --api-socket "$API_SOCKET" >/dev/null 2>&1
waited=$(date +%s)
until [ "$(scan_passes)" -ge 1 ] 2>/dev/null || [ $(($(date +%s) - waited)) -ge 180 ]; do
  sleep 2
done
result first_pass "$([ "$(scan_passes)" -ge 1 ] 2>/dev/null && echo true || echo false)" \
  "$(dmremap scan "$SETUP" status --api-socket "$API_SOCKET" 2>&1; tail -c 1500 /tmp/serve.log)"

# main_table_faulty: linear over $DISK_MAIN, the slow range behind dm-delay, the flaky one
# behind dm-flakey (ranges START:COUNT in sectors, the slow one first on the disk or not).
main_table_faulty() {
  total=$(blockdev --getsz "$DISK_MAIN")
  printf '%s slow\n%s flaky\n' "$slow" "$flaky" | sort -t: -n -k1 | {
    at=0
    while read -r range kind; do
      start=${range%:*}
      count=${range#*:}
      [ "$start" -gt "$at" ] && echo "$at $((start - at)) linear $DISK_MAIN $at"
      if [ "$kind" = slow ]; then echo "$start $count delay $DISK_MAIN $start 1000"; else
        echo "$start $count flakey $DISK_MAIN $start 1 1"
      fi
      at=$((start + count))
    done
    [ "$total" -gt "$at" ] && echo "$at $((total - at)) linear $DISK_MAIN $at"
  }
}
main_table_faulty >/tmp/table_faulty
check set_faulty sh -c "dmsetup suspend main && dmsetup reload main /tmp/table_faulty && dmsetup resume main && dmsetup table main"

# remapped_in RANGE...: how many blocks of those sector ranges (START:COUNT) the spare's log
# holds as remapped (`dm-remap remaps`, read-only, after drop_caches so nothing stale is read).
remapped_in() {
  drop_caches
  dmremap remaps --spare "$DISK_SPARE" --json 2>/dev/null | grep -o '"blockIndex":[0-9]*' | grep -o '[0-9]*$' |
    awk -v ranges="$*" '
      BEGIN { n = split(ranges, r, " "); for (i = 1; i <= n; i++) { split(r[i], p, ":"); first[i] = p[1] / 8; end[i] = (p[1] + p[2]) / 8 } }
      { for (i = 1; i <= n; i++) if ($1 >= first[i] && $1 < end[i]) c++ }
      END { print c + 0 }'
}
# status_pending_count: pending blocks as the status API says (retried: a busy guest may be slow to answer).
status_pending_count() {
  for attempt in 1 2 3 4 5; do
    out=$(status_json 2>/dev/null) && { echo "$out" | tr -d ' \n' | grep -o '"pendingBlocks":\[[0-9,]*\]' | tr -cd ',0-9' | { cat; echo; } | awk -F, 'NR == 1 { print ($0 == "" ? 0 : NF) }'; return 0; }
    sleep 2
  done
  echo unknown
}

# Passes until all 32 blocks are on the spare and nothing is pending (each pass: `scan start`,
# then wait for its end), for up to 12 minutes. A flaky block moves only when its recheck and
# the relocation's reads all fall in one of dm-flakey's 1 s up windows, which a loaded TCG guest
# makes rarer: one CI-like run still had 14 pending after 8 passes in 8 minutes.
passes=0
started=$(date +%s)
while { [ "$(remapped_in "$slow" "$flaky")" -lt 32 ] || [ "$(status_pending_count)" != 0 ]; } &&
  [ $(($(date +%s) - started)) -lt 720 ]; do
  before=$(scan_passes)
  dmremap scan "$SETUP" start --api-socket "$API_SOCKET" >/dev/null 2>&1
  until [ "$(scan_passes)" -gt "${before:-0}" ] 2>/dev/null || [ $(($(date +%s) - started)) -ge 720 ]; do
    sleep 2
  done
  passes=$((passes + 1))
  note "pass $passes: $(remapped_in "$slow" "$flaky") of 32 blocks remapped, $(status_pending_count) pending"
done
inside=$(remapped_in "$slow" "$flaky")
pending=$(status_pending_count)
result relocated "$([ "$inside" -eq 32 ] && [ "$pending" = 0 ] && echo true || echo false)" \
  "$inside of 32 blocks remapped, $pending pending, after $passes passes: $(dmremap health "$SETUP" --api-socket "$API_SOCKET" 2>&1 | head -30)"
observe health_json "$(dmremap health "$SETUP" --api-socket "$API_SOCKET" --json 2>&1 | tr -d ' \n' | head -c 1200)"

# Both regions die for good.
check set_dead main_set_bad $(printf "%s\n%s\n" "$slow" "$flaky" | sort -t: -n -k1)
drop_caches
check verify_files verify_sums /tmp/sums
check umount umount "$MNT"
check e2fsck e2fsck -fn "$NBD"
check_no_nbd_errors dmesg_clean
serve_stop
note end

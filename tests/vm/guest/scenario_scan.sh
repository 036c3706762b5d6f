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
# The pass serve started on its own ends first: the regions change under a known pass.
tries=0
until [ "$(scan_passes)" -ge 1 ] 2>/dev/null || [ $tries -ge 120 ]; do
  sleep 1
  tries=$((tries + 1))
done
result first_pass "$([ "$(scan_passes)" -ge 1 ] && echo true || echo false)" \
  "$(dmremap scan "$SETUP" status --api-socket "$API_SOCKET")"

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

# Passes until all 32 blocks are on the spare (each pass: `scan start`, wait for its end).
status_remaps() { status_json | json_number remaps; }
passes=0
started=$(date +%s)
while [ "$(status_remaps)" -lt 32 ] 2>/dev/null && [ $(($(date +%s) - started)) -lt 420 ]; do
  before=$(scan_passes)
  dmremap scan "$SETUP" start --api-socket "$API_SOCKET" >/dev/null
  until [ "$(scan_passes)" -gt "$before" ] 2>/dev/null || [ $(($(date +%s) - started)) -ge 420 ]; do
    sleep 1
  done
  passes=$((passes + 1))
  note "pass $passes: $(status_remaps) remaps"
done
status=$(status_json)
remaps=$(echo "$status" | json_number remaps)
result relocated "$([ "$remaps" -eq 32 ] && echo "$status" | tr -d ' \n' | grep -q '"pendingBlocks":\[\]' && echo true || echo false)" \
  "$remaps remaps after $passes passes: $(dmremap health "$SETUP" --api-socket "$API_SOCKET" 2>&1 | head -30)"
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

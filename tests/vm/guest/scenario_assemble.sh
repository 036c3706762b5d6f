# Scenario "assemble": setups found and started from the disks alone. Besides the main disk
# and the spare, the guest has "clone" (as large as the spare) and "other" (as large as the
# main disk, with a serial of its own). Refused, with their reasons and nothing written: the
# setup while "clone" carries a dd copy of its spare, and while "other" stands where the main
# disk is missing. Then two `assemble --scan` at once start one serve, which attaches
# /dev/nbd0 with 2 connections (NBD: the kernel has no ublk_drv); after serve is killed, `assemble --scan` starts it again and
# it takes the device back under a mounted filesystem.
note start
CLONE=$(disk_by_serial clone)
OTHER=$(disk_by_serial other)
LOG=/run/dm-remap/$SETUP.log
SERVES="dm-remap.js serve $SETUP"
# serve is killed on purpose: requests in flight on its sockets are sent again after the
# kernel's timeout (see scenario_attach.sh).
IO_WATCH_REQUEUE_EXPECTED=true
# serve attaches /dev/nbd0 itself with 2 connections, which the kernel may not both read (io_watch).
echo 2 >/tmp/io_watch.connections

# assemble ARGS...: dm-remap assemble with a probe deadline for emulation: under TCG on a busy
# host a probe's reads take far longer than the default 2 s allows real disks, and a probe worker
# of two assembles at once took longer than 15 s to start while two other VMs ran (as the
# initramfs, 30 s).
assemble() { dmremap assemble --timeout-ms 30000 "$@"; }

# sums: SHA-256 of every disk the scenario does not write itself.
sums() { sha256sum "$DISK_MAIN" "$DISK_SPARE" "$CLONE" "$OTHER"; }

# decision ACTION: ok when `assemble --scan --dry-run --json` gives the setup ACTION; prints
# the decision's action, state and reasons.
decision() {
  assemble --scan --dry-run --json >/tmp/decision.json 2>/tmp/decision.err
  echo "assemble exit $?: $(tail -c 300 /tmp/decision.err)"
  flat=$(tr -d '\n' </tmp/decision.json)
  echo "$flat" | grep -o '"\(action\|state\)": *"[a-z-]*"' | head -2
  echo "$flat" | grep -o '"reasons": *\[[^]]*\]' | head -1
  echo "$flat" | grep -q "\"action\": *\"$1\"" || { head -c 3000 /tmp/decision.json; return 1; }
}

# unchanged BEFORE: ok when the disks' SHA-256 are still BEFORE.
unchanged() { [ "$(sums)" = "$1" ]; }

# serve_pids: the processes serving the setup (busybox here has no pgrep).
serve_pids() {
  for process in /proc/[0-9]*; do
    tr '\0' ' ' <"$process/cmdline" 2>/dev/null | grep -q "$SERVES" && echo "${process#/proc/}"
  done
}

# serves: how many processes serve the setup.
serves() { serve_pids | wc -l; }

check dm_main sh -c "$(declare_functions) main_table | dmsetup create main" || return 1
check create dmremap create "$SETUP" --main "$MAIN" --spare "$DISK_SPARE" || return 1

dd if="$DISK_SPARE" of="$CLONE" bs=1M 2>/dev/null
sync
before=$(sums)
check refuse_dd_clone decision refuse
check clone_untouched unchanged "$before"
# The test's own write, not dm-remap's: the clone stops being a copy of the spare.
dd if=/dev/zero of="$CLONE" bs=1M count=8 conv=fsync 2>/dev/null

dmsetup remove main
before=$(sums)
refuse_other_identity() { decision refuse && grep -q '"state": *"main-mismatch"' /tmp/decision.json; }
check refuse_other_identity refuse_other_identity
check other_untouched unchanged "$before"
check dm_main_again sh -c "$(declare_functions) main_table | dmsetup create main" || return 1

dry_run_starts_nothing() { decision start && [ "$(serves)" -eq 0 ]; }
check dry_run_starts_nothing dry_run_starts_nothing
assemble --scan >/tmp/assemble1.log 2>&1 &
first=$!
assemble --scan >/tmp/assemble2.log 2>&1 &
second=$!
wait $first
wait $second
waited=0
until grep -q "KERNEL  /dev/nbd0" "$LOG" 2>/dev/null || [ $waited -gt 900 ]; do
  sleep 0.1
  waited=$((waited + 1))
done
started_once() { cat /tmp/assemble1.log /tmp/assemble2.log; [ "$(serves)" -eq 1 ]; }
check two_assembles_start_once started_once
# This 6.1 kernel has no ublk_drv (no /dev/ublk-control, no modules under /lib/modules): the
# assemble that started the serve chose NBD (export auto) and said why.
check assemble_chose_nbd grep -h "kernel device: auto: NBD, as /dev/ublk-control is missing" /tmp/assemble1.log /tmp/assemble2.log
check nbd_attach sh -c "cat $LOG; grep -q 'attached with 2 connections' $LOG && test \$(cat /sys/block/nbd0/size) -gt 0"
discover_device() { dmremap discover --timeout-ms 15000 | grep "kernel device: /dev/nbd0"; }
check discover_device discover_device
already_running() {
  assemble --scan --json >/tmp/again.json 2>&1
  tr -d '\n' </tmp/again.json | grep -o '"action": *"already-running"' || { cat /tmp/again.json; return 1; }
}
check already_running already_running

# From here on the kernel log must show no failed I/O. Before it, an attach the kernel did not
# read every connection of is disconnected ("shutting down sockets") and made again.
mark filesystem
check mkfs mkfs.ext4 -q -F -E nodiscard "$NBD" || return 1
check mount mount -t ext4 "$NBD" "$MNT" || return 1
check write_before_kill write_tree "$MNT/t" 20
io_watch_pause
kill -KILL $(serve_pids)
sleep 1
: >"$LOG"
no_serve() { [ "$(serves)" -eq 0 ]; }
check killed no_serve
check assemble_restarts assemble --scan
waited=0
until grep -q "taken back with" "$LOG" 2>/dev/null || [ $waited -gt 900 ]; do
  sleep 0.1
  waited=$((waited + 1))
done
check taken_back sh -c "cat $LOG; grep -q 'taken back with 2 connections' $LOG"
check write_after_restart write_tree "$MNT/u" 20
# held_requests_answered: the requests in flight when serve was killed are sent again on the
# new connections only after the kernel's request timeout (30 s), so the watch stays paused
# until every dirty page is written (sync) and nothing is left in flight.
held_requests_answered() {
  sync
  waited=0
  until [ "$(awk '{ print $1 + $2 }' /sys/block/nbd0/inflight)" -eq 0 ]; do
    [ $waited -ge 180 ] && { echo "still in flight after 90 s: $(cat /sys/block/nbd0/inflight)"; return 1; }
    sleep 0.5
    waited=$((waited + 1))
  done
}
check held_requests_answered held_requests_answered
io_watch_resume
check umount umount "$MNT"
drop_caches
check mount_verify mount -t ext4 -o ro "$NBD" "$MNT"
check verify verify_sums /tmp/sums
umount "$MNT"
check e2fsck e2fsck -fn "$NBD"
failed=$(dmesg_since filesystem | grep -iE "I/O error|EXT4-fs (error|warning)|Aborting journal|shutting down sockets" || true)
if [ -z "$failed" ]; then result no_io_errors true ""; else result no_io_errors false "$failed"; fi
kill -TERM $(serve_pids)
note end

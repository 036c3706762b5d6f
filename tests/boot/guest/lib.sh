# Shared by the boot tests' checks (tests/boot/guest/check_*.sh), run in the booted Debian guest
# by dm-remap-boot-check.service (/bin/sh is dash). Results go to the serial console.
json_string() {
  printf '"%s"' "$(printf '%s' "$1" | tr '\n\t"\\' '   _' | tr -cd '[:print:]')"
}
result() {
  echo "DMREMAP-RESULT {\"check\":\"$1\",\"ok\":$2,\"detail\":$(json_string "$3")}"
}
check() { # check NAME COMMAND...: ok when the command succeeds; its output is the detail
  name=$1
  shift
  if out=$("$@" 2>&1); then result "$name" true "$out"; else result "$name" false "$out"; fi
}
dmr() { /usr/sbin/dm-remap "$@"; }
# The pid of the server of setup "root", from its runtime state.
server_pid() {
  sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' /run/dm-remap/setups/*.json 2>/dev/null | head -1
}
# The checks every boot of root on the remapped device makes.
root_checks() {
  check root_on_nbd sh -c 'src=$(findmnt -no SOURCE /); echo "$src"; [ "$src" = /dev/nbd0 ]'
  pid=$(server_pid)
  check server_is_root_daemon sh -c "head -c1 /proc/$pid/cmdline | grep -qx @ && tr '\\0' ' ' </proc/$pid/cmdline"
  check server_oom_score_adj sh -c "v=\$(cat /proc/$pid/oom_score_adj); echo \$v; [ \$v = -1000 ]"
  # What it did for itself at its start, as its log says (PR_SET_IO_FLUSHER cannot be read
  # from outside the process).
  check server_daemon_steps sh -c "l=\$(grep -h 'root storage daemon' /run/dm-remap/*.log | head -1); echo \"\$l\"; echo \"\$l\" | grep -qF '{\"ioFlusher\":\"ok\",\"oomScoreAdj\":\"ok\",\"mappedFilesLocked\":\"ok\"}'"
  # Its runtime's binary is locked in memory, all of it (mlock of every mapped file).
  check server_locked_memory sh -c "l=\$(awk '/^VmLck:/ {print \$2}' /proc/$pid/status); e=\$(stat -L -c %s /proc/$pid/exe); echo locked \$l KiB runtime \$e bytes; [ \$((l * 1024)) -ge \$e ]"
  check unit_active systemctl is-active dm-remap@root.service
  check unit_main_pid_is_server sh -c "m=\$(systemctl show -p MainPID --value dm-remap@root.service); echo main \$m server $pid; [ \"\$m\" = $pid ]"
  check no_initramfs_files_open sh -c "ls -l /proc/$pid/exe /proc/$pid/cwd /proc/$pid/root; ! ls -l /proc/$pid/fd | grep -v -e /dev/ -e /run/ -e socket: -e pipe: -e anon_inode: -e 'total ' | grep ' -> /'"
  result system_state true "$(systemctl is-system-running)"
  result boot_timeline true "$(systemd-analyze 2>&1 | head -1)"
  result observe:slowest_units true "$(systemd-analyze blame 2>&1 | head -8)"
  result observe:assemble_service true "$(journalctl -b -o short-monotonic -u dm-remap-assemble.service -u 'dm-remap-incremental@*' | tail -12)"
  # "Connection timed out, retrying (N/M alive)" is the kernel requeueing a request to another
  # connection (6.1 skips a connection now and then at attach, docs/vm.md): reported, not an
  # error. A request that fails shows as an I/O error.
  result observe:nbd_requeued true "$(dmesg | grep -E 'nbd.*timed out, retrying')"
  check no_nbd_errors sh -c "! dmesg | grep -v 'timed out, retrying' | grep -i -E 'nbd.*(error|timed out)|EXT4-fs error|I/O error'"
}
done_and_poweroff() {
  echo "DMREMAP-DONE"
  systemctl poweroff
}

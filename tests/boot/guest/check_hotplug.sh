# Hotplug: the host plugs in the spare of setup "data" (qemu monitor device_add) once it reads
# DMREMAP-HOTPLUG-NOW; udev's rule (probe --export, SYSTEMD_WANTS) and the incremental unit must
# start dm-remap@data.service, a Type=notify unit that becomes active with its STATUS= line.
# Then the unit under systemd itself (issue 14): `systemctl stop` detaches the device, a
# `systemctl start` of the stopped setup serves it again with a fresh server of the unit's own
# (not adopted), its data intact, and `dm-remap assemble data` starts the unit, not a child.
# The units' journal goes to the console meanwhile, so a slow or failed step shows where it stands.
journalctl -f -n 0 -o short-monotonic -u systemd-udevd.service -u 'dm-remap-incremental@*' \
  -u dm-remap@data.service >/dev/ttyS0 2>&1 &
journal=$!
unit=dm-remap@data.service
# What udev made of the root setup's spare at coldplug, and the probe run in a sandbox like
# systemd-udevd's, where the rule runs it.
result observe:coldplug_spare_properties true "$(udevadm info --query=property --name=/dev/disk/by-id/virtio-spare | grep DM_REMAP_)"
result observe:probe_in_udev_sandbox true "$(systemd-run --wait --pipe --quiet \
  -p MemoryDenyWriteExecute=yes -p 'SystemCallFilter=@system-service @module @raw-io bpf' \
  -p 'SystemCallFilter=~@clock' -p SystemCallErrorNumber=EPERM -p PrivateMounts=yes \
  -p 'RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6' -p LockPersonality=yes \
  -p IPAddressDeny=any /usr/sbin/dm-remap probe --export /dev/disk/by-id/virtio-spare 2>&1; echo "exit $?")"
udevadm control --log-level=debug
echo "DMREMAP-HOTPLUG-NOW"
# Waits up to $1 s for the unit to be active.
wait_active() {
  i=0
  while [ $i -lt "$1" ] && ! systemctl is-active -q $unit; do
    sleep 1
    i=$((i + 1))
  done
  echo "$i"
}
# The kernel device of setup "data", from its server's runtime state.
data_device() {
  grep -l '"name": "data"' /run/dm-remap/setups/*.json 2>/dev/null |
    xargs -r sed -n 's/.*"kernelDevice": *"\([^"]*\)".*/\1/p' | head -1
}
main_pid() { systemctl show -p MainPID --value $unit; }
# The device is attached: the kernel gives it a size.
attached() {
  [ -n "$1" ] || return 1
  size=$(cat "/sys/block/${1#/dev/}/size")
  echo "$1: $size sectors"
  [ "$size" -gt 0 ]
}
# The unit's main process is a fresh server in the unit's own cgroup (not a process adopted with
# MAINPID=), and its status says it serves the device.
fresh_server() {
  pid=$(main_pid)
  echo "main pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline"); $(cat "/proc/$pid/cgroup")"
  grep -q 'system-dm\\x2dremap.slice/dm-remap@data.service$' "/proc/$pid/cgroup" &&
    systemctl status --no-pager $unit | grep -E "Status: \"serving on $1, 0 remaps"
}
# The unit is stopped, the device detached (size 0) and the server's runtime state gone.
stopped_and_detached() {
  state=$(systemctl is-active $unit)
  size=$(cat "/sys/block/${1#/dev/}/size")
  echo "unit $state, $1: $size sectors"
  [ "$state" = inactive ] && [ "$size" = 0 ] && [ -z "$(data_device)" ]
}
# The first MiB of the device is what was written before the stop.
data_intact() {
  have=$(dd if="$1" bs=1M count=1 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
  echo "$have"
  [ "$have" = "$2" ]
}
different_pid() {
  echo "before $1, now $(main_pid)"
  [ "$(main_pid)" != "$1" ] && [ "$(main_pid)" != 0 ]
}

early=$(wait_active 40)
result observe:hotplug_device true "$(udevadm info --query=property --name=/dev/disk/by-id/virtio-data-spare | grep -E 'DM_REMAP|SYSTEMD|TAGS|DEVNAME'; systemctl show -p Id -p Wants -p ActiveState "$(systemd-escape --path --suffix=device "$(readlink -f /dev/disk/by-id/virtio-data-spare)")"; systemctl list-units --all --no-legend 'dm-remap*')"
result observe:hotplug_journal true "$(journalctl -b -o short-monotonic --no-pager | grep -v KillMode | grep -i -E 'vde|incremental|dm-remap@data|SYSTEMD_WANTS' | grep -v udev-worker | tail -25)"
result observe:warnings true "$(journalctl -b -p warning -o short-monotonic --no-pager | grep -v KillMode | tail -15)"
result hotplug_seconds true "$((early + $(wait_active 300)))"
check hotplug_spare_properties sh -c 'udevadm info --query=property --name=/dev/disk/by-id/virtio-data-spare | grep "^DM_REMAP_"'
check hotplug_unit_active systemctl is-active $unit
check hotplug_unit_status sh -c "systemctl status --no-pager $unit | grep -E 'Status: \"serving on /dev/nbd[0-9]+, 0 remaps'"
device=$(data_device)
check hotplug_device_attached attached "$device"
check hotplug_unit_fresh fresh_server "$device"
first=$(main_pid)
head -c 1048576 /dev/urandom >/run/data.bin
written=$(sha256sum </run/data.bin | cut -d' ' -f1)
dd if=/run/data.bin of="$device" bs=1M count=1 oflag=direct conv=fsync 2>/dev/null

systemctl stop $unit
check systemctl_stop_detaches stopped_and_detached "$device"
systemctl start $unit
device=$(data_device)
check systemctl_start_fresh different_pid "$first"
check systemctl_start_serves fresh_server "$device"
check data_survives_stop_start data_intact "$device" "$written"
systemctl stop $unit
check systemctl_stop_detaches_again stopped_and_detached "$device"

# Under systemd, assemble hands the setup to its unit.
result observe:assemble_data true "$(dmr assemble data --timeout-ms 30000 2>&1)"
check assemble_starts_unit systemctl is-active $unit
check assemble_unit_serves fresh_server "$(data_device)"
kill "$journal"

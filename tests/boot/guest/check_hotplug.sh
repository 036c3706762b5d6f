# Hotplug: the host plugs in the spare of setup "data" (qemu monitor device_add) once it reads
# DMREMAP-HOTPLUG-NOW; udev's rule (probe --export, SYSTEMD_WANTS) and the incremental unit must
# start dm-remap@data.service, a Type=notify unit that becomes active with its STATUS= line.
echo "DMREMAP-HOTPLUG-NOW"
i=0
while [ $i -lt 300 ] && ! systemctl is-active -q dm-remap@data.service; do
  sleep 1
  i=$((i + 1))
done
check hotplug_spare_properties sh -c 'udevadm info --query=property --name=/dev/disk/by-id/virtio-data-spare | grep "^DM_REMAP_"'
check hotplug_unit_active systemctl is-active dm-remap@data.service
check hotplug_unit_status sh -c 'systemctl status --no-pager dm-remap@data.service | grep -E "Status: \"serving on /dev/nbd[0-9]+, 0 remaps"'
check hotplug_device_attached sh -c 'grep -l "\"name\": \"data\"" /run/dm-remap/setups/*.json | xargs grep kernelDevice'
result hotplug_seconds true "$i"
result observe:hotplug_journal true "$(journalctl -b --no-pager -u 'dm-remap-incremental@*' -u dm-remap@data.service 2>&1 | tail -15)"

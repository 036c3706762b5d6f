/**
 * The block devices that may hold a setup's disks.
 *
 * Goal: whole disks, partitions, bound loop devices, dm and md devices are
 * listed; empty devices, unbound loop devices, RAM disks and the devices
 * setups export (nbd, ublk) are not. Method: a fake sysfs tree, one row per
 * kind of device.
 */

import assert from "node:assert/strict";
import { listBlockDevices } from "../../mod/device/block_devices.ts";

Deno.test("listBlockDevices() lists block devices from sysfs, without exports, RAM disks or empty ones", async () => {
  const sysfs = await Deno.makeTempDir({ prefix: "dm-remap-sysfs-" });
  const devices: Record<string, { size: string; backing?: string }> = {
    "dm-0": { size: "2048" },
    "loop0": { size: "0" },
    "loop1": { size: "2048", backing: "/srv/spare.img" },
    "loop2": { size: "2048" },
    "md0": { size: "2048" },
    "nbd0": { size: "2048" },
    "ram0": { size: "2048" },
    "sda": { size: "0" },
    "sdb": { size: "2048" },
    "sdb1": { size: "1024" },
    "ublkb0": { size: "2048" },
    "zram0": { size: "2048" },
  };
  try {
    for (const [name, device] of Object.entries(devices)) {
      await Deno.mkdir(`${sysfs}/class/block/${name}/loop`, { recursive: true });
      await Deno.writeTextFile(`${sysfs}/class/block/${name}/size`, `${device.size}\n`);
      if (device.backing) {
        await Deno.writeTextFile(`${sysfs}/class/block/${name}/loop/backing_file`, device.backing);
      }
    }
    assert.deepEqual(await listBlockDevices({ sysfsRoot: sysfs, devDirectory: "/dev" }), [
      "/dev/dm-0",
      "/dev/loop1",
      "/dev/md0",
      "/dev/sdb",
      "/dev/sdb1",
    ]);
    assert.deepEqual(await listBlockDevices({ sysfsRoot: `${sysfs}/none` }), []);
  } finally {
    await Deno.remove(sysfs, { recursive: true });
  }
});

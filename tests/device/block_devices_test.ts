/**
 * The block devices that may hold a setup's disks.
 *
 * Goal: whole disks, partitions, bound loop devices, dm and md devices are
 * listed; empty devices, unbound loop devices, RAM disks and the devices
 * setups export (nbd, ublk) are not. Method: a fake sysfs tree, one row per
 * kind of device.
 */

import assert from "node:assert/strict";
import {
  attachedNbdDevices,
  listBlockDevices,
  nbdBackendOf,
} from "../../mod/device/block_devices.ts";

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

Deno.test("attachedNbdDevices() maps setups to the NBD devices whose backend names them", async () => {
  const sysfs = await Deno.makeTempDir({ prefix: "dm-remap-sysfs-" });
  const backends: Record<string, string> = {
    nbd0: `${nbdBackendOf("5eec-setup-a")}\n`,
    nbd1: "", // configured by nothing
    nbd2: "qemu-nbd:/srv/other.img\n", // another program's device
    nbd11: nbdBackendOf("77aa-setup-b"),
    sdb: nbdBackendOf("not-an-nbd-device"),
  };
  try {
    for (const [name, backend] of Object.entries(backends)) {
      await Deno.mkdir(`${sysfs}/block/${name}`, { recursive: true });
      await Deno.writeTextFile(`${sysfs}/block/${name}/backend`, backend);
    }
    assert.deepEqual(
      await attachedNbdDevices({ sysfsRoot: sysfs }),
      new Map([["5eec-setup-a", "/dev/nbd0"], ["77aa-setup-b", "/dev/nbd11"]]),
    );
    assert.deepEqual(await attachedNbdDevices({ sysfsRoot: `${sysfs}/none` }), new Map());
  } finally {
    await Deno.remove(sysfs, { recursive: true });
  }
});

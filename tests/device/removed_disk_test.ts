/**
 * FileDevice over a block device that vanishes under its open descriptor.
 *
 * Goal: a removed disk is told from a bad sector, so the layers above never
 * take a vanished disk for failing blocks. Method: a real loop device whose
 * backing file is truncated and whose capacity is then re-read
 * (`losetup --set-capacity`), which leaves the kernel's device with a size of
 * zero, as `blk_mark_disk_dead` leaves a removed disk: reads then find the
 * end early and writes answer ENOSPC, both reported with the code "ENODEV".
 * A bad sector on a device that is still there stays "EIO" (failing_disk_test).
 *
 * @module
 */

import assert from "node:assert/strict";
import { openFileDevice } from "../../mod/device/file_device.ts";
import { DeviceIoError } from "../../mod/errors.ts";
import { attachLoopDevice } from "./fixtures.ts";

const DISK_BYTES = 1024 * 1024;

async function setCapacity(path: string): Promise<void> {
  const output = await new Deno.Command("losetup", { args: ["--set-capacity", path] }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
}

for (const direct of [true, false]) {
  Deno.test(`FileDevice reports a loop device whose capacity dropped to zero as gone (direct ${direct})`, async () => {
    const image = await Deno.makeTempFile({ suffix: ".img" });
    await Deno.truncate(image, DISK_BYTES);
    const loop = await attachLoopDevice(image);
    try {
      const device = await openFileDevice(loop.path, { direct });
      try {
        await device.read(new Uint8Array(4096), 4096);
        await Deno.truncate(image, 0);
        await setCapacity(loop.path);
        const outcomes: string[] = [];
        for (
          const request of [
            () => device.read(new Uint8Array(4096), 4096),
            () => device.write(new Uint8Array(4096), 8192),
          ]
        ) {
          await request().then(
            () => outcomes.push("ok"),
            (error) => {
              assert.ok(error instanceof DeviceIoError, String(error));
              assert.match(error.message, /the device is gone/);
              outcomes.push(error.code === "ENODEV" ? "gone" : error.code);
            },
          );
        }
        assert.deepEqual(outcomes, ["gone", "gone"]);
      } finally {
        await device.close();
      }
    } finally {
      await loop.detach();
      await Deno.remove(image);
    }
  });
}

/**
 * FileDevice against a disk that really fails, and the failing-disk helper itself.
 *
 * Goal: errors made by the kernel, outside this project, reach callers as
 * `DeviceIoError` with the right code, errno and request range, and good
 * ranges keep working. Method: `tests/clients/failing_disk.ts` (nbdkit sh
 * plugin behind nbdfuse) fails chosen byte ranges; the file is opened with
 * direct I/O so the page cache neither hides nor spreads errors. Each test
 * starts its own disk and stops it in `finally`.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { Device } from "../../mod/device/device.ts";
import { openFileDevice } from "../../mod/device/file_device.ts";
import { DeviceIoError, type IoErrorCode } from "../../mod/errors.ts";
import { type FailingDisk, type FailingRange, startFailingDisk } from "../clients/failing_disk.ts";
import { pattern } from "./device_conformance.ts";

const KIB = 1024;
const MIB = 1024 * 1024;
const DISK_BYTES = 4 * MIB;

/** Starts a disk with a pattern in its backing file, opens it, and always cleans up. */
async function withFailingDisk(
  badRanges: readonly FailingRange[],
  body: (device: Device, disk: FailingDisk) => Promise<void>,
): Promise<void> {
  const disk = await startFailingDisk({ sizeBytes: DISK_BYTES, badRanges });
  try {
    await Deno.writeFile(disk.backingPath, pattern(DISK_BYTES, 1));
    const device = await openFileDevice(disk.path, { direct: true });
    try {
      await body(device, disk);
    } finally {
      await device.close();
    }
  } finally {
    await disk.stop();
  }
}

/** What a request does: "ok" or the error's code, errno and range. */
async function outcome(request: Promise<void>): Promise<string> {
  try {
    await request;
    return "ok";
  } catch (error) {
    if (!(error instanceof DeviceIoError)) throw error;
    return `${error.code} errno ${error.errno} at ${error.offsetBytes}+${error.lengthBytes}`;
  }
}

function failure(
  code: IoErrorCode,
  errno: number,
  offsetBytes: number,
  lengthBytes: number,
): string {
  return `${code} errno ${errno} at ${offsetBytes}+${lengthBytes}`;
}

Deno.test("FileDevice.read() on a failing disk is EIO for the whole request inside bad ranges, data elsewhere", async () => {
  const bad: FailingRange[] = [{ offsetBytes: 1 * MIB, lengthBytes: 4 * KIB, fail: "read" }];
  await withFailingDisk(bad, async (device) => {
    const rows: { offsetBytes: number; lengthBytes: number; expected: string }[] = [
      { offsetBytes: 0, lengthBytes: 4 * KIB, expected: "ok" },
      { offsetBytes: 1 * MIB - 4 * KIB, lengthBytes: 4 * KIB, expected: "ok" },
      { offsetBytes: 1 * MIB, lengthBytes: 512, expected: failure("EIO", 5, 1 * MIB, 512) },
      {
        offsetBytes: 1 * MIB + 3584,
        lengthBytes: 512,
        expected: failure("EIO", 5, 1 * MIB + 3584, 512),
      },
      {
        offsetBytes: 1 * MIB - 512,
        lengthBytes: 1 * KIB,
        expected: failure("EIO", 5, 1 * MIB - 512, 1 * KIB),
      },
      {
        offsetBytes: 1 * MIB - 64 * KIB,
        lengthBytes: 256 * KIB,
        expected: failure("EIO", 5, 1 * MIB - 64 * KIB, 256 * KIB),
      },
      { offsetBytes: 1 * MIB + 4 * KIB, lengthBytes: 4 * KIB, expected: "ok" },
      { offsetBytes: DISK_BYTES - 4 * KIB, lengthBytes: 4 * KIB, expected: "ok" },
    ];
    for (const row of rows) {
      const buffer = new Uint8Array(row.lengthBytes);
      assert.equal(
        await outcome(device.read(buffer, row.offsetBytes)),
        row.expected,
        `read at ${row.offsetBytes}`,
      );
      if (row.expected !== "ok") continue;
      const expected = pattern(DISK_BYTES, 1).subarray(
        row.offsetBytes,
        row.offsetBytes + row.lengthBytes,
      );
      assert.deepEqual(buffer, expected, `data at ${row.offsetBytes}`);
    }
  });
});

Deno.test("FileDevice writes on a failing disk fail only in write-failing ranges, with the injected errno", async () => {
  const bad: FailingRange[] = [
    { offsetBytes: 1 * MIB, lengthBytes: 4 * KIB, fail: "read" },
    { offsetBytes: 2 * MIB, lengthBytes: 512, fail: "write" },
    { offsetBytes: 3 * MIB, lengthBytes: 8 * KIB, fail: "both", error: "ENOSPC" },
  ];
  await withFailingDisk(bad, async (device, disk) => {
    const data = pattern(4 * KIB, 2);
    const zeroes = (offsetBytes: number) =>
      device.writeZeroes({ offsetBytes, lengthBytes: 4 * KIB });
    const rows: [string, () => Promise<void>, string][] = [
      ["write to a read-failing range", () => device.write(data, 1 * MIB), "ok"],
      [
        "write over a write-failing sector",
        () => device.write(data, 2 * MIB - 1 * KIB),
        failure("EIO", 5, 2 * MIB - 1 * KIB, 4 * KIB),
      ],
      [
        "fua write over it",
        () => device.write(data, 2 * MIB, { fua: true }),
        failure("EIO", 5, 2 * MIB, 4 * KIB),
      ],
      ["writeZeroes over it", () => zeroes(2 * MIB), failure("EIO", 5, 2 * MIB, 4 * KIB)],
      ["write beside it", () => device.write(data, 2 * MIB + 512), "ok"],
      [
        "write to an ENOSPC range",
        () => device.write(data, 3 * MIB + 4 * KIB),
        failure("ENOSPC", 28, 3 * MIB + 4 * KIB, 4 * KIB),
      ],
      [
        "read of the ENOSPC range",
        () => device.read(new Uint8Array(512), 3 * MIB),
        failure("ENOSPC", 28, 3 * MIB, 512),
      ],
      ["writeZeroes elsewhere", () => zeroes(0), "ok"],
      [
        "discard in a write-failing range (advisory)",
        () => device.discard({ offsetBytes: 2 * MIB, lengthBytes: 512 }),
        "ok",
      ],
      ["flush", () => device.flush(), "ok"],
    ];
    for (const [what, call, expected] of rows) assert.equal(await outcome(call()), expected, what);
    const backing = await Deno.readFile(disk.backingPath);
    assert.deepEqual(
      backing.subarray(1 * MIB, 1 * MIB + 4 * KIB),
      data,
      "the write to a read-failing range landed",
    );
    assert.deepEqual(
      backing.subarray(2 * MIB + 512, 2 * MIB + 512 + 4 * KIB),
      data,
      "the write beside landed",
    );
    assert.deepEqual(backing.subarray(0, 4 * KIB), new Uint8Array(4 * KIB), "the zeroes landed");
    const untouched = pattern(DISK_BYTES, 1).subarray(2 * MIB - 1 * KIB, 2 * MIB);
    assert.deepEqual(
      backing.subarray(2 * MIB - 1 * KIB, 2 * MIB),
      untouched,
      "a failed write stored nothing",
    );
    assert.equal(
      await outcome(device.read(new Uint8Array(512), 1 * MIB)),
      failure("EIO", 5, 1 * MIB, 512),
    );
  });
});

Deno.test("startFailingDisk() setBadRanges() changes which ranges fail while mounted, and injectedErrors() lists each failed request", async () => {
  await withFailingDisk([], async (device, disk) => {
    const read = () => outcome(device.read(new Uint8Array(4 * KIB), 2 * MIB));
    const write = () => outcome(device.write(new Uint8Array(4 * KIB), 2 * MIB));
    assert.deepEqual([await read(), await write()], ["ok", "ok"], "no bad ranges");
    await disk.setBadRanges([{ offsetBytes: 2 * MIB + 512, lengthBytes: 512, fail: "read" }]);
    assert.deepEqual(
      [await read(), await write()],
      [failure("EIO", 5, 2 * MIB, 4 * KIB), "ok"],
      "read-failing",
    );
    await disk.setBadRanges([{ offsetBytes: 2 * MIB + 512, lengthBytes: 512, fail: "write" }]);
    assert.deepEqual(
      [await read(), await write()],
      ["ok", failure("EIO", 5, 2 * MIB, 4 * KIB)],
      "write-failing",
    );
    await disk.setBadRanges([]);
    assert.deepEqual([await read(), await write()], ["ok", "ok"], "cleared");
    assert.deepEqual(await disk.injectedErrors(), [
      { operation: "read", offsetBytes: 2 * MIB, lengthBytes: 4 * KIB },
      { operation: "write", offsetBytes: 2 * MIB, lengthBytes: 4 * KIB },
    ]);
  });
});

Deno.test("startFailingDisk() stop() unmounts and removes its files, even with the file still open", async () => {
  const disk = await startFailingDisk({ sizeBytes: 1 * MIB });
  const device = await openFileDevice(disk.path, { direct: true });
  const directory = disk.backingPath.replace(/\/backing\.img$/, "");
  try {
    await disk.stop();
    await disk.stop();
    const mounts = await Deno.readTextFile("/proc/self/mounts");
    assert.ok(!mounts.includes(directory), "the FUSE mount is gone");
    await assert.rejects(() => Deno.stat(directory), Deno.errors.NotFound);
  } finally {
    await device.close();
  }
});

Deno.test("startFailingDisk() rejects a size that is not a multiple of 512", async () => {
  await assert.rejects(() => startFailingDisk({ sizeBytes: 1000 }), RangeError);
});

/**
 * The one conformance suite every `Device` passes, as hono runs one router
 * suite against every router (`src/router/common.case.test.ts`).
 *
 * Goal: the contract in `mod/device/device.ts` holds for each backend and
 * wrapper. Method: each test makes a fresh device of {@link CONFORMANCE_DEVICE_BYTES}
 * with the given factory, drives it through the interface only, and checks
 * what reads return. Ranges are whole 512-byte sectors, as the remap layer
 * sends them (direct I/O on a block device needs that); buffers are sometimes
 * misaligned in memory on purpose, to exercise direct I/O bounce buffers.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AssertionError } from "../../mod/assert.ts";
import type { Device } from "../../mod/device/device.ts";

/** A device under test and how to remove what it left behind. */
export interface DeviceFixture {
  device: Device;
  /** Called after the device is closed (or the test failed); removes files, detaches loops. */
  cleanup(): Promise<void>;
}

/** Makes a fresh, zero-filled device of the given size. */
export type MakeDevice = (sizeBytes: number) => Promise<DeviceFixture>;

/** Every conformance device has this size: big enough for requests past 1 MiB chunking. */
export const CONFORMANCE_DEVICE_BYTES = 8 * 1024 * 1024;

const KIB = 1024;
const MIB = 1024 * 1024;

/** Rows of non-overlapping requests: offset, length, and whether the buffer is misaligned. */
const TRANSFERS: readonly { offsetBytes: number; lengthBytes: number; misaligned: boolean }[] = [
  { offsetBytes: 0, lengthBytes: 512, misaligned: false },
  { offsetBytes: 512, lengthBytes: 4 * KIB, misaligned: true },
  { offsetBytes: 8 * KIB - 512, lengthBytes: 1 * KIB, misaligned: false },
  { offsetBytes: 64 * KIB, lengthBytes: 64 * KIB + 512, misaligned: true },
  { offsetBytes: 1 * MIB + 512, lengthBytes: 128 * KIB, misaligned: false },
  { offsetBytes: 3 * MIB, lengthBytes: 2 * MIB + 4 * KIB, misaligned: true },
  { offsetBytes: CONFORMANCE_DEVICE_BYTES - 4 * KIB - 512, lengthBytes: 512, misaligned: false },
  { offsetBytes: CONFORMANCE_DEVICE_BYTES - 4 * KIB, lengthBytes: 4 * KIB, misaligned: true },
];

/** Bytes that differ by position and seed, never all zero. */
export function pattern(lengthBytes: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) bytes[i] = ((i * 31 + seed * 17) % 251) + 1;
  return bytes;
}

/** A buffer whose first byte sits at an odd address, so direct I/O must bounce it. */
function buffer(lengthBytes: number, misaligned: boolean): Uint8Array {
  return misaligned ? new Uint8Array(lengthBytes + 1).subarray(1) : new Uint8Array(lengthBytes);
}

async function readBack(
  device: Device,
  offsetBytes: number,
  lengthBytes: number,
): Promise<Uint8Array> {
  const bytes = new Uint8Array(lengthBytes);
  await device.read(bytes, offsetBytes);
  return bytes;
}

function assertZeros(bytes: Uint8Array, what: string): void {
  const firstNonZero = bytes.findIndex((byte) => byte !== 0);
  assert.equal(
    firstNonZero,
    -1,
    `${what} reads back as zeros (first non-zero byte at ${firstNonZero})`,
  );
}

/**
 * Registers the conformance tests for one kind of device.
 *
 * @param name Names the device in every test title, e.g. `"FileDevice (sparse file)"`.
 * @param makeDevice Makes a fresh zero-filled device of the given size.
 */
export function runDeviceConformance(name: string, makeDevice: MakeDevice): void {
  function test(title: string, body: (device: Device) => Promise<void>): void {
    Deno.test(`${name}: ${title}`, async () => {
      const { device, cleanup } = await makeDevice(CONFORMANCE_DEVICE_BYTES);
      try {
        await body(device);
      } finally {
        await device.close();
        await cleanup();
      }
    });
  }

  test("sizeBytes is the size it was made with", (device) => {
    assert.equal(device.sizeBytes, CONFORMANCE_DEVICE_BYTES);
    assert.equal(typeof device.name, "string");
    return Promise.resolve();
  });

  test("a fresh device reads zeros", async (device) => {
    assertZeros(await readBack(device, 0, 64 * KIB), "the start");
    assertZeros(await readBack(device, CONFORMANCE_DEVICE_BYTES - 64 * KIB, 64 * KIB), "the end");
  });

  test("read() returns what write() stored, at various offsets and sizes", async (device) => {
    for (const [index, row] of TRANSFERS.entries()) {
      const data = buffer(row.lengthBytes, row.misaligned);
      data.set(pattern(row.lengthBytes, index));
      await device.write(data, row.offsetBytes);
    }
    for (const [index, row] of TRANSFERS.entries()) {
      const back = buffer(row.lengthBytes, row.misaligned);
      await device.read(back, row.offsetBytes);
      assert.deepEqual(
        back,
        pattern(row.lengthBytes, index),
        `row ${index} at offset ${row.offsetBytes}`,
      );
    }
    assertZeros(await readBack(device, 2 * MIB, 64 * KIB), "an unwritten range between rows");
  });

  test("overwriting part of a write changes only that part", async (device) => {
    await device.write(pattern(16 * KIB, 1), 1 * MIB);
    await device.write(pattern(1 * KIB, 2), 1 * MIB + 4 * KIB + 512);
    const expected = pattern(16 * KIB, 1);
    expected.set(pattern(1 * KIB, 2), 4 * KIB + 512);
    assert.deepEqual(await readBack(device, 1 * MIB, 16 * KIB), expected);
  });

  test("concurrent writes to separate ranges all land", async (device) => {
    const count = 32;
    const offsetOf = (index: number) => (index * 37 % count) * 64 * KIB + 512;
    await Promise.all(
      Array.from(
        { length: count },
        (_, index) => device.write(pattern(8 * KIB, index), offsetOf(index)),
      ),
    );
    const backs = await Promise.all(
      Array.from({ length: count }, (_, index) => readBack(device, offsetOf(index), 8 * KIB)),
    );
    for (const [index, back] of backs.entries()) {
      assert.deepEqual(back, pattern(8 * KIB, index), `write ${index}`);
    }
  });

  test("write() with fua and flush() resolve, and the data reads back", async (device) => {
    await device.write(pattern(4 * KIB, 3), 2 * MIB, { fua: true });
    await device.write(pattern(4 * KIB, 4), 2 * MIB + 4 * KIB);
    await device.flush();
    assert.deepEqual(await readBack(device, 2 * MIB, 4 * KIB), pattern(4 * KIB, 3));
    assert.deepEqual(await readBack(device, 2 * MIB + 4 * KIB, 4 * KIB), pattern(4 * KIB, 4));
  });

  for (const mayPunch of [false, true]) {
    test(`writeZeroes() with mayPunch ${mayPunch} reads back zeros and keeps neighbours`, async (device) => {
      const base = 1 * MIB;
      await device.write(pattern(4 * MIB, 5), base);
      const zeroed = [
        { offsetBytes: base + 512, lengthBytes: 512 },
        { offsetBytes: base + 8 * KIB - 512, lengthBytes: 8 * KIB + 1 * KIB },
        { offsetBytes: base + 1 * MIB + 512, lengthBytes: 2 * MIB + 512 },
      ];
      for (const range of zeroed) {
        await device.writeZeroes(range, { mayPunch, fua: range.offsetBytes === base + 512 });
      }
      const expected = pattern(4 * MIB, 5);
      for (const range of zeroed) {
        expected.fill(0, range.offsetBytes - base, range.offsetBytes - base + range.lengthBytes);
      }
      assert.deepEqual(await readBack(device, base, 4 * MIB), expected);
    });
  }

  test("discard() keeps neighbours and the range stays readable", async (device) => {
    const base = 4 * MIB;
    await device.write(pattern(256 * KIB, 6), base);
    const range = { offsetBytes: base + 64 * KIB, lengthBytes: 128 * KIB };
    await device.discard(range);
    const back = await readBack(device, base, 256 * KIB);
    const expected = pattern(256 * KIB, 6);
    assert.deepEqual(
      back.subarray(0, 64 * KIB),
      expected.subarray(0, 64 * KIB),
      "before the range",
    );
    assert.deepEqual(back.subarray(192 * KIB), expected.subarray(192 * KIB), "after the range");
    // Inside: unspecified, but only old data or zeros, never bytes from elsewhere.
    for (let i = 64 * KIB; i < 192 * KIB; i++) {
      if (back[i] !== 0 && back[i] !== expected[i]) {
        assert.fail(`discarded byte ${i} holds foreign data`);
      }
    }
  });

  test("zero-length requests succeed", async (device) => {
    await device.read(new Uint8Array(0), 4096);
    await device.write(new Uint8Array(0), CONFORMANCE_DEVICE_BYTES);
    await device.writeZeroes({ offsetBytes: 512, lengthBytes: 0 });
    await device.discard({ offsetBytes: 512, lengthBytes: 0 });
  });

  test("requests outside the device are assertion failures", async (device) => {
    const end = CONFORMANCE_DEVICE_BYTES;
    const outside: [string, () => Promise<void>][] = [
      ["read past the end", () => device.read(new Uint8Array(1024), end - 512)],
      ["read at a negative offset", () => device.read(new Uint8Array(512), -512)],
      ["write past the end", () => device.write(new Uint8Array(512), end)],
      ["write at a fractional offset", () => device.write(new Uint8Array(512), 0.5)],
      [
        "writeZeroes past the end",
        () => device.writeZeroes({ offsetBytes: end - 512, lengthBytes: 1024 }),
      ],
      ["discard past the end", () => device.discard({ offsetBytes: end, lengthBytes: 512 })],
    ];
    for (const [what, call] of outside) {
      await assert.rejects(async () => await call(), AssertionError, what);
    }
    assertZeros(await readBack(device, end - 4 * KIB, 4 * KIB), "the end after rejected requests");
  });

  test("after close() every call is an assertion failure, and close() again is harmless", async (device) => {
    await device.write(pattern(512, 7), 0);
    await device.close();
    await device.close();
    const calls: [string, () => Promise<void>][] = [
      ["read", () => device.read(new Uint8Array(512), 0)],
      ["write", () => device.write(new Uint8Array(512), 0)],
      ["flush", () => device.flush()],
      ["writeZeroes", () => device.writeZeroes({ offsetBytes: 0, lengthBytes: 512 })],
      ["discard", () => device.discard({ offsetBytes: 0, lengthBytes: 512 })],
    ];
    for (const [what, call] of calls) {
      await assert.rejects(async () => await call(), AssertionError, what);
    }
  });
}

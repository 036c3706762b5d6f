/**
 * FaultyDevice: bad blocks in "fail" and "heal" mode, live changes, seeded rates.
 *
 * Goal: the rules at the top of `mod/fault/fault_model.ts` hold. Method: a
 * FaultyDevice over a MemoryDevice; table rows of (block size, mode, bad
 * blocks or a bad range and what it fails, request) → (outcome, bad blocks
 * after, what the memory holds).
 * Without faults it must also pass the device conformance suite. Over a file,
 * it offers the file's direct access with its bad blocks as ranges to leave.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AssertionError } from "../../mod/assert.ts";
import { MemoryDevice } from "../../mod/device/memory_device.ts";
import { DeviceIoError } from "../../mod/errors.ts";
import type { ByteRange } from "../../mod/device/device.ts";
import type { FailOn } from "../../mod/fault/fault_model.ts";
import { FaultyDevice, type FaultyDeviceOptions } from "../../mod/fault/faulty_device.ts";
import { openFileDevice } from "../../mod/device/file_device.ts";
import { SharedBlockListReader } from "../../mod/shared_block_list.ts";
import { makeSparseImage } from "../device/fixtures.ts";
import { pattern, runDeviceConformance } from "../device/device_conformance.ts";

runDeviceConformance("FaultyDevice (no faults)", (sizeBytes) => {
  const device = new FaultyDevice(new MemoryDevice("mem0", sizeBytes), { blockBytes: 4096 });
  return Promise.resolve({ device, cleanup: () => Promise.resolve() });
});

const DEVICE_BYTES = 64 * 1024;

function makeFaulty(options: FaultyDeviceOptions): { memory: MemoryDevice; faulty: FaultyDevice } {
  const memory = new MemoryDevice("mem0", DEVICE_BYTES);
  memory.peek({ offsetBytes: 0, lengthBytes: DEVICE_BYTES }).set(pattern(DEVICE_BYTES, 1));
  return { memory, faulty: new FaultyDevice(memory, options) };
}

/** "ok", or the error's code and range; the error must name `device`. */
async function outcome(request: () => Promise<void>, device = "mem0"): Promise<string> {
  try {
    await request();
    return "ok";
  } catch (error) {
    if (!(error instanceof DeviceIoError)) throw error;
    assert.equal(error.device, device);
    return `${error.code} at ${error.offsetBytes}+${error.lengthBytes}`;
  }
}

type Operation = "read" | "write" | "writeZeroes" | "discard";

function run(
  faulty: FaultyDevice,
  operation: Operation,
  offsetBytes: number,
  lengthBytes: number,
): Promise<void> {
  switch (operation) {
    case "read":
      return faulty.read(new Uint8Array(lengthBytes), offsetBytes);
    case "write":
      return faulty.write(pattern(lengthBytes, 2), offsetBytes);
    case "writeZeroes":
      return faulty.writeZeroes({ offsetBytes, lengthBytes });
    case "discard":
      return faulty.discard({ offsetBytes, lengthBytes });
  }
}

const BAD_BLOCK_ROWS: {
  name: string;
  options: FaultyDeviceOptions;
  /** A range marked bad with `setBad()` before the request. */
  setBad?: [ByteRange, FailOn];
  operation: Operation;
  offsetBytes: number;
  lengthBytes: number;
  expected: string;
  badAfter: number[];
}[] = [
  // Reads: any touch of a bad block fails the whole request.
  {
    name: "read of a bad 512-byte block",
    options: { badBlocks: [8] },
    operation: "read",
    offsetBytes: 4096,
    lengthBytes: 512,
    expected: "EIO at 4096+512",
    badAfter: [8],
  },
  {
    name: "read spanning a bad block",
    options: { badBlocks: [8] },
    operation: "read",
    offsetBytes: 0,
    lengthBytes: 8192,
    expected: "EIO at 0+8192",
    badAfter: [8],
  },
  {
    name: "read beside a bad block",
    options: { badBlocks: [8] },
    operation: "read",
    offsetBytes: 4608,
    lengthBytes: 4096,
    expected: "ok",
    badAfter: [8],
  },
  {
    name: "read of one sector of a bad 4 KiB block",
    options: { blockBytes: 4096, badBlocks: [2] },
    operation: "read",
    offsetBytes: 12288 - 512,
    lengthBytes: 512,
    expected: "EIO at 11776+512",
    badAfter: [2],
  },
  {
    name: "read that ends where a bad 4 KiB block starts",
    options: { blockBytes: 4096, badBlocks: [2] },
    operation: "read",
    offsetBytes: 4096,
    lengthBytes: 4096,
    expected: "ok",
    badAfter: [2],
  },
  // Writes in "fail" mode: EIO, nothing stored, block stays bad.
  {
    name: "fail mode: write to a bad block",
    options: { badBlocks: [8] },
    operation: "write",
    offsetBytes: 4096,
    lengthBytes: 512,
    expected: "EIO at 4096+512",
    badAfter: [8],
  },
  {
    name: "fail mode: write spanning a bad block",
    options: { blockBytes: 4096, badBlocks: [1] },
    operation: "write",
    offsetBytes: 0,
    lengthBytes: 16384,
    expected: "EIO at 0+16384",
    badAfter: [1],
  },
  {
    name: "fail mode: writeZeroes over a bad block",
    options: { badBlocks: [8] },
    operation: "writeZeroes",
    offsetBytes: 0,
    lengthBytes: 8192,
    expected: "EIO at 0+8192",
    badAfter: [8],
  },
  {
    name: "fail mode: write beside a bad block",
    options: { badBlocks: [8] },
    operation: "write",
    offsetBytes: 0,
    lengthBytes: 4096,
    expected: "ok",
    badAfter: [8],
  },
  // Writes in "heal" mode: whole blocks heal, partial cover fails.
  {
    name: "heal mode: write covering bad blocks heals them",
    options: { writeMode: "heal", badBlocks: [8, 9, 30] },
    operation: "write",
    offsetBytes: 4096,
    lengthBytes: 1024,
    expected: "ok",
    badAfter: [30],
  },
  {
    name: "heal mode: writeZeroes covering a bad block heals it",
    options: { writeMode: "heal", blockBytes: 4096, badBlocks: [3] },
    operation: "writeZeroes",
    offsetBytes: 8192,
    lengthBytes: 8192,
    expected: "ok",
    badAfter: [],
  },
  {
    name: "heal mode: partial write of a bad 4 KiB block fails",
    options: { writeMode: "heal", blockBytes: 4096, badBlocks: [3] },
    operation: "write",
    offsetBytes: 12288,
    lengthBytes: 512,
    expected: "EIO at 12288+512",
    badAfter: [3],
  },
  {
    name: "heal mode: write covering one bad block wholly and another partly fails",
    options: { writeMode: "heal", blockBytes: 4096, badBlocks: [1, 2] },
    operation: "write",
    offsetBytes: 4096,
    lengthBytes: 5120,
    expected: "EIO at 4096+5120",
    badAfter: [1, 2],
  },
  // Discard is advisory: it neither fails nor heals.
  {
    name: "discard of a bad block",
    options: { writeMode: "heal", badBlocks: [8] },
    operation: "discard",
    offsetBytes: 4096,
    lengthBytes: 512,
    expected: "ok",
    badAfter: [8],
  },
  // Ranges that fail only reads or only writes.
  {
    name: "read-failing range: read fails",
    options: {},
    setBad: [{ offsetBytes: 4096, lengthBytes: 1024 }, "read"],
    operation: "read",
    offsetBytes: 4096 + 512,
    lengthBytes: 4096,
    expected: "EIO at 4608+4096",
    badAfter: [8, 9],
  },
  {
    name: "read-failing range: fail mode stores the write, and the blocks stay unreadable",
    options: {},
    setBad: [{ offsetBytes: 4096, lengthBytes: 1024 }, "read"],
    operation: "write",
    offsetBytes: 4096,
    lengthBytes: 1024,
    expected: "ok",
    badAfter: [8, 9],
  },
  {
    name: "read-failing range: heal mode stores the write and heals only blocks it covers wholly",
    options: { writeMode: "heal", blockBytes: 4096 },
    setBad: [{ offsetBytes: 4096, lengthBytes: 8192 }, "read"],
    operation: "write",
    offsetBytes: 4096,
    lengthBytes: 4096 + 512,
    expected: "ok",
    badAfter: [2],
  },
  {
    name: "write-failing range: read passes",
    options: {},
    setBad: [{ offsetBytes: 4096, lengthBytes: 512 }, "write"],
    operation: "read",
    offsetBytes: 0,
    lengthBytes: 8192,
    expected: "ok",
    badAfter: [8],
  },
  {
    name: "write-failing range: write fails",
    options: {},
    setBad: [{ offsetBytes: 4096, lengthBytes: 512 }, "write"],
    operation: "write",
    offsetBytes: 0,
    lengthBytes: 8192,
    expected: "EIO at 0+8192",
    badAfter: [8],
  },
];

Deno.test("FaultyDevice bad blocks: each request's outcome, the bad set after, and the stored data", async () => {
  for (const row of BAD_BLOCK_ROWS) {
    const { memory, faulty } = makeFaulty(row.options);
    if (row.setBad) faulty.setBad(...row.setBad);
    const before = memory.peek({ offsetBytes: 0, lengthBytes: DEVICE_BYTES }).slice();
    const result = await outcome(() =>
      run(faulty, row.operation, row.offsetBytes, row.lengthBytes)
    );
    assert.equal(result, row.expected, row.name);
    assert.deepEqual(faulty.listBadBlocks(), row.badAfter, `${row.name}: bad blocks after`);
    const after = memory.peek({ offsetBytes: 0, lengthBytes: DEVICE_BYTES });
    if (row.expected !== "ok" || row.operation === "read") {
      assert.deepEqual(after, before, `${row.name}: nothing stored`);
    } else if (row.operation === "write") {
      assert.deepEqual(
        after.subarray(row.offsetBytes, row.offsetBytes + row.lengthBytes),
        pattern(row.lengthBytes, 2),
        row.name,
      );
    }
  }
});

Deno.test("FaultyDevice counts injected faults and healed blocks", async () => {
  const { faulty } = makeFaulty({ writeMode: "heal", blockBytes: 4096, badBlocks: [0, 1, 2] });
  await outcome(() => faulty.read(new Uint8Array(512), 0));
  await outcome(() => faulty.write(new Uint8Array(512), 4096));
  await faulty.write(new Uint8Array(8192), 4096);
  await faulty.read(new Uint8Array(8192), 4096);
  assert.deepEqual(faulty.counters, {
    badBlockReads: 1,
    badBlockWrites: 1,
    healedBlocks: 2,
    randomReadFaults: 0,
    randomWriteFaults: 0,
    randomFlushFaults: 0,
    removedRequests: 0,
    weakBlockReads: 0,
    slowBlockReads: 0,
  });
  assert.deepEqual(faulty.listBadBlocks(), [0]);
});

Deno.test("FaultyDevice bad blocks change while requests are served", async () => {
  const { faulty } = makeFaulty({ blockBytes: 4096 });
  const read = (offsetBytes: number) =>
    outcome(() => faulty.read(new Uint8Array(4096), offsetBytes));
  assert.equal(await read(8192), "ok");
  faulty.setBad({ offsetBytes: 8192 + 512, lengthBytes: 4096 }, "both");
  assert.deepEqual(faulty.listBadBlocks(), [2, 3], "a range marks every block it touches");
  assert.equal(faulty.failureOf(3), "both");
  assert.equal(faulty.failureOf(4), undefined);
  assert.equal(await read(8192), "EIO at 8192+4096");
  assert.equal(faulty.removeBadBlocks([2, 5]), 1);
  assert.equal(await read(8192), "ok");
  assert.equal(await read(12288), "EIO at 12288+4096");
  faulty.writeMode = "heal";
  await faulty.write(new Uint8Array(4096), 12288);
  assert.equal(await read(12288), "ok");
  faulty.addBadBlocks([0, 15]);
  faulty.clearBadBlocks();
  assert.deepEqual(faulty.listBadBlocks(), []);
  // A request decides at its start: one already forwarded is not failed by a later change.
  const running = faulty.read(new Uint8Array(4096), 0);
  faulty.addBadBlocks([0]);
  await running;
  assert.equal(await read(0), "EIO at 0+4096");
});

Deno.test("FaultyDevice asserts block indexes and ranges inside the device", () => {
  const { faulty } = makeFaulty({ blockBytes: 4096 });
  assert.equal(faulty.blockCount, 16);
  assert.throws(() => faulty.addBadBlocks([16]), AssertionError);
  assert.throws(() => faulty.addBadBlocks([-1]), AssertionError);
  assert.throws(() => faulty.failureOf(1.5), AssertionError);
  assert.throws(
    () => faulty.setBad({ offsetBytes: DEVICE_BYTES - 512, lengthBytes: 1024 }, "read"),
    AssertionError,
  );
  assert.throws(
    () => new FaultyDevice(new MemoryDevice("m", 4096), { blockBytes: 1000 }),
    AssertionError,
  );
});

/** Which of `count` 512-byte reads fail, as a string of '.' and 'x'. */
async function readFaultPattern(faulty: FaultyDevice, count: number): Promise<string> {
  let marks = "";
  for (let index = 0; index < count; index++) {
    const result = await outcome(() => faulty.read(new Uint8Array(512), (index % 64) * 512));
    marks += result === "ok" ? "." : "x";
  }
  return marks;
}

Deno.test("FaultyDevice random read faults are reproducible by seed", async () => {
  const options = { rates: { readEio: 0.2 }, seed: 1234 };
  const first = await readFaultPattern(makeFaulty(options).faulty, 200);
  const second = await readFaultPattern(makeFaulty(options).faulty, 200);
  const other = await readFaultPattern(makeFaulty({ ...options, seed: 4321 }).faulty, 200);
  assert.equal(first, second, "same seed, same faults");
  assert.notEqual(first, other, "another seed, other faults");
  const faults = [...first].filter((mark) => mark === "x").length;
  assert.ok(faults > 20 && faults < 60, `about 20% of 200 reads fail (got ${faults})`);
  const restarted = makeFaulty({ rates: { readEio: 0.2 }, seed: 99 }).faulty;
  await readFaultPattern(restarted, 50);
  restarted.setRates({ readEio: 0.2 }, 1234);
  assert.equal(
    await readFaultPattern(restarted, 200),
    first,
    "setRates() with a seed restarts the sequence",
  );
});

Deno.test("FaultyDevice rates of 0 and 1 never and always fail, per operation", async () => {
  const { faulty, memory } = makeFaulty({ rates: { writeEio: 1 } });
  assert.equal(await readFaultPattern(faulty, 50), ".".repeat(50));
  assert.equal(await outcome(() => faulty.write(new Uint8Array(512), 0)), "EIO at 0+512");
  assert.equal(
    await outcome(() => faulty.writeZeroes({ offsetBytes: 512, lengthBytes: 512 })),
    "EIO at 512+512",
  );
  assert.equal(await outcome(() => faulty.flush()), "ok");
  assert.deepEqual(
    memory.peek({ offsetBytes: 0, lengthBytes: 1024 }),
    pattern(DEVICE_BYTES, 1).subarray(0, 1024),
  );
  faulty.setRates({ flushEio: 1 });
  assert.equal(await outcome(() => faulty.write(new Uint8Array(512), 0)), "ok");
  assert.equal(await outcome(() => faulty.flush()), `EIO at 0+${DEVICE_BYTES}`);
  assert.deepEqual(
    {
      reads: faulty.counters.randomReadFaults,
      writes: faulty.counters.randomWriteFaults,
      flushes: faulty.counters.randomFlushFaults,
    },
    { reads: 0, writes: 2, flushes: 1 },
  );
  assert.throws(() => faulty.setRates({ readEio: 1.5 }), RangeError);
  assert.throws(() => faulty.setRates({ flushEio: Number.NaN }), RangeError);
});

Deno.test("FaultyDevice failed flush is not forwarded: a crash then loses the unflushed write", async () => {
  const memory = new MemoryDevice("mem0", DEVICE_BYTES);
  const faulty = new FaultyDevice(memory, { rates: { flushEio: 1 } });
  await faulty.write(pattern(512, 3), 0);
  assert.equal(await outcome(() => faulty.flush()), `EIO at 0+${DEVICE_BYTES}`);
  const survivor = memory.crash();
  assert.deepEqual(survivor.peek({ offsetBytes: 0, lengthBytes: 512 }), new Uint8Array(512));
});

Deno.test("FaultyDevice.directAccess() offers the wrapped descriptor and leaves its bad blocks to itself", async () => {
  const image = await makeSparseImage(DEVICE_BYTES);
  const file = await openFileDevice(image.path);
  try {
    const faulty = new FaultyDevice(file, { blockBytes: 4096, badBlocks: [3] });
    faulty.addBadBlocks([5], "read");
    const access = faulty.directAccess()!;
    assert.equal(access.fd, file.directAccess().fd);
    assert.equal(access.direct, false);
    assert.equal(access.leftToDevice!.blockBytes, 4096);
    const reads = new SharedBlockListReader(access.leftToDevice!.reads);
    const writes = new SharedBlockListReader(access.leftToDevice!.writes);
    assert.deepEqual([3, 4, 5].map((block) => reads.anyBetween(block, block)), [true, false, true]);
    assert.deepEqual([3, 4, 5].map((block) => writes.anyBetween(block, block)), [
      true,
      false,
      false,
    ]);
    // The lists are live: changes after the grant reach the direct reader/writer.
    faulty.setBad({ offsetBytes: 4 * 4096, lengthBytes: 4096 }, "write");
    assert.equal(writes.anyBetween(4, 4), true);
    assert.equal(writes.everything, false);
    faulty.setRates({ flushEio: 0.5 });
    assert.equal(writes.everything, true, "a flush rate leaves writes and flushes to the layer");
    assert.equal(reads.everything, false);
  } finally {
    await file.close();
    await image.cleanup();
  }
});

Deno.test("FaultyDevice.directAccess() is undefined over a device without it or over another fault layer", async () => {
  assert.equal(new FaultyDevice(new MemoryDevice("mem0", DEVICE_BYTES)).directAccess(), undefined);
  const image = await makeSparseImage(DEVICE_BYTES);
  const file = await openFileDevice(image.path);
  try {
    assert.equal(new FaultyDevice(new FaultyDevice(file)).directAccess(), undefined);
  } finally {
    await file.close();
    await image.cleanup();
  }
});

Deno.test("FaultyDevice.remove() fails every later request with ENODEV and leaves everything to itself", async () => {
  const image = await makeSparseImage(DEVICE_BYTES);
  const file = await openFileDevice(image.path);
  try {
    const faulty = new FaultyDevice(file, { blockBytes: 4096 });
    const access = faulty.directAccess()!;
    const reads = new SharedBlockListReader(access.leftToDevice!.reads);
    const writes = new SharedBlockListReader(access.leftToDevice!.writes);
    assert.equal(await outcome(() => faulty.read(new Uint8Array(512), 0), file.name), "ok");
    faulty.remove();
    const outcomes = [
      await outcome(() => faulty.read(new Uint8Array(512), 0), file.name),
      await outcome(() => faulty.write(new Uint8Array(512), 4096), file.name),
      await outcome(() => faulty.writeZeroes({ offsetBytes: 0, lengthBytes: 512 }), file.name),
      await outcome(() => faulty.discard({ offsetBytes: 0, lengthBytes: 512 }), file.name),
      await outcome(() => faulty.flush(), file.name),
    ];
    assert.deepEqual(outcomes, [
      "ENODEV at 0+512",
      "ENODEV at 4096+512",
      "ENODEV at 0+512",
      "ENODEV at 0+512",
      `ENODEV at 0+${DEVICE_BYTES}`,
    ]);
    assert.equal(faulty.counters.removedRequests, 5);
    assert.equal(reads.everything, true, "a direct reader sends every read to the layer");
    assert.equal(writes.everything, true, "and every write and flush");
  } finally {
    await file.close();
    await image.cleanup();
  }
});

Deno.test("FaultyDevice weak blocks fail every other read that touches them, the first included", async () => {
  const { faulty } = makeFaulty({ blockBytes: 4096 });
  faulty.setWeak({ offsetBytes: 8192, lengthBytes: 4096 });
  const read = () => outcome(() => faulty.read(new Uint8Array(4096), 8192));
  const results = [await read(), await read(), await read(), await read()];
  assert.deepEqual(results.map((result) => result === "ok"), [false, true, false, true]);
  assert.equal(await outcome(() => faulty.read(new Uint8Array(4096), 0)), "ok");
  assert.equal(await outcome(() => faulty.write(new Uint8Array(4096), 8192)), "ok");
  assert.equal(faulty.counters.weakBlockReads, 2);
  faulty.clearWeakAndSlow();
  assert.deepEqual([await read(), await read()], ["ok", "ok"]);
});

Deno.test("FaultyDevice slow blocks delay the reads that touch them, and only those", async () => {
  const { faulty } = makeFaulty({ blockBytes: 4096 });
  faulty.setSlow({ offsetBytes: 4096, lengthBytes: 4096 }, 150);
  const timed = async (offsetBytes: number) => {
    const startMs = performance.now();
    await faulty.read(new Uint8Array(4096), offsetBytes);
    return performance.now() - startMs;
  };
  assert.ok(await timed(4096) >= 140);
  assert.ok(await timed(12288) < 100);
  assert.equal(faulty.counters.slowBlockReads, 1);
});

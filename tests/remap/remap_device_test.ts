/**
 * The remap engine against the product's data rules.
 *
 * Method: a setup over memory devices with the main disk behind the fault
 * layer; each test breaks chosen sectors, drives the engine as a client would,
 * and checks the bytes, the remap table, the pending list and the events.
 */

import assert from "node:assert/strict";
import { COPY_SECTORS, SECTOR_BYTES } from "../../mod/constants.ts";
import type { DeviceIoError } from "../../mod/errors.ts";
import { SpareStore } from "../../mod/metadata/spare_store.ts";
import { makeHarness, pattern, readBack } from "./harness.ts";

const KIB = 1024;

Deno.test("RemapDevice passes reads and writes through to the main disk when nothing fails", async () => {
  const { engine, main } = await makeHarness();
  const data = pattern(64 * KIB, 1);
  await engine.write(data, 8 * KIB);
  assert.deepEqual(await readBack(engine, 8 * KIB, 64 * KIB), data);
  assert.deepEqual(main.peek({ offsetBytes: 8 * KIB, lengthBytes: 64 * KIB }), data);
  assert.equal(engine.remapCount, 0);
  await engine.close();
});

Deno.test("RemapDevice.write() remaps a block whose write fails and reads it back from the spare", async () => {
  const { engine, faulty, main, events } = await makeHarness();
  faulty.setBad({ offsetBytes: 12 * KIB, lengthBytes: 512 }, "write");
  const data = pattern(16 * KIB, 2);
  await engine.write(data, 8 * KIB);
  assert.equal(engine.remapCount, 1);
  assert.deepEqual(engine.lookup(3), { spareIndex: 0, slotIndex: 0 });
  assert.deepEqual(await readBack(engine, 8 * KIB, 16 * KIB), data);
  // The block's data lives on the spare; the main disk never got it.
  assert.notDeepEqual(
    main.peek({ offsetBytes: 12 * KIB, lengthBytes: 4 * KIB }),
    data.subarray(4 * KIB, 8 * KIB),
  );
  assert.deepEqual(events.filter((event) => event.type === "remap"), [
    { type: "remap", blockIndex: 3, spareIndex: 0, slotIndex: 0 },
  ]);
  await engine.close();
});

Deno.test("RemapDevice.write() of part of a failing block keeps the rest of the block (read-modify-write)", async () => {
  const { engine, faulty } = await makeHarness();
  const old = pattern(4 * KIB, 3);
  await engine.write(old, 20 * KIB);
  faulty.setBad({ offsetBytes: 21 * KIB, lengthBytes: 512 }, "write");
  const patch = pattern(512, 4);
  await engine.write(patch, 21 * KIB);
  const expected = old.slice();
  expected.set(patch, KIB);
  assert.equal(engine.remapCount, 1);
  assert.deepEqual(await readBack(engine, 20 * KIB, 4 * KIB), expected);
  await engine.close();
});

Deno.test("RemapDevice.write() of part of a block whose rest is unreadable fails with EIO and invents nothing", async () => {
  const { engine, faulty } = await makeHarness();
  faulty.setBad({ offsetBytes: 28 * KIB, lengthBytes: 4 * KIB }, "both");
  await assert.rejects(
    engine.write(pattern(512, 5), 29 * KIB),
    (error: DeviceIoError) => error.code === "EIO",
  );
  assert.equal(engine.remapCount, 0);
  assert.deepEqual(engine.pendingBlocks, [7]);
  // A whole-block write needs nothing from the bad sectors: it is remapped.
  const whole = pattern(4 * KIB, 6);
  await engine.write(whole, 28 * KIB);
  assert.equal(engine.remapCount, 1);
  assert.deepEqual(engine.pendingBlocks, []);
  assert.deepEqual(await readBack(engine, 28 * KIB, 4 * KIB), whole);
  await engine.close();
});

Deno.test("RemapDevice.read() of an unreadable block is EIO, never zeros, and the block becomes pending", async () => {
  const { engine, faulty, events } = await makeHarness({ readRetries: 2 });
  await engine.write(pattern(8 * KIB, 7), 32 * KIB);
  faulty.setBad({ offsetBytes: 36 * KIB + 512, lengthBytes: 512 }, "read");
  await assert.rejects(
    readBack(engine, 32 * KIB, 8 * KIB),
    (error: DeviceIoError) => error.code === "EIO",
  );
  assert.deepEqual(engine.pendingBlocks, [9]);
  assert.ok(events.some((event) => event.type === "pending" && event.blockIndex === 9));
  // The readable block next to it still reads.
  assert.deepEqual(
    await readBack(engine, 32 * KIB, 4 * KIB),
    pattern(8 * KIB, 7).subarray(0, 4 * KIB),
  );
  // The next write to the pending block is remapped even though the main disk would accept it.
  const fresh = pattern(4 * KIB, 8);
  await engine.write(fresh, 36 * KIB);
  assert.deepEqual(engine.lookup(9), { spareIndex: 0, slotIndex: 0 });
  assert.deepEqual(engine.pendingBlocks, []);
  assert.deepEqual(await readBack(engine, 36 * KIB, 4 * KIB), fresh);
  await engine.close();
});

Deno.test("RemapDevice splits requests that straddle remapped and normal blocks", async () => {
  const { engine, faulty } = await makeHarness();
  for (const blockIndex of [41, 43, 44]) {
    faulty.setBad({ offsetBytes: blockIndex * 4 * KIB, lengthBytes: 512 }, "write");
  }
  const data = pattern(24 * KIB, 9);
  await engine.write(data, 40 * 4 * KIB + 2 * KIB);
  assert.equal(engine.remapCount, 3, "blocks 41, 43 and 44");
  assert.deepEqual(await readBack(engine, 40 * 4 * KIB + 2 * KIB, 24 * KIB), data);
  // A second write across the same range goes to slots and main alike.
  const again = pattern(24 * KIB, 10);
  await engine.write(again, 40 * 4 * KIB + 2 * KIB);
  assert.equal(engine.remapCount, 3);
  assert.deepEqual(await readBack(engine, 40 * 4 * KIB + 2 * KIB, 24 * KIB), again);
  await engine.close();
});

Deno.test("RemapDevice moves to the next spare when a spare's write fails, and marks it failed", async () => {
  const { engine, faulty, faultySpares, events } = await makeHarness({ spareCount: 2 });
  faulty.setBad({ offsetBytes: 0, lengthBytes: 512 }, "write");
  const layout = engine.spares[0]!.layout;
  faultySpares[0]!.setBad(
    { offsetBytes: layout.dataOffsetBytes, lengthBytes: layout.blockBytes },
    "write",
  );
  const data = pattern(4 * KIB, 11);
  await engine.write(data, 0);
  assert.deepEqual(engine.lookup(0), { spareIndex: 1, slotIndex: 0 });
  assert.deepEqual(await readBack(engine, 0, 4 * KIB), data);
  assert.equal(engine.spares[0]!.state, "failed");
  assert.ok(events.some((event) => event.type === "spare-failed" && event.spareIndex === 0));
  await engine.close();
});

Deno.test("RemapDevice with every slot used fails the write with EIO, degrades, and keeps acknowledged data", async () => {
  const { engine, faulty, events } = await makeHarness({ spareSlots: 16 });
  const slotCount = engine.spares[0]!.layout.slotCount;
  faulty.setBad({ offsetBytes: 0, lengthBytes: (slotCount + 1) * 4 * KIB }, "write");
  const written: Uint8Array[] = [];
  for (let blockIndex = 0; blockIndex < slotCount; blockIndex++) {
    written.push(pattern(4 * KIB, 100 + blockIndex));
    await engine.write(written[blockIndex]!, blockIndex * 4 * KIB);
  }
  await assert.rejects(engine.write(pattern(4 * KIB, 99), slotCount * 4 * KIB), /add a spare/);
  assert.equal(engine.degraded, true);
  assert.ok(events.some((event) => event.type === "degraded"));
  for (let blockIndex = 0; blockIndex < slotCount; blockIndex++) {
    assert.deepEqual(await readBack(engine, blockIndex * 4 * KIB, 4 * KIB), written[blockIndex]);
  }
  await engine.close();
});

Deno.test("RemapDevice zeroes and trims the slot of a remapped block, so stale data never resurfaces", async () => {
  const { engine, faulty } = await makeHarness();
  faulty.setBad({ offsetBytes: 48 * KIB, lengthBytes: 8 * KIB }, "write");
  await engine.write(pattern(8 * KIB, 12), 48 * KIB);
  assert.equal(engine.remapCount, 2);
  await engine.writeZeroes({ offsetBytes: 48 * KIB, lengthBytes: 4 * KIB });
  await engine.discard({ offsetBytes: 52 * KIB, lengthBytes: 4 * KIB });
  assert.deepEqual(await readBack(engine, 48 * KIB, 8 * KIB), new Uint8Array(8 * KIB));
  await engine.close();
});

Deno.test("RemapDevice write-zeroes on a failing block remaps it with zeros", async () => {
  const { engine, faulty } = await makeHarness();
  await engine.write(pattern(4 * KIB, 13), 60 * KIB);
  faulty.setBad({ offsetBytes: 60 * KIB, lengthBytes: 4 * KIB }, "write");
  await engine.writeZeroes({ offsetBytes: 60 * KIB, lengthBytes: 4 * KIB });
  assert.equal(engine.remapCount, 1);
  assert.deepEqual(await readBack(engine, 60 * KIB, 4 * KIB), new Uint8Array(4 * KIB));
  await engine.close();
});

Deno.test("RemapDevice keeps every concurrent write to the sectors of one failing block", async () => {
  const { engine, faulty } = await makeHarness();
  faulty.setBad({ offsetBytes: 64 * KIB, lengthBytes: 4 * KIB }, "write");
  const pieces = Array.from({ length: 8 }, (_, i) => pattern(512, 200 + i));
  await Promise.all(pieces.map((piece, i) => engine.write(piece, 64 * KIB + i * 512)));
  const expected = new Uint8Array(4 * KIB);
  pieces.forEach((piece, i) => expected.set(piece, i * 512));
  assert.equal(engine.remapCount, 1);
  assert.deepEqual(await readBack(engine, 64 * KIB, 4 * KIB), expected);
  await engine.close();
});

Deno.test("RemapDevice remaps and pending blocks survive a restart", async () => {
  const harness = await makeHarness();
  const { engine, faulty } = harness;
  faulty.setBad({ offsetBytes: 72 * KIB, lengthBytes: 4 * KIB }, "write");
  faulty.setBad({ offsetBytes: 80 * KIB, lengthBytes: 4 * KIB }, "read");
  const data = pattern(4 * KIB, 14);
  await engine.write(data, 72 * KIB);
  await assert.rejects(readBack(engine, 80 * KIB, 4 * KIB));
  await engine.persistState();
  const restarted = await harness.reopen();
  assert.deepEqual(restarted.lookup(18), { spareIndex: 0, slotIndex: 0 });
  assert.deepEqual(restarted.pendingBlocks, [20]);
  assert.deepEqual(await readBack(restarted, 72 * KIB, 4 * KIB), data);
});

Deno.test("RemapDevice.repairMetadata() between remaps leaves every copy current; a spare it cannot write fails", async () => {
  const { engine, faulty, spares, faultySpares, events } = await makeHarness({ spareCount: 2 });
  const copyAt = (copyIndex: number) => COPY_SECTORS[copyIndex]! * SECTOR_BYTES;
  await spares[0]!.write(new Uint8Array(SECTOR_BYTES).fill(0xa5), copyAt(2));
  await spares[1]!.write(new Uint8Array(SECTOR_BYTES).fill(0xa5), copyAt(0));
  // Slow spare writes, so a repair that ran beside a metadata update would overlap it.
  for (const spare of spares) {
    const write = spare.write.bind(spare);
    spare.write = async (data, offsetBytes, options) => {
      await new Promise((resolve) => setTimeout(resolve, 2));
      return await write(data, offsetBytes, options);
    };
  }
  // Remaps (log writes, setup-state writes) and repairs run at once; the engine orders them.
  const blocks = [3, 17, 40, 41, 90];
  faulty.addBadBlocks(blocks.map((block) => block * 8), "write");
  const results = await Promise.all([
    engine.repairMetadata(),
    ...blocks.map((block) => engine.write(pattern(4 * KIB, block), block * 4 * KIB)),
    engine.persistState(),
    engine.repairMetadata(),
  ]);
  const first = results[0] as Awaited<ReturnType<typeof engine.repairMetadata>>;
  assert.deepEqual(
    first.map((repair) => repair.copies.filter((copy) => copy.repaired).map((c) => c.copyIndex)),
    [[2], [0]],
  );
  // A repair asked while the setup state is being written to every copy waits for that write.
  const marking = engine.markServing({
    pid: Deno.pid,
    host: "test",
    bootId: "test",
    processStartTicks: 1,
    startedMs: 1,
  });
  await new Promise((resolve) => setTimeout(resolve, 5));
  await Promise.all([marking, engine.repairMetadata()]);
  for (const spare of spares) {
    const { report } = await SpareStore.open(spare, { repair: false });
    assert.equal(report.validCopies, 5, spare.name);
    assert.ok(report.copies.every((copy) => !copy.stale), `${spare.name}: every copy is current`);
  }
  for (const block of blocks) {
    assert.deepEqual(await readBack(engine, block * 4 * KIB, 4 * KIB), pattern(4 * KIB, block));
  }

  // A spare whose copy cannot be written is failed, as for any metadata write.
  await spares[1]!.write(new Uint8Array(SECTOR_BYTES).fill(0xa5), copyAt(4));
  faultySpares[1]!.setBad({ offsetBytes: copyAt(4), lengthBytes: SECTOR_BYTES }, "write");
  const second = await engine.repairMetadata();
  assert.deepEqual(second.map((repair) => repair.error === undefined), [true, false]);
  assert.equal(engine.spares[1]!.state, "failed");
  assert.ok(events.some((event) => event.type === "spare-failed" && event.spareIndex === 1));
  await engine.close();
});

/**
 * Goal: `spare add` and `spare remove` at the engine, while it serves: a
 * spare joins (checked as `create` checks one, listed in every spare's
 * metadata, taking slots), and a spare leaves only after every block on it
 * moved (read back and compared), with a client write racing the migration
 * winning, a refusal that says how much room is missing, and a removal that
 * resumes after a power cut.
 * Method: the real engine over memory devices, each behind the fault layer
 * (the harness's); spares are reopened from their devices, or from their
 * crash images (`MemoryDevice.crash`: only what was flushed), as `serve`
 * reopens them after a restart or `kill -9`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkJoiningSpare } from "../../mod/assembly/add_spare.ts";
import { assembleSetup, openSpares } from "../../mod/assembly/assemble.ts";
import type { Device } from "../../mod/device/device.ts";
import { MemoryDevice } from "../../mod/device/memory_device.ts";
import { NoValidCopyError, RefusedError, UsageError } from "../../mod/errors.ts";
import { FaultyDevice } from "../../mod/fault/faulty_device.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import { SpareStore } from "../../mod/metadata/spare_store.ts";
import type { RemapDevice, RemapEvent } from "../../mod/remap/remap_device.ts";
import { type Harness, makeHarness, memoryIdentity, pattern, readBack } from "./harness.ts";

const BLOCK = 4096;

/** A two-spare harness with `count` blocks remapped (spare 0 has 16 slots, the rest go to spare 1). */
async function remappedSetup(count: number, options: { spareSlots?: number } = {}) {
  const harness = await makeHarness({ spareCount: 2, spareSlots: options.spareSlots ?? 16 });
  const blocks = Array.from({ length: count }, (_, i) => 10 + i * 3);
  for (const blockIndex of blocks) {
    harness.faulty.setBad({ offsetBytes: blockIndex * BLOCK, lengthBytes: BLOCK }, "write");
    await harness.engine.write(pattern(BLOCK, blockIndex + 1), blockIndex * BLOCK);
  }
  return { harness, blocks };
}

/** A fresh spare behind the fault layer, `slots` slots beyond the minimum. */
function newSpare(name: string, extraSlots: number) {
  const memory = new MemoryDevice(name, minimumSpareBytes(BLOCK) + extraSlots * BLOCK + (2 << 20));
  return { memory, device: new FaultyDevice(memory, { blockBytes: 512 }) };
}

/** Adds a device as `spare add` does, after its checks. */
async function addSpare(engine: RemapDevice, device: Device): Promise<number> {
  const layout = await checkJoiningSpare({
    setupName: engine.name,
    blockBytes: BLOCK,
    device,
    path: device.name,
    members: engine.spares.map((spare) => ({
      index: spare.index,
      state: spare.state,
      layout: spare.layout,
      slotsUsed: engine.slotsUsedOf(spare.index),
    })),
  });
  return await engine.addSpare({ device, path: device.name, layout });
}

/**
 * Assembles the setup again from the devices' flushed images, as `serve`
 * does at a start after a stop (everything flushed) or a crash.
 */
async function reopen(
  harness: Harness,
  spares: MemoryDevice[],
  events: RemapEvent[] = [],
  faults: (spares: FaultyDevice[]) => void = () => {},
) {
  const main = harness.main.crash();
  const faulty = spares.map((spare) => new FaultyDevice(spare.crash(), { blockBytes: 512 }));
  faults(faulty);
  return await assembleSetup(
    { device: new FaultyDevice(main, { blockBytes: 512 }), identity: memoryIdentity(main) },
    await openSpares(faulty),
    { metadataDelayMs: 0, readRetries: 1, onEvent: (event) => events.push(event) },
  );
}

/** Waits until the engine's migration ended. */
async function migrationEnd(engine: RemapDevice) {
  for (let waitedMs = 0; waitedMs < 20_000; waitedMs += 5) {
    const migration = engine.migration;
    if (migration !== undefined && migration.state !== "running") return migration;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error("the migration did not end in 20 s");
}

async function assertBlocks(engine: RemapDevice, expected: Map<number, Uint8Array>) {
  for (const [blockIndex, data] of expected) {
    assert.deepEqual(
      await readBack(engine, blockIndex * BLOCK, BLOCK),
      data,
      `block ${blockIndex}`,
    );
  }
}

Deno.test("a spare added while serving joins every spare's metadata, knows every table, and takes slots", async () => {
  const { harness, blocks } = await remappedSetup(30, { spareSlots: 16 });
  const { engine, events } = harness;
  // Spare 0 (16 slots) and spare 1 (16) hold 30: two slots left.
  const added = newSpare("spare2", 64);
  const index = await addSpare(engine, added.device);
  assert.equal(index, 2);
  assert.ok(events.some((event) => event.type === "spare-added" && event.spareIndex === 2));
  const expected = new Map(blocks.map((block) => [block, pattern(BLOCK, block + 1)]));
  // Past the old spares' room: new remaps go to the new spare.
  const more = Array.from({ length: 10 }, (_, i) => 400 + i);
  for (const blockIndex of more) {
    harness.faulty.setBad({ offsetBytes: blockIndex * BLOCK, lengthBytes: BLOCK }, "write");
    await engine.write(pattern(BLOCK, blockIndex + 1), blockIndex * BLOCK);
    expected.set(blockIndex, pattern(BLOCK, blockIndex + 1));
  }
  assert.equal(engine.remaps().filter((remap) => remap.spareIndex === 2).length, 8);
  await assertBlocks(engine, expected);
  await engine.flush();
  await engine.persistState();
  // Every spare's metadata lists it, and each alone knows every spare's table.
  const tables = [0, 1, 2].map((spareIndex) =>
    engine.remaps().filter((remap) => remap.spareIndex === spareIndex).length
  );
  for (const memory of [...harness.spares, added.memory]) {
    const { store } = await SpareStore.open(memory.crash(), { repair: false });
    assert.equal(store.payload.spares.length, 3, memory.name);
    assert.equal(store.payload.spares[2]!.state, "active");
    assert.deepEqual([0, 1, 2].map((i) => store.slotsOf(i).length), tables, memory.name);
  }
  await engine.close();
  const reopened = await reopen(harness, [...harness.spares, added.memory]);
  assert.equal(reopened.spares.length, 3);
  await assertBlocks(reopened, expected);
  await reopened.close();
});

Deno.test("spare add refuses what create refuses: a device holding data, one too small", async () => {
  const { harness } = await remappedSetup(2);
  const { engine } = harness;
  const holdingData = newSpare("ext4", 64);
  // An ext4 superblock magic at 1080.
  await holdingData.memory.write(new Uint8Array([0x53, 0xef]), 1080);
  await assert.rejects(
    addSpare(engine, holdingData.device),
    (error: Error) => error instanceof RefusedError && /holds .*--force/.test(error.message),
  );
  const tiny = new MemoryDevice("tiny", 1 << 20);
  await assert.rejects(
    addSpare(engine, tiny),
    (error: Error) => error instanceof UsageError && /too small/.test(error.message),
  );
  assert.equal(engine.spares.length, 2, "nothing joined");
  assert.deepEqual(await readBack(tiny, 0, 4096), new Uint8Array(4096), "nothing was written");
  await engine.close();
});

Deno.test("spare remove moves every block (read back and compared) to the others, then drops the spare everywhere", async () => {
  const { harness, blocks } = await remappedSetup(12, { spareSlots: 64 });
  const { engine, events } = harness;
  // Fill-first: all 12 on spare 0.
  assert.ok(blocks.every((block) => engine.lookup(block)?.spareIndex === 0));
  const started = await engine.removeSpare(0);
  assert.equal(started.blocksTotal, 12);
  const ended = await migrationEnd(engine);
  assert.equal(ended.state, "done", ended.error);
  assert.equal(ended.blocksMoved, 12);
  assert.equal(engine.spares[0]!.state, "removed");
  assert.ok(blocks.every((block) => engine.lookup(block)?.spareIndex === 1));
  const expected = new Map(blocks.map((block) => [block, pattern(BLOCK, block + 1)]));
  await assertBlocks(engine, expected);
  assert.deepEqual(
    events.filter((event) => event.type.startsWith("spare-")).map((event) => event.type),
    ["spare-draining", "spare-removed"],
  );
  // The last active spare stays.
  await assert.rejects(
    engine.removeSpare(1),
    (error: Error) => error instanceof RefusedError && /the last active spare/.test(error.message),
  );
  // New remaps never go to it.
  harness.faulty.setBad({ offsetBytes: 999 * BLOCK, lengthBytes: BLOCK }, "write");
  await engine.write(pattern(BLOCK, 5), 999 * BLOCK);
  assert.equal(engine.lookup(999)?.spareIndex, 1);
  expected.set(999, pattern(BLOCK, 5));
  await engine.close();
  // Its metadata is erased; the other lists it removed; the setup opens without it, not degraded.
  await assert.rejects(
    SpareStore.open(harness.spares[0]!.crash(), { repair: false }),
    NoValidCopyError,
  );
  const { store } = await SpareStore.open(harness.spares[1]!.crash(), { repair: false });
  assert.equal(store.payload.spares[0]!.state, "removed");
  const reopened = await reopen(harness, [harness.spares[1]!]);
  assert.equal(reopened.degraded, false);
  assert.equal(reopened.spares[0]!.state, "removed");
  await assertBlocks(reopened, expected);
  await reopened.close();
});

Deno.test("spare remove is refused, saying how much room is missing, when the others lack free slots", async () => {
  // Spare 0 holds 16, spare 1 holds 4 and has 12 free: 4 slots are missing.
  const { harness } = await remappedSetup(20, { spareSlots: 16 });
  const { engine } = harness;
  await assert.rejects(engine.removeSpare(0), (error: Error) =>
    error instanceof RefusedError &&
    /16 remapped blocks need 16 free slots on the other spares, which have 12: 4 slots \(16384 bytes\) are missing/
      .test(error.message));
  assert.equal(engine.spares[0]!.state, "active", "nothing was changed");
  assert.equal(engine.migration, undefined);
  // With a spare added, the same removal goes through: spare replace.
  const added = newSpare("spare2", 64);
  await addSpare(engine, added.device);
  await engine.removeSpare(0);
  assert.equal((await migrationEnd(engine)).state, "done");
  await engine.close();
});

Deno.test("a client write racing the migration wins: never the old data over a newer write", async () => {
  const { harness, blocks } = await remappedSetup(40, { spareSlots: 64 });
  const { engine } = harness;
  const expected = new Map(blocks.map((block) => [block, pattern(BLOCK, block + 1)]));
  await engine.removeSpare(0);
  // While the migration runs: whole-block and partial writes to blocks on the draining spare.
  const racing = blocks.map(async (blockIndex, i) => {
    if (i % 2 === 0) {
      const data = pattern(BLOCK, 10_000 + blockIndex);
      await engine.write(data, blockIndex * BLOCK);
      expected.set(blockIndex, data);
    } else {
      const piece = pattern(512, 20_000 + blockIndex);
      await engine.write(piece, blockIndex * BLOCK + 1536);
      const data = expected.get(blockIndex)!.slice();
      data.set(piece, 1536);
      expected.set(blockIndex, data);
    }
  });
  await Promise.all(racing);
  const ended = await migrationEnd(engine);
  assert.equal(ended.state, "done", ended.error);
  assert.ok(blocks.every((block) => engine.lookup(block)?.spareIndex === 1));
  await assertBlocks(engine, expected);
  await engine.close();
  const reopened = await reopen(harness, [harness.spares[1]!]);
  await assertBlocks(reopened, expected);
  await reopened.close();
});

Deno.test("a removal cut by a power loss at any point resumes on the next open and completes", async () => {
  const { harness, blocks } = await remappedSetup(40, { spareSlots: 64 });
  const { engine } = harness;
  await engine.flush();
  const expected = new Map(blocks.map((block) => [block, pattern(BLOCK, block + 1)]));
  // Crash images taken while the migration runs: at each, only what was flushed survives.
  const images: MemoryDevice[][] = [];
  const snapshot = () => images.push(harness.spares.map((spare) => spare.durableImage()));
  const taking = setInterval(snapshot, 0);
  await engine.removeSpare(0);
  snapshot();
  const ended = await migrationEnd(engine);
  clearInterval(taking);
  assert.equal(ended.state, "done", ended.error);
  await engine.close();
  assert.ok(images.length >= 2, `${images.length} images`);
  let resumed = 0;
  for (const [i, image] of images.entries()) {
    // A spare whose metadata was already erased is no longer given, as discovery would not find it.
    const given = [];
    for (const memory of image) {
      if (await SpareStore.open(memory.crash(), { repair: false }).then(() => true, () => false)) {
        given.push(memory);
      }
    }
    const events: RemapEvent[] = [];
    const reopened = await reopen(harness, given, events);
    if (reopened.spares[0]!.state === "draining") {
      resumed++;
      assert.equal((await migrationEnd(reopened)).state, "done", `image ${i}`);
    }
    assert.ok(["removed", "active"].includes(reopened.spares[0]!.state), `image ${i}`);
    await assertBlocks(reopened, expected);
    await reopened.close();
  }
  assert.ok(resumed > 0, "some image caught the migration under way");
});

Deno.test("a slot that cannot be read on a failed spare: EIO, the block pending (kept over a restart), its next write moves it", async () => {
  const { harness, blocks } = await remappedSetup(6, { spareSlots: 64 });
  const { engine, events } = harness;
  const [unreadable, other] = [blocks[1]!, blocks[2]!];
  const slotOf = (blockIndex: number) => ({
    offsetBytes: engine.spares[0]!.layout.dataOffsetBytes +
      engine.lookup(blockIndex)!.slotIndex * BLOCK,
    lengthBytes: BLOCK,
  });
  // The spare fails on a write; one of its slots cannot be read either.
  harness.faultySpares[0]!.setBad(slotOf(unreadable), "both");
  harness.faultySpares[0]!.setBad(slotOf(blocks[0]!), "write");
  await engine.write(pattern(BLOCK, 77), blocks[0]! * BLOCK);
  assert.equal(engine.spares[0]!.state, "failed");
  await engine.evacuate();
  assert.equal(engine.isPending(unreadable), false, "not before a client read found it");
  await assert.rejects(readBack(engine, unreadable * BLOCK, BLOCK), /EIO/);
  assert.equal(engine.isPending(unreadable), true);
  assert.ok(events.some((event) => event.type === "pending" && event.blockIndex === unreadable));
  assert.equal(engine.isPending(other), false);
  // Never invented: a partial write needs the rest of the block, which is unreadable.
  await assert.rejects(engine.write(pattern(512, 5), unreadable * BLOCK), /EIO/);
  await engine.persistState();
  const unreadableSlot = slotOf(unreadable);
  await engine.close();
  // The disk is as bad after the restart.
  const reopened = await reopen(harness, harness.spares, [], (spares) => {
    spares[0]!.setBad(unreadableSlot, "both");
  });
  assert.equal(reopened.isPending(unreadable), true, "the pending list keeps it");
  await assert.rejects(readBack(reopened, unreadable * BLOCK, BLOCK), /EIO/);
  await reopened.write(pattern(BLOCK, 88), unreadable * BLOCK);
  assert.equal(reopened.isPending(unreadable), false);
  assert.equal(reopened.lookup(unreadable)?.spareIndex, 1);
  assert.deepEqual(await readBack(reopened, unreadable * BLOCK, BLOCK), pattern(BLOCK, 88));
  assert.deepEqual(await readBack(reopened, other * BLOCK, BLOCK), pattern(BLOCK, other + 1));
  await reopened.close();
});

/**
 * Goal: format version 2's promise at the engine: every spare knows every
 * spare's remaps, so a setup opens with a spare missing, serves EIO for the
 * blocks on it (never the main disk's stale copy) and everything else
 * normally, and takes the spare back up to date when it returns.
 * Method: the real engine over memory devices, the main disk behind the fault
 * layer (blocks that fail writes are remapped); spare 0 has 16 slots, so
 * later remaps land on spare 1. Reopening with a subset of the spares is what
 * `serve` does with the spares it is given.
 *
 * @module
 */

import assert from "node:assert/strict";
import { assembleSetup, openSpares } from "../../mod/assembly/assemble.ts";
import { SpareStore } from "../../mod/metadata/spare_store.ts";
import type { RemapEvent } from "../../mod/remap/remap_device.ts";
import { isDeviceGone } from "../../mod/errors.ts";
import { makeHarness, memoryIdentity, pattern, readBack } from "./harness.ts";

const BLOCK = 4096;

/** A two-spare setup with 24 remapped blocks (16 on spare 0, 8 on spare 1) and 4 plain ones. */
async function twoSpareSetup() {
  const harness = await makeHarness({ spareCount: 2, spareSlots: 16 });
  const remapped = Array.from({ length: 24 }, (_, i) => 10 + i * 3);
  for (const blockIndex of remapped) {
    harness.faulty.setBad({ offsetBytes: blockIndex * BLOCK, lengthBytes: BLOCK }, "write");
  }
  const plain = [1, 2, 500, 900];
  for (const blockIndex of [...remapped, ...plain]) {
    await harness.engine.write(pattern(BLOCK, blockIndex + 1), blockIndex * BLOCK);
  }
  const onSpare = (spareIndex: number) =>
    harness.engine.remaps().filter((remap) => remap.spareIndex === spareIndex)
      .map((remap) => remap.blockIndex);
  assert.equal(onSpare(0).length, 16);
  assert.equal(onSpare(1).length, 8);
  const layout = { onSpare0: onSpare(0), onSpare1: onSpare(1), plain };
  // Stopped as a restart stops it: everything durable, the devices kept for the next open.
  await harness.engine.flush();
  await harness.engine.persistState();
  // The main disk keeps stale data where remapped blocks were: make it
  // recognisable, so a read that fell through to it would show.
  harness.faulty.clearBadBlocks();
  for (const blockIndex of remapped) {
    await harness.main.write(new Uint8Array(BLOCK).fill(0xee), blockIndex * BLOCK);
  }
  return { harness, ...layout };
}

Deno.test("each spare alone knows where every remapped block lives", async () => {
  const { harness, onSpare0, onSpare1 } = await twoSpareSetup();
  for (const spareIndex of [0, 1]) {
    const { store } = await SpareStore.open(harness.spares[spareIndex]!.crash(), {
      repair: false,
    });
    assert.deepEqual([...store.slotsOf(0)].sort((a, b) => a - b), onSpare0, `spare ${spareIndex}`);
    assert.deepEqual([...store.slotsOf(1)].sort((a, b) => a - b), onSpare1, `spare ${spareIndex}`);
  }
});

Deno.test("a setup opened with a spare missing: EIO for its blocks, the rest served, degraded", async () => {
  const { harness, onSpare0, onSpare1, plain } = await twoSpareSetup();
  for (const [present, missing] of [[0, 1], [1, 0]] as const) {
    const events: RemapEvent[] = [];
    const opened = await openSpares([harness.faultySpares[present]!], { allowMissing: true });
    assert.deepEqual(opened.missing.map((record) => record.index), [missing]);
    const engine = await assembleSetup(
      { device: harness.faulty, identity: memoryIdentity(harness.main) },
      opened,
      { metadataDelayMs: 0, onEvent: (event) => events.push(event) },
    );
    assert.equal(engine.degraded, true);
    const failed = events.find((event) => event.type === "spare-failed");
    assert.ok(failed && failed.type === "spare-failed" && failed.spareIndex === missing);
    assert.match(failed.reason, new RegExp(engine.spares[missing]!.device.name.slice(0, 8)));
    assert.equal(engine.spares[missing]!.state, "missing");
    const unavailable = missing === 1 ? onSpare1 : onSpare0;
    const available = missing === 1 ? onSpare0 : onSpare1;
    for (const blockIndex of unavailable) {
      await assert.rejects(
        readBack(engine, blockIndex * BLOCK, BLOCK),
        (error: Error) => /EIO/.test(error.message) && !isDeviceGone(error),
        `block ${blockIndex} on the missing spare`,
      );
      await assert.rejects(engine.write(pattern(BLOCK, 7), blockIndex * BLOCK), /EIO/);
    }
    for (const blockIndex of [...available, ...plain]) {
      assert.deepEqual(
        await readBack(engine, blockIndex * BLOCK, BLOCK),
        pattern(BLOCK, blockIndex + 1),
      );
    }
    await engine.write(pattern(BLOCK, 4242), 700 * BLOCK);
    assert.deepEqual(await readBack(engine, 700 * BLOCK, BLOCK), pattern(BLOCK, 4242));
    await engine.persistState();
  }
});

Deno.test("a spare back after the setup ran without it is brought up to date and serves again", async () => {
  const { harness, onSpare0, onSpare1 } = await twoSpareSetup();
  // Run without spare 0: spare 1 takes the new remaps.
  const events: RemapEvent[] = [];
  const degraded = await assembleSetup(
    { device: harness.faulty, identity: memoryIdentity(harness.main) },
    await openSpares([harness.faultySpares[1]!], { allowMissing: true }),
    { metadataDelayMs: 0, onEvent: (event) => events.push(event) },
  );
  const added = [800, 801];
  for (const blockIndex of added) {
    harness.faulty.setBad({ offsetBytes: blockIndex * BLOCK, lengthBytes: BLOCK }, "write");
    await degraded.write(pattern(BLOCK, blockIndex + 1), blockIndex * BLOCK);
    assert.equal(degraded.lookup(blockIndex)?.spareIndex, 1);
  }
  await degraded.flush();
  await degraded.persistState();

  // Both back: spare 0 learns the remaps it missed and is active again.
  const opened = await openSpares(harness.faultySpares);
  const engine = await assembleSetup(
    { device: harness.faulty, identity: memoryIdentity(harness.main) },
    opened,
    { metadataDelayMs: 0 },
  );
  assert.deepEqual(engine.spares.map((spare) => spare.state), ["active", "active"]);
  for (const blockIndex of [...onSpare0, ...onSpare1, ...added]) {
    assert.deepEqual(
      await readBack(engine, blockIndex * BLOCK, BLOCK),
      pattern(BLOCK, blockIndex + 1),
    );
  }
  await engine.flush();
  const { store } = await SpareStore.open(harness.spares[0]!.crash(), { repair: false });
  assert.deepEqual([...store.slotsOf(1)].slice(-2), added, "spare 0 alone knows them now");
});

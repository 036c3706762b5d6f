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
import { slotOffsetBytes } from "../../mod/metadata/spare_layout.ts";
import { CrashDevice, PowerCut } from "../sim/crash_device.ts";

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
      // A partial write needs the rest of the block, which is on the missing spare.
      await assert.rejects(engine.write(pattern(512, 7), blockIndex * BLOCK), /EIO/);
    }
    // A whole-block write moves the block to the spare that is there. Only in
    // the last round: the spare missing now would not know of the move, and
    // opening it alone later would serve the old copy (the limit of format 2).
    if (present === 1) {
      const moved = unavailable[0]!;
      await engine.write(pattern(BLOCK, 77), moved * BLOCK);
      assert.equal(engine.lookup(moved)?.spareIndex, present);
      assert.deepEqual(await readBack(engine, moved * BLOCK, BLOCK), pattern(BLOCK, 77));
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

/** A one-spare-failing setup: 10 blocks remapped to spare 0 of 2, patterns written. */
async function blocksOnSpare0() {
  const harness = await makeHarness({ spareCount: 2 });
  const blocks = Array.from({ length: 10 }, (_, i) => 40 + i * 2);
  for (const blockIndex of blocks) {
    harness.faulty.setBad({ offsetBytes: blockIndex * BLOCK, lengthBytes: BLOCK }, "write");
    await harness.engine.write(pattern(BLOCK, blockIndex + 1), blockIndex * BLOCK);
    assert.equal(harness.engine.lookup(blockIndex)?.spareIndex, 0);
  }
  const slotRange = (blockIndex: number) => {
    const location = harness.engine.lookup(blockIndex)!;
    return {
      offsetBytes: slotOffsetBytes(harness.engine.spares[0]!.layout, location.slotIndex),
      lengthBytes: BLOCK,
    };
  };
  return { harness, blocks, slotRange };
}

Deno.test("a write to a slot of a spare whose writes fail is remapped again, and the rest is evacuated", async () => {
  const { harness, blocks, slotRange } = await blocksOnSpare0();
  const { engine, events } = harness;
  // Spare 0's slots stop taking writes (reads still work), as a disk going bad.
  for (const blockIndex of blocks) harness.faultySpares[0]!.setBad(slotRange(blockIndex), "write");
  const target = blocks[0]!;
  await engine.write(pattern(BLOCK, 1000), target * BLOCK);
  assert.equal(engine.spares[0]!.state, "failed");
  assert.equal(engine.lookup(target)?.spareIndex, 1);
  assert.deepEqual(await readBack(engine, target * BLOCK, BLOCK), pattern(BLOCK, 1000));
  assert.ok(events.some((event) => event.type === "spare-failed" && event.spareIndex === 0));
  assert.equal(engine.degraded, true);

  // The failure started the evacuation on its own; this one finds what is left, if anything.
  assert.equal((await engine.evacuate()).failed, 0);
  for (const blockIndex of blocks) {
    assert.equal(engine.lookup(blockIndex)?.spareIndex, 1, `block ${blockIndex} moved`);
    const expected = blockIndex === target ? pattern(BLOCK, 1000) : pattern(BLOCK, blockIndex + 1);
    assert.deepEqual(await readBack(engine, blockIndex * BLOCK, BLOCK), expected);
  }
  // The moves are durable: after a restart every block is on spare 1, with its data.
  await engine.flush();
  const reopened = await harness.reopen();
  assert.equal(reopened.spares[0]!.state, "failed");
  for (const blockIndex of blocks) {
    assert.equal(reopened.lookup(blockIndex)?.spareIndex, 1);
    const expected = blockIndex === target ? pattern(BLOCK, 1000) : pattern(BLOCK, blockIndex + 1);
    assert.deepEqual(await readBack(reopened, blockIndex * BLOCK, BLOCK), expected);
  }
  await reopened.close();
});

Deno.test("evacuation leaves an unreadable slot in place (EIO, never stale data), and a racing client write wins", async () => {
  const { harness, blocks, slotRange } = await blocksOnSpare0();
  const { engine } = harness;
  const unreadable = blocks[1]!;
  const raced = blocks[2]!;
  for (const blockIndex of blocks) {
    harness.faultySpares[0]!.setBad(
      slotRange(blockIndex),
      blockIndex === unreadable ? "both" : "write",
    );
  }
  // The first failing write fails the spare and starts the evacuation; a
  // partial write to another of its blocks races with it.
  await engine.write(pattern(BLOCK, 2000), blocks[0]! * BLOCK);
  const racer = pattern(512, 3000);
  await engine.write(racer, raced * BLOCK + 1024);
  // What the evacuation the failure started could not move, a second one cannot either.
  assert.equal((await engine.evacuate()).failed, 1);
  await assert.rejects(readBack(engine, unreadable * BLOCK, BLOCK), /EIO/);
  assert.equal(engine.lookup(unreadable)?.spareIndex, 0, "it stays where it is");
  const expected = pattern(BLOCK, raced + 1);
  expected.set(racer, 1024);
  assert.equal(engine.lookup(raced)?.spareIndex, 1);
  assert.deepEqual(await readBack(engine, raced * BLOCK, BLOCK), expected);
  await engine.close();
});

Deno.test("a power cut after any sector write of a two-spare group commit keeps every acknowledged remap, on both spares' views", async () => {
  // Images of a two-spare setup with one remap on spare 0.
  const harness = await makeHarness({ spareCount: 2 });
  harness.faulty.setBad({ offsetBytes: 0, lengthBytes: 64 * BLOCK }, "write");
  await harness.engine.write(pattern(BLOCK, 1), 0);
  await harness.engine.flush();
  await harness.engine.persistState();
  const images = harness.spares.map((spare) =>
    spare.peek({ offsetBytes: 0, lengthBytes: spare.sizeBytes }).slice()
  );
  const identity = { device: harness.faulty, identity: memoryIdentity(harness.main) };
  const blocks = [5, 6, 7];
  let cases = 0;
  // The engine left running after a cut fails on: its errors are the dead process's.
  const ignoreCuts = (event: PromiseRejectionEvent) => {
    if (event.reason instanceof PowerCut) event.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", ignoreCuts);
  let ackedSome = 0;
  for (let budget0 = 0; budget0 < 36; budget0 += 6) {
    for (let budget1 = 0; budget1 < 8; budget1++) {
      for (const policy of ["all", { seed: budget0 * 100 + budget1 }] as const) {
        const devices = images.map((image, i) => new CrashDevice(`spare${i}`, image));
        const engine = await assembleSetup(identity, await openSpares(devices, { repair: false }), {
          metadataDelayMs: 0,
        });
        devices[0]!.cutPowerAfter(budget0);
        devices[1]!.cutPowerAfter(budget1);
        const acked = new Set<number>();
        // After the cut the process is dead as far as the disks care: a write
        // the cut stopped may never answer, so only those answered count.
        await Promise.race([
          Promise.all(
            blocks.map((blockIndex) =>
              engine.write(pattern(BLOCK, 100 + blockIndex), blockIndex * BLOCK).then(
                () => acked.add(blockIndex),
                () => {},
              )
            ),
          ),
          new Promise((resolve) => setTimeout(resolve, 20)),
        ]);
        if (acked.size > 0) ackedSome++;
        const survivors = await Promise.all(
          devices.map((device) => device.deviceAfterCrash(policy)),
        );
        const where = `budgets ${budget0}/${budget1} ${JSON.stringify(policy)}`;
        // Each spare alone, then both: every acknowledged remap is known with its data.
        for (const present of [[0], [1], [0, 1]]) {
          const reopened = await assembleSetup(
            identity,
            await openSpares(present.map((i) => survivors[i]!), {
              repair: false,
              allowMissing: true,
            }),
            { metadataDelayMs: 0 },
          );
          for (const blockIndex of acked) {
            const location = reopened.lookup(blockIndex);
            assert.ok(location, `${where}: acknowledged block ${blockIndex} known to ${present}`);
            if (present.includes(location.spareIndex)) {
              assert.deepEqual(
                await readBack(reopened, blockIndex * BLOCK, BLOCK),
                pattern(BLOCK, 100 + blockIndex),
                `${where}: block ${blockIndex}`,
              );
            }
          }
          if (present.includes(0)) {
            assert.deepEqual(await readBack(reopened, 0, BLOCK), pattern(BLOCK, 1), where);
          } else await assert.rejects(readBack(reopened, 0, BLOCK), /EIO/);
        }
        cases++;
      }
    }
  }
  globalThis.removeEventListener("unhandledrejection", ignoreCuts);
  assert.ok(cases >= 96);
  assert.ok(ackedSome > 0 && ackedSome < cases, `${ackedSome} of ${cases} cuts came after an ack`);
});

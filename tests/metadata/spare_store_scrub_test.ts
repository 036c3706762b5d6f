/**
 * SpareStore.scrub(): every copy, the checkpoint and the log sectors in use
 * are read back while the store is open, and what does not match its state is
 * repaired from it.
 *
 * Method: a memory spare, damaged behind the store's back (a copy overwritten,
 * a copy left at an older sequence, a log sector or the checkpoint
 * overwritten), then scrubbed; the repair must reopen to the same table with
 * five valid current copies. The fault layer makes a copy that cannot be
 * read back, which must fail the scrub instead of claiming a repair.
 */

import assert from "node:assert/strict";
import { COPY_BYTES, COPY_SECTORS, SECTOR_BYTES } from "../../mod/constants.ts";
import type { Device } from "../../mod/device/device.ts";
import { MemoryDevice } from "../../mod/device/memory_device.ts";
import { MetadataScrubError } from "../../mod/errors.ts";
import { FaultyDevice } from "../../mod/fault/faulty_device.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import { encodeCopy, FORMAT_VERSION } from "../../mod/metadata/superblock.ts";
import { SpareStore } from "../../mod/metadata/spare_store.ts";
import { payloadFor } from "./fixtures.ts";

const BLOCK_BYTES = 4096;

async function formatted(device?: Device): Promise<{ device: Device; store: SpareStore }> {
  const sizeBytes = minimumSpareBytes(BLOCK_BYTES) + 4 * 1024 * 1024;
  const spare = device ?? new MemoryDevice("spare0", sizeBytes);
  const store = await SpareStore.format(
    spare,
    payloadFor(spare.sizeBytes, { blockBytes: BLOCK_BYTES }),
  );
  return { device: spare, store };
}

async function overwriteSector(device: Device, offsetBytes: number): Promise<void> {
  await device.write(new Uint8Array(SECTOR_BYTES).fill(0x5a), offsetBytes);
}

/** Opens the spare again without repair: what is on the disk now. */
async function onDisk(device: Device) {
  return (await SpareStore.open(device, { repair: false }));
}

Deno.test("SpareStore.scrub() finds nothing on a healthy spare and writes nothing", async () => {
  const { device, store } = await formatted();
  await store.appendRemaps([3, 4]);
  const before = await onDisk(device);
  const report = await store.scrub();
  assert.deepEqual(report.repairs, []);
  assert.equal(report.copiesChecked, 5);
  assert.equal(report.logSectorsChecked, 1);
  const after = await onDisk(device);
  assert.equal(after.store.sequence, before.store.sequence);
});

for (const copyIndexes of [[0], [2, 4], [0, 1, 2, 3]]) {
  Deno.test(`SpareStore.scrub() rewrites corrupt copies ${copyIndexes.join(", ")} from the store's state`, async () => {
    const { device, store } = await formatted();
    await store.appendRemaps([10, 11, 12]);
    for (const copyIndex of copyIndexes) {
      await overwriteSector(device, COPY_SECTORS[copyIndex]! * SECTOR_BYTES);
    }
    assert.equal((await onDisk(device)).report.validCopies, 5 - copyIndexes.length);
    const report = await store.scrub();
    assert.deepEqual(
      report.repairs.map((line) => Number(/^copy (\d)/.exec(line)?.[1])),
      copyIndexes,
    );
    const after = await onDisk(device);
    assert.equal(after.report.validCopies, 5);
    assert.ok(after.report.copies.every((copy) => !copy.stale));
    assert.deepEqual(after.store.slotBlocks, [10, 11, 12]);
    assert.deepEqual((await store.scrub()).repairs, [], "a second scrub finds nothing");
  });
}

Deno.test("SpareStore.scrub() rewrites a copy left at an older sequence", async () => {
  const { device, store } = await formatted();
  // Copy 3 as it was at sequence 1, then the store moves on to sequence 2.
  const oldCopy = new Uint8Array(COPY_BYTES);
  await device.read(oldCopy, COPY_SECTORS[3]! * SECTOR_BYTES);
  await store.writeMetadata((payload) => {
    payload.pending = [77];
  });
  await device.write(oldCopy, COPY_SECTORS[3]! * SECTOR_BYTES);
  const report = await store.scrub();
  assert.equal(report.repairs.length, 1);
  assert.match(report.repairs[0]!, /^copy 3: stale \(sequence 1, current 2\): rewritten$/);
  const after = await onDisk(device);
  assert.ok(after.report.copies.every((copy) => copy.sequence === 2));
  assert.deepEqual(after.store.payload.pending, [77]);
});

Deno.test("SpareStore.scrub() folds a log with a corrupt sector into a fresh checkpoint", async () => {
  const { device, store } = await formatted();
  await store.appendRemaps([1, 2]);
  await store.appendRemaps([9]);
  const { layout } = store.payload;
  // The first log sector: on reopen the replay would stop there and lose all three remaps.
  await overwriteSector(device, layout.logOffsetBytes);
  assert.deepEqual((await onDisk(device)).store.slotBlocks, []);
  const report = await store.scrub();
  assert.equal(report.repairs.length, 1);
  assert.match(
    report.repairs[0]!,
    /^remap table: the log replays 0 of 2 sectors .*fresh checkpoint$/,
  );
  const after = await onDisk(device);
  assert.deepEqual(after.store.slotBlocks, [1, 2, 9]);
  assert.equal(after.report.checkpointEntries, 3);
  // The store goes on appending after the fold.
  await store.appendRemaps([20]);
  assert.deepEqual((await onDisk(device)).store.slotBlocks, [1, 2, 9, 20]);
});

Deno.test("SpareStore.scrub() replaces a checkpoint that fails its checksum", async () => {
  const { device, store } = await formatted();
  await store.appendRemaps([4, 5, 6]);
  await store.checkpoint();
  const region = store.payload.table.checkpointRegion;
  await overwriteSector(device, store.payload.layout.checkpointOffsetBytes[region]!);
  await assert.rejects(() => onDisk(device), /checkpoint . fails its checksum/);
  const report = await store.scrub();
  assert.match(report.repairs.join("\n"), /checkpoint . fails its checksum: folded into a fresh/);
  const after = await onDisk(device);
  assert.deepEqual(after.store.slotBlocks, [4, 5, 6]);
  assert.notEqual(after.store.payload.table.checkpointRegion, region);
});

Deno.test("SpareStore.scrub() fails when a rewritten copy does not read back", async () => {
  const sizeBytes = minimumSpareBytes(BLOCK_BYTES) + 4 * 1024 * 1024;
  const faulty = new FaultyDevice(new MemoryDevice("spare0", sizeBytes), {
    blockBytes: SECTOR_BYTES,
  });
  const { store } = await formatted(faulty);
  // Copy 1's header sector reads fail: the copy is unreadable before and after its rewrite.
  faulty.addBadBlocks([COPY_SECTORS[1]!], "read");
  await assert.rejects(() => store.scrub(), (error) => {
    assert.ok(error instanceof MetadataScrubError);
    assert.match(error.message, /copy 1 after rewrite: unreadable/);
    return true;
  });
});

Deno.test("SpareStore.scrub() refuses to overwrite a copy newer than its own state", async () => {
  const { device, store } = await formatted();
  const newer = encodeCopy(
    {
      formatVersion: FORMAT_VERSION,
      sequence: store.sequence + 5,
      timestampMs: Date.now(),
      copyIndex: 2,
      setupUuid: store.payload.setup.uuid,
      spareIndex: 0,
    },
    structuredClone(store.payload),
  );
  await device.write(newer, COPY_SECTORS[2]! * SECTOR_BYTES);
  await assert.rejects(() => store.scrub(), /newer than this server's 1: another process/);
});

/**
 * SpareStore: copies, repair, the remap log and checkpoints on a device.
 *
 * Method: a memory spare for the rules (corruption of k of 5 copies, all 5,
 * upgrade, log overflow), and a CrashDevice that cuts power after every single
 * sector write of an update to prove each update opens to old or new.
 */

import assert from "node:assert/strict";
import { MemoryDevice } from "../../mod/device/memory_device.ts";
import { SpareStore } from "../../mod/metadata/spare_store.ts";
import { crc32c } from "../../mod/metadata/crc32c.ts";
import { NoValidCopyError, UnsupportedVersionError } from "../../mod/errors.ts";
import { FORMAT_VERSION, MIGRATIONS } from "../../mod/metadata/superblock.ts";
import { COPY_SECTORS, SECTOR_BYTES } from "../../mod/constants.ts";
import { LOG_RECORDS_PER_SECTOR } from "../../mod/metadata/remap_log.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import type { Device } from "../../mod/device/device.ts";
import { CrashDevice, PowerCut, type SurvivalPolicy } from "../sim/crash_device.ts";
import { payloadFor } from "./fixtures.ts";

/** A freshly formatted spare; the smallest allowed size keeps crash simulation quick. */
async function formatted(
  options: { sizeBytes?: number; blockBytes?: number } = {},
): Promise<{ device: MemoryDevice; store: SpareStore }> {
  const blockBytes = options.blockBytes ?? 4096;
  const sizeBytes = options.sizeBytes ?? minimumSpareBytes(blockBytes) + 4 * 1024 * 1024;
  const device = new MemoryDevice("spare0", sizeBytes);
  const store = await SpareStore.format(device, payloadFor(sizeBytes, { blockBytes }));
  return { device, store };
}

async function corruptCopy(device: Device, copyIndex: number): Promise<void> {
  await device.write(
    new Uint8Array(SECTOR_BYTES).fill(0xa5),
    COPY_SECTORS[copyIndex]! * SECTOR_BYTES,
  );
}

Deno.test("SpareStore.format() writes five valid copies at the product's sectors", async () => {
  const { device } = await formatted();
  const { report } = await SpareStore.open(device, { repair: false });
  assert.equal(report.validCopies, 5);
  assert.deepEqual(report.copies.map((copy) => copy.sector), [0, 1024, 2048, 4096, 8192]);
  assert.ok(report.copies.every((copy) => copy.valid && copy.sequence === 1 && !copy.stale));
});

for (const corruptCount of [1, 2, 3, 4]) {
  Deno.test(`SpareStore.open() opens with ${corruptCount} of 5 copies corrupt and repairs them`, async () => {
    const { device, store } = await formatted();
    await store.appendRemaps([5, 6, 7]);
    // Corrupt the newest-looking copies first, so the survivor is the lowest index.
    for (let copyIndex = 4; copyIndex > 4 - corruptCount; copyIndex--) {
      await corruptCopy(device, copyIndex);
    }
    const { store: reopened, report } = await SpareStore.open(device);
    assert.equal(report.validCopies, 5 - corruptCount);
    assert.equal(report.copies.filter((copy) => copy.repaired).length, corruptCount);
    assert.deepEqual(reopened.slotBlocks, [5, 6, 7]);
    const { report: after } = await SpareStore.open(device, { repair: false });
    assert.equal(after.validCopies, 5);
  });
}

Deno.test("SpareStore.open() refuses a spare with all 5 copies corrupt and writes nothing", async () => {
  const { device } = await formatted();
  for (let copyIndex = 0; copyIndex < 5; copyIndex++) await corruptCopy(device, copyIndex);
  const before = device.peek({ offsetBytes: 0, lengthBytes: device.sizeBytes }).slice();
  const writesBefore = device.counts.writes;
  await assert.rejects(SpareStore.open(device), (error: Error) => {
    assert.ok(error instanceof NoValidCopyError);
    assert.match(error.message, /spare0.*copy 0: no dm-remap magic.*nothing was written/);
    return true;
  });
  assert.equal(device.counts.writes, writesBefore);
  assert.deepEqual(device.peek({ offsetBytes: 0, lengthBytes: device.sizeBytes }), before);
});

Deno.test("SpareStore.open() picks the newest valid copy and rewrites the stale ones", async () => {
  const { device, store } = await formatted();
  const oldCopy = device.peek({ offsetBytes: COPY_SECTORS[3]! * SECTOR_BYTES, lengthBytes: 4096 })
    .slice();
  await store.writeMetadata((payload) => payload.pending = [42]);
  await device.write(oldCopy, COPY_SECTORS[3]! * SECTOR_BYTES);
  const { store: reopened, report } = await SpareStore.open(device);
  assert.deepEqual(reopened.payload.pending, [42]);
  assert.equal(reopened.sequence, 2);
  assert.deepEqual(report.copies.map((copy) => copy.stale), [false, false, false, true, false]);
  assert.equal(report.copies[3]!.repaired, true);
  const { report: after } = await SpareStore.open(device, { repair: false });
  assert.ok(after.copies.every((copy) => copy.sequence === 2));
});

Deno.test("SpareStore.repairCopies() rewrites corrupt and stale copies from the open state, only those", async () => {
  const { device, store } = await formatted();
  const oldCopy = device.peek({ offsetBytes: COPY_SECTORS[1]! * SECTOR_BYTES, lengthBytes: 4096 })
    .slice();
  await store.writeMetadata((payload) => payload.pending = [42]);
  await store.appendRemaps([9]);
  // Copy 1 goes back to sequence 1 (a lost write), copy 3 rots.
  await device.write(oldCopy, COPY_SECTORS[1]! * SECTOR_BYTES);
  await corruptCopy(device, 3);
  const untouched = [0, 2, 4].map((copyIndex) =>
    device.peek({ offsetBytes: COPY_SECTORS[copyIndex]! * SECTOR_BYTES, lengthBytes: 4096 })
      .slice()
  );
  const writes: number[] = [];
  const write = device.write.bind(device);
  device.write = (data, offsetBytes, options) => {
    writes.push(offsetBytes / SECTOR_BYTES);
    return write(data, offsetBytes, options);
  };
  const reports = await store.repairCopies();
  assert.deepEqual(
    reports.map(({ valid, sequence, stale, repaired, winner }) => ({
      valid,
      sequence,
      stale,
      repaired,
      winner,
    })),
    [
      { valid: true, sequence: 2, stale: false, repaired: false, winner: true },
      { valid: true, sequence: 1, stale: true, repaired: true, winner: false },
      { valid: true, sequence: 2, stale: false, repaired: false, winner: false },
      { valid: false, sequence: undefined, stale: true, repaired: true, winner: false },
      { valid: true, sequence: 2, stale: false, repaired: false, winner: false },
    ],
  );
  assert.deepEqual(
    writes,
    [COPY_SECTORS[1], COPY_SECTORS[3]],
    "only the two bad copies are written",
  );
  [0, 2, 4].forEach((copyIndex, i) => {
    const now = device.peek({
      offsetBytes: COPY_SECTORS[copyIndex]! * SECTOR_BYTES,
      lengthBytes: 4096,
    });
    assert.deepEqual(now, untouched[i], `copy ${copyIndex} is left alone`);
  });
  const { store: reopened, report } = await SpareStore.open(device, { repair: false });
  assert.equal(report.validCopies, 5);
  assert.ok(report.copies.every((copy) => copy.sequence === 2 && !copy.stale));
  assert.deepEqual(reopened.payload.pending, [42]);
  assert.deepEqual(reopened.slotBlocks, [9]);
  assert.deepEqual((await store.repairCopies()).filter((copy) => copy.repaired), []);
});

Deno.test("SpareStore.open() upgrades an older format in memory through the whole migration chain", async () => {
  const { device } = await formatted();
  // Make every copy a "version 0" copy whose payload lacks `scan` and the
  // version-2 peer fields; the test migration 0 → 1 adds `scan`, the real
  // one 1 → 2 the peer fields: the chain runs step by step.
  for (const [copyIndex, sector] of COPY_SECTORS.entries()) {
    const bytes = device.peek({ offsetBytes: sector * SECTOR_BYTES, lengthBytes: 64 * 1024 })
      .slice();
    const view = new DataView(bytes.buffer);
    const payloadLength = view.getUint32(36, true);
    const payload = JSON.parse(new TextDecoder().decode(bytes.subarray(512, 512 + payloadLength)));
    delete payload.scan;
    delete payload.table.peerEntries;
    delete payload.table.peerCrc32c;
    const encoded = new TextEncoder().encode(JSON.stringify(payload));
    bytes.fill(0, 512);
    bytes.set(encoded, 512);
    view.setUint32(8, 0, true);
    view.setUint32(36, encoded.length, true);
    view.setUint32(40, crc32c(encoded), true);
    view.setUint32(508, crc32c(bytes.subarray(0, 508)), true);
    await device.write(bytes, sector * SECTOR_BYTES);
    assert.equal(copyIndex, view.getUint32(32, true));
  }
  await assert.rejects(SpareStore.open(device, { repair: false }), NoValidCopyError);
  const migrations = new Map([...MIGRATIONS, [
    0,
    (payload: Record<string, unknown>) => ({ ...payload, scan: { migrated: true } }),
  ]]);
  const writesBefore = device.counts.writes;
  const { store, report } = await SpareStore.open(device, { migrations });
  assert.equal(report.upgradedFrom, 0);
  assert.deepEqual(store.payload.scan, { migrated: true });
  assert.deepEqual(store.payload.table.peerEntries, [0]);
  // The copies are rewritten where the whole setup is known (assembly), not here.
  assert.equal(device.counts.writes, writesBefore);
  assert.equal(store.formatVersion, 0);
});

Deno.test("SpareStore.open() refuses metadata from a newer format and writes nothing", async () => {
  const { device } = await formatted();
  const sector = COPY_SECTORS[2]! * SECTOR_BYTES;
  const bytes = device.peek({ offsetBytes: sector, lengthBytes: SECTOR_BYTES }).slice();
  const view = new DataView(bytes.buffer);
  view.setUint32(8, FORMAT_VERSION + 1, true);
  view.setUint32(508, crc32c(bytes.subarray(0, 508)), true);
  await device.write(bytes, sector);
  const writesBefore = device.counts.writes;
  await assert.rejects(SpareStore.open(device), UnsupportedVersionError);
  assert.equal(device.counts.writes, writesBefore);
});

Deno.test("SpareStore.appendRemaps() survives reopen, and a full log becomes a checkpoint", async () => {
  const { device, store } = await formatted({ sizeBytes: 32 * 1024 * 1024, blockBytes: 512 });
  const logSectors = store.payload.layout.logBytes / SECTOR_BYTES;
  const expected: number[] = [];
  // Enough single-record appends to fill the log twice over.
  for (let i = 0; i < logSectors * 2 + 3; i++) {
    const blocks = [i * 3 + 1];
    await store.appendRemaps(blocks);
    expected.push(...blocks);
  }
  assert.ok(store.payload.table.checkpointEntries > 0, "a checkpoint was written");
  const { store: reopened, report } = await SpareStore.open(device, { repair: false });
  assert.deepEqual(reopened.slotBlocks, expected);
  assert.equal(report.logSectorsUsed, expected.length - report.checkpointEntries);
});

/** Runs `update` on a fresh CrashDevice copy of `image`, cutting power after `budget` sector writes. */
async function crashDuring(
  image: Uint8Array,
  budget: number,
  update: (store: SpareStore) => Promise<void>,
  policy: SurvivalPolicy,
): Promise<{ completed: boolean; survivor: Device }> {
  const device = new CrashDevice("spare0", image);
  const { store } = await SpareStore.open(device, { repair: false });
  device.cutPowerAfter(budget);
  let completed = true;
  try {
    await update(store);
  } catch (error) {
    if (!(error instanceof PowerCut)) throw error;
    completed = false;
  }
  return { completed, survivor: await device.deviceAfterCrash(policy) };
}

async function imageOf(store: SpareStore, device: MemoryDevice): Promise<Uint8Array> {
  await store.device.flush();
  return device.peek({ offsetBytes: 0, lengthBytes: device.sizeBytes }).slice();
}

const POLICIES: SurvivalPolicy[] = ["none", "all", { seed: 1 }, { seed: 2 }, { seed: 3 }];

Deno.test("a crash after any sector write of a metadata update opens to the old or the new state", async () => {
  const { device, store } = await formatted();
  await store.appendRemaps([10, 11]);
  const image = await imageOf(store, device);
  const update = (spare: SpareStore) =>
    spare.writeMetadata((payload) => payload.pending = [1, 2, 3]);
  for (let budget = 0;; budget++) {
    for (const policy of POLICIES) {
      const { completed, survivor } = await crashDuring(image, budget, update, policy);
      const { store: reopened } = await SpareStore.open(survivor);
      assert.ok(
        [0, 3].includes(reopened.payload.pending.length),
        `budget ${budget} ${JSON.stringify(policy)}`,
      );
      assert.deepEqual(reopened.slotBlocks, [10, 11]);
      if (completed && policy === "all") assert.deepEqual(reopened.payload.pending, [1, 2, 3]);
    }
    if ((await crashDuring(image, budget, update, "all")).completed) break;
  }
});

Deno.test("a crash after any sector write of a remap append keeps every acknowledged remap", async () => {
  const { device, store } = await formatted();
  await store.appendRemaps([100]);
  const image = await imageOf(store, device);
  const newBlocks = Array.from({ length: LOG_RECORDS_PER_SECTOR * 2 + 4 }, (_, i) => 1000 + i);
  const update = async (spare: SpareStore) => {
    await spare.appendRemaps(newBlocks);
  };
  for (let budget = 0;; budget++) {
    for (const policy of POLICIES) {
      const { completed, survivor } = await crashDuring(image, budget, update, policy);
      const { store: reopened } = await SpareStore.open(survivor);
      const blocks = reopened.slotBlocks;
      assert.equal(blocks[0], 100, "the acknowledged remap survives");
      // Whatever else survived is a prefix of the batch, never garbage.
      assert.deepEqual(blocks.slice(1), newBlocks.slice(0, blocks.length - 1));
      if (completed) {
        assert.deepEqual(blocks.slice(1), newBlocks, "an acknowledged append is complete");
      }
    }
    if ((await crashDuring(image, budget, update, "all")).completed) break;
  }
});

Deno.test("a crash after any sector write of a checkpoint keeps every remap", async () => {
  const { device, store } = await formatted();
  const blocks = Array.from({ length: 300 }, (_, i) => i * 11);
  for (let i = 0; i < blocks.length; i += 30) await store.appendRemaps(blocks.slice(i, i + 30));
  const image = await imageOf(store, device);
  for (let budget = 0;; budget++) {
    for (const policy of POLICIES) {
      const { survivor } = await crashDuring(image, budget, (spare) => spare.checkpoint(), policy);
      const { store: reopened } = await SpareStore.open(survivor);
      assert.deepEqual(reopened.slotBlocks, blocks, `budget ${budget} ${JSON.stringify(policy)}`);
      // The next append after recovery lands where replay expects it.
      await reopened.appendRemaps([99_999]);
      const { store: again } = await SpareStore.open(survivor, { repair: false });
      assert.deepEqual(again.slotBlocks, [...blocks, 99_999]);
    }
    if ((await crashDuring(image, budget, (spare) => spare.checkpoint(), "all")).completed) break;
  }
});

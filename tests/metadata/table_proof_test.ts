/**
 * Proving a spare's table from its log and checkpoints when every copy is
 * lost, and rebuilding its copies from the proof.
 *
 * Goal: every mapping the log and sealed checkpoints prove comes back, exactly
 * as `SpareStore.open()` saw it while the copies were intact; anything not
 * proven (an unsealed checkpoint, a hole in the log, another setup's log) is
 * refused with the reason; a rebuilt spare opens to the proven table and keeps
 * working.
 * Method: histories of appends and checkpoints on a memory spare, as rows;
 * each row damages what it needs, records what `open()` returns, destroys all
 * five copies, then proves.
 */

import assert from "node:assert/strict";
import { COPY_BYTES, COPY_SECTORS, SECTOR_BYTES } from "../../mod/constants.ts";
import { MemoryDevice } from "../../mod/device/memory_device.ts";
import { RefusedError, SetupMismatchError } from "../../mod/errors.ts";
import {
  encodeCheckpoint,
  encodeCheckpointSeal,
  sealOffsetBytes,
} from "../../mod/metadata/checkpoint.ts";
import { LOG_RECORDS_PER_SECTOR } from "../../mod/metadata/remap_log.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import { SpareStore } from "../../mod/metadata/spare_store.ts";
import type { TableState } from "../../mod/metadata/superblock.ts";
import { proveTable, readLogHead } from "../../mod/metadata/table_proof.ts";
import { payloadFor, SETUP_UUID } from "./fixtures.ts";

const IDENTITY = { setupUuid: SETUP_UUID, spareIndex: 0 };

interface Spare {
  device: MemoryDevice;
  store: SpareStore;
}

async function formatted(blockBytes = 4096, sizeBytes?: number): Promise<Spare> {
  const bytes = sizeBytes ?? minimumSpareBytes(blockBytes) + 4 * 1024 * 1024;
  const device = new MemoryDevice("spare0", bytes);
  return { device, store: await SpareStore.format(device, payloadFor(bytes, { blockBytes })) };
}

/** Appends `count` remaps in batches of `batch`, blocks numbered from `first`. */
async function append(store: SpareStore, first: number, count: number, batch: number) {
  for (let at = 0; at < count; at += batch) {
    const size = Math.min(batch, count - at);
    await store.appendRemaps(Array.from({ length: size }, (_, i) => (first + at + i) * 3 + 1));
  }
}

async function destroyCopies(device: MemoryDevice): Promise<void> {
  for (const sector of COPY_SECTORS) {
    await device.write(new Uint8Array(COPY_BYTES).fill(0x5a), sector * SECTOR_BYTES);
  }
}

/** Overwrites the records of a log sector, keeping its header: its CRC fails, as a torn write's does. */
async function damageLogSector(spare: Spare, sector: number): Promise<void> {
  const at = spare.store.payload.layout.logOffsetBytes + sector * SECTOR_BYTES;
  const bytes = new Uint8Array(SECTOR_BYTES);
  await spare.device.read(bytes, at);
  bytes.fill(0xee, 64);
  await spare.device.write(bytes, at);
}

/** Zeroes the seal after the current checkpoint. */
async function loseSeal(spare: Spare): Promise<void> {
  const { table, layout } = spare.store.payload;
  await spare.device.write(
    new Uint8Array(SECTOR_BYTES),
    layout.checkpointOffsetBytes[table.checkpointRegion] + sealOffsetBytes(table.checkpointEntries),
  );
}

interface Row {
  scenario: string;
  blockBytes?: number;
  sizeBytes?: number;
  /** Builds the history and damage; may return table states a backup recorded. */
  build(spare: Spare): Promise<TableState[] | void>;
  /** Expected proof, or the refusal. */
  expect: { checkpoint: number; log: number; proof: string } | RegExp;
}

const ROWS: Row[] = [
  {
    scenario: "a log alone (no checkpoint yet)",
    build: (spare) => append(spare.store, 0, 100, 7),
    expect: { checkpoint: 0, log: 100, proof: "none" },
  },
  {
    scenario: "a sealed checkpoint, then the log",
    async build(spare) {
      await append(spare.store, 0, 50, 5);
      await spare.store.checkpoint();
      await append(spare.store, 50, 30, 4);
    },
    expect: { checkpoint: 50, log: 30, proof: "seal" },
  },
  {
    scenario: "a sealed checkpoint with nothing logged since",
    async build(spare) {
      await append(spare.store, 0, 50, 5);
      await spare.store.checkpoint();
    },
    expect: { checkpoint: 50, log: 0, proof: "seal" },
  },
  {
    scenario: "two checkpoints (regions A and B), then the log",
    async build(spare) {
      await append(spare.store, 0, 50, 5);
      await spare.store.checkpoint();
      await append(spare.store, 50, 30, 30);
      await spare.store.checkpoint();
      await append(spare.store, 80, 10, 1);
    },
    expect: { checkpoint: 80, log: 10, proof: "seal" },
  },
  {
    scenario: "a log that filled and checkpointed on its own",
    blockBytes: 512,
    sizeBytes: 32 * 1024 * 1024,
    async build(spare) {
      const logSectors = spare.store.payload.layout.logBytes / SECTOR_BYTES;
      await append(spare.store, 0, logSectors + 5, 1);
      assert.equal(spare.store.payload.table.checkpointEntries, logSectors);
    },
    expect: { checkpoint: 8192, log: 5, proof: "seal" },
  },
  {
    scenario: "a torn last log sector (a crash while logging)",
    async build(spare) {
      await append(spare.store, 0, 3 * LOG_RECORDS_PER_SECTOR, LOG_RECORDS_PER_SECTOR);
      await damageLogSector(spare, 2);
    },
    expect: { checkpoint: 0, log: 2 * LOG_RECORDS_PER_SECTOR, proof: "none" },
  },
  {
    scenario: "a seal of a checkpoint the copies never pointed to (a crash mid-checkpoint)",
    async build(spare) {
      await append(spare.store, 0, 50, 5);
      const { store, report } = await SpareStore.open(spare.device, { repair: false });
      const encoded = encodeCheckpoint(store.slotBlocks, 50);
      const seal = encodeCheckpointSeal({
        ...IDENTITY,
        entryCount: 50,
        crc32c: encoded.crc32c,
        logStartSequence: store.payload.table.logStartSequence + report.logSectorsUsed,
      });
      const regionB = store.payload.layout.checkpointOffsetBytes[1];
      await spare.device.write(encoded.bytes, regionB);
      await spare.device.write(seal, regionB + encoded.bytes.length);
      // The log goes on past the orphan checkpoint, as it does after such a crash.
      await append(spare.store, 50, 30, 3);
    },
    expect: { checkpoint: 0, log: 80, proof: "none" },
  },
  {
    scenario: "an unsealed checkpoint (written before seals, or its seal lost)",
    async build(spare) {
      await append(spare.store, 0, 50, 5);
      await spare.store.checkpoint();
      await append(spare.store, 50, 30, 3);
      await loseSeal(spare);
    },
    expect: /Slots 0-49 of spare 0 .* in a checkpoint that nothing proves/,
  },
  {
    scenario: "an unsealed checkpoint whose table a backup recorded",
    async build(spare) {
      await append(spare.store, 0, 50, 5);
      await spare.store.checkpoint();
      await append(spare.store, 50, 30, 3);
      await loseSeal(spare);
      return [spare.store.payload.table];
    },
    expect: { checkpoint: 50, log: 30, proof: "recorded table" },
  },
  {
    scenario: "a damaged log sector with later sectors of the same run",
    async build(spare) {
      await append(spare.store, 0, 3 * LOG_RECORDS_PER_SECTOR, LOG_RECORDS_PER_SECTOR);
      await damageLogSector(spare, 1);
    },
    expect: /stops at sector 1 \(torn or corrupt sector 1\), but sector 2 continues it/,
  },
];

for (const row of ROWS) {
  Deno.test(`proveTable() with every copy lost: ${row.scenario}`, async () => {
    const spare = await formatted(row.blockBytes, row.sizeBytes);
    const recordedTables = (await row.build(spare)) ?? [];
    const { store: truth } = await SpareStore.open(spare.device, { repair: false });
    const layout = truth.payload.layout;
    await destroyCopies(spare.device);
    const proving = proveTable(spare.device, layout, { identity: IDENTITY, recordedTables });
    if (row.expect instanceof RegExp) {
      await assert.rejects(proving, (error: Error) => {
        assert.ok(error instanceof RefusedError, String(error));
        assert.match(error.message, row.expect as RegExp);
        return true;
      });
      return;
    }
    const proof = await proving;
    assert.deepEqual(proof.slotBlocks, truth.slotBlocks);
    assert.equal(proof.checkpointEntries, row.expect.checkpoint);
    assert.equal(proof.logEntries, row.expect.log);
    assert.equal(proof.checkpointProof, row.expect.proof);
  });
}

Deno.test("proveTable() refuses a log that names another setup", async () => {
  const spare = await formatted();
  await append(spare.store, 0, 10, 10);
  const layout = spare.store.payload.layout;
  await destroyCopies(spare.device);
  await assert.rejects(
    proveTable(spare.device, layout, {
      identity: { setupUuid: "11111111-2222-4333-8444-555555555555", spareIndex: 0 },
    }),
    (error: Error) =>
      error instanceof SetupMismatchError && /belongs to spare 0 of setup/.test(error.message),
  );
});

Deno.test("readLogHead() names the setup, spare, block size and first slot, or nothing", async () => {
  const spare = await formatted(1024);
  assert.equal(await readLogHead(spare.device), undefined);
  await append(spare.store, 0, 3, 3);
  assert.deepEqual(await readLogHead(spare.device), {
    ...IDENTITY,
    blockBytes: 1024,
    sequence: 1,
    firstSlot: 0,
  });
});

Deno.test("SpareStore.rebuild() opens to the proven table, and the spare keeps logging after it", async () => {
  const spare = await formatted();
  await append(spare.store, 0, 50, 5);
  await spare.store.checkpoint();
  await append(spare.store, 50, 40, 4);
  const expected = [...spare.store.slotBlocks];
  const payload = structuredClone(spare.store.payload);
  await destroyCopies(spare.device);
  const proof = await proveTable(spare.device, payload.layout, { identity: IDENTITY });
  const rebuilt = await SpareStore.rebuild(spare.device, payload, {
    slotBlocks: proof.slotBlocks,
    checkpointRegion: proof.checkpointRegion === 0 ? 1 : 0,
    logStartSequence: proof.logSequenceMax + 1,
    sequence: 7,
  });
  assert.deepEqual(rebuilt.slotBlocks, expected);
  assert.equal(rebuilt.sequence, 7);
  // New remaps log after every old sequence, so no old log sector is replayed.
  await rebuilt.appendRemaps([9001, 9002]);
  const { store: reopened, report } = await SpareStore.open(spare.device, { repair: false });
  assert.deepEqual(reopened.slotBlocks, [...expected, 9001, 9002]);
  assert.equal(report.logSectorsUsed, 1);
  // The rebuilt checkpoint is sealed: losing the copies again loses nothing.
  await destroyCopies(spare.device);
  const again = await proveTable(spare.device, payload.layout, { identity: IDENTITY });
  assert.deepEqual(again.slotBlocks, [...expected, 9001, 9002]);
  assert.equal(again.checkpointProof, "seal");
});

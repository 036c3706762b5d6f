/**
 * Proving a spare's remap table from the spare alone, when every metadata
 * copy is lost: the remap log and the sealed checkpoints still say which main
 * block each used slot holds.
 *
 * What counts as proof (nothing else is used, nothing is guessed):
 * - a log sector that passes its own checks (magic, CRC) and names this setup
 *   and spare; the run that starts at the first sector of the log region and
 *   continues sequence by sequence and slot by slot (`replayLog`);
 * - a checkpoint whose entries match the CRC in its seal (`checkpoint.ts`), or
 *   in a table state recorded elsewhere (a backup), found where a checkpoint
 *   that precedes or follows that run must be.
 *
 * Which of them is the table (the log is written from its first sector after
 * every checkpoint, so the first sector is always the newest log run):
 * - a checkpoint newer than the run (its log sequence is higher than the
 *   run's start) that contains the run: nothing was logged since it;
 * - else the checkpoint the run continues (its entry count is the run's first
 *   slot, its log sequence the run's first), followed by the run;
 * - else, when the run starts at slot 0, the run alone.
 * Anything else (a run that starts past slot 0 with no proven checkpoint in
 * front of it, later log sectors of the same run behind a damaged one, a
 * checkpoint that disagrees with the log) is refused with the reason.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { LOG_OFFSET_BYTES, SECTOR_BYTES } from "../constants.ts";
import type { Device } from "../device/device.ts";
import { RefusedError, SetupMismatchError } from "../errors.ts";
import { decodeCheckpoint, decodeCheckpointSeal, sealOffsetBytes } from "./checkpoint.ts";
import {
  decodeLogSector,
  isOwnRecord,
  type LogIdentity,
  type LogSector,
  logSectorSequence,
  type LogWriter,
  replayLog,
} from "./remap_log.ts";
import type { SpareLayout } from "./spare_layout.ts";
import type { TableState } from "./superblock.ts";

/** What a proof needs of a table state: the spare's own checkpoint. */
type OwnTableState = Omit<TableState, "peerEntries" | "peerCrc32c">;

/** What the first sector of a spare's log says about the spare. */
export interface LogHead extends LogWriter {
  /** Its log sequence. */
  sequence: number;
  /** The slot of its first record. */
  firstSlot: number;
}

/**
 * Reads the first log sector of a device, where every log run starts.
 *
 * @returns Whose spare the log says the device is, or `undefined` when that
 *   sector is not an intact log sector (no remap was ever logged, or it is not a spare).
 */
export async function readLogHead(device: Device): Promise<LogHead | undefined> {
  if (device.sizeBytes < LOG_OFFSET_BYTES + SECTOR_BYTES) return undefined;
  const bytes = new Uint8Array(SECTOR_BYTES);
  await device.read(bytes, LOG_OFFSET_BYTES);
  const decoded = decodeLogSector(bytes, "sector 0");
  if (!decoded.valid) return undefined;
  const { records: _records, ownSlotsBefore: _ownSlots, ...writer } = decoded.sector;
  return { ...writer, firstSlot: firstOwnSlot(decoded.sector) };
}

/** Options for {@link proveTable}. */
export interface ProveTableOptions {
  /** The setup and spare the log must name. */
  identity: LogIdentity;
  /** Table states recorded elsewhere (a backup's), tried beside the seals. @default [] */
  recordedTables?: readonly OwnTableState[];
}

/** A spare's table as its own log and checkpoints prove it. */
export interface ProvenTable {
  /** Slot i holds main block `slotBlocks[i]`. */
  slotBlocks: number[];
  /** Slots proven by a checkpoint, and what proved its entries. */
  checkpointEntries: number;
  checkpointProof: "seal" | "recorded table" | "none";
  /** The checkpoint region the proof used, if any: a rebuild writes the other one. */
  checkpointRegion?: 0 | 1;
  /** Slots proven by log records beyond the checkpoint. */
  logEntries: number;
  logSectors: number;
  logStopReason: string;
  /** The highest sequence of any log sector in the region: a rebuilt table starts after it. */
  logSequenceMax: number;
}

interface Checkpoint {
  table: OwnTableState;
  proof: "seal" | "recorded table";
  blocks: number[];
}

interface LogRun {
  startSequence: number;
  firstSlot: number;
  blocks: number[];
  sectors: number;
  stopReason: string;
}

/**
 * Proves a spare's table from its log and checkpoints, reading only.
 *
 * @param layout Where the log and checkpoints are (from a backup, or recomputed as `create` did).
 * @throws {SetupMismatchError} When the log names another setup or spare.
 * @throws {RefusedError} When part of the table cannot be proven, or the proofs disagree.
 */
export async function proveTable(
  device: Device,
  layout: SpareLayout,
  options: ProveTableOptions,
): Promise<ProvenTable> {
  const region = new Uint8Array(layout.logBytes);
  await device.read(region, layout.logOffsetBytes);
  const run = readRun(device.name, region, options.identity);
  const checkpoints = await findCheckpoints(device, layout, run, options);
  const logSequenceMax = highestSequence(region);
  const latest = checkpoints.reduce<Checkpoint | undefined>(
    (best, each) =>
      !best || each.table.logStartSequence > best.table.logStartSequence ? each : best,
    undefined,
  );
  const proven = (checkpoint: Checkpoint | undefined, logBlocks: number[]): ProvenTable => ({
    slotBlocks: [...(checkpoint?.blocks ?? []), ...logBlocks],
    checkpointEntries: checkpoint?.blocks.length ?? 0,
    checkpointProof: checkpoint && checkpoint.blocks.length > 0 ? checkpoint.proof : "none",
    checkpointRegion: checkpoint?.table.checkpointRegion,
    logEntries: logBlocks.length,
    logSectors: run?.sectors ?? 0,
    logStopReason: run?.stopReason ?? "no log sector",
    logSequenceMax,
  });
  const where = `spare ${options.identity.spareIndex} on "${device.name}"`;
  if (!run) {
    if (latest && latest.blocks.length > 0) {
      throw new RefusedError(
        device.name,
        `The remap log of ${where} has no intact first sector, yet a checkpoint of ` +
          `${latest.blocks.length} slots exists: the log is damaged, and what was logged after ` +
          `the checkpoint cannot be proven; nothing was written`,
      );
    }
    return proven(undefined, []);
  }
  const runEnd = run.firstSlot + run.blocks.length;
  if (runEnd > layout.slotCount) {
    throw new RefusedError(
      device.name,
      `The remap log of ${where} names slot ${runEnd - 1}, past its ${layout.slotCount} slots: ` +
        `the layout is not this spare's (wrong block size?); nothing was written`,
    );
  }
  if (
    latest && latest.table.logStartSequence > run.startSequence &&
    runEnd <= latest.blocks.length
  ) {
    checkAgreement(device.name, where, latest, run);
    return proven(latest, []);
  }
  const continued = checkpoints.find((checkpoint) =>
    checkpoint.table.logStartSequence === run.startSequence &&
    checkpoint.blocks.length === run.firstSlot
  );
  if (continued) return proven(continued, run.blocks);
  if (run.firstSlot === 0) return proven(undefined, run.blocks);
  throw new RefusedError(
    device.name,
    `Slots 0-${run.firstSlot - 1} of ${where} are in a checkpoint that nothing proves: ` +
      `its entry count and checksum were in the lost copies, and no seal or backup records ` +
      `them; restore from a backup written since that checkpoint; nothing was written`,
  );
}

/** The log run at the start of the region, checked against the spare it must belong to. */
function readRun(
  deviceName: string,
  region: Uint8Array,
  identity: LogIdentity,
): LogRun | undefined {
  const first = decodeLogSector(region.subarray(0, SECTOR_BYTES), "sector 0");
  if (!first.valid) return undefined;
  const head = first.sector;
  if (head.setupUuid !== identity.setupUuid || head.spareIndex !== identity.spareIndex) {
    throw new SetupMismatchError(
      deviceName,
      `its remap log belongs to spare ${head.spareIndex} of setup ${head.setupUuid}, ` +
        `not to spare ${identity.spareIndex} of setup ${identity.setupUuid}`,
    );
  }
  const firstSlot = firstOwnSlot(head);
  const replay = replayLog(region, {
    ...identity,
    startSequence: head.sequence,
    firstSlot,
  });
  // A damaged sector ends replay; if later sectors of the same run exist, the
  // slots they name cannot be joined to the table without a hole.
  const sectorTotal = region.length / SECTOR_BYTES;
  for (let sector = replay.sectorsUsed + 1; sector < sectorTotal; sector++) {
    const bytes = region.subarray(sector * SECTOR_BYTES, (sector + 1) * SECTOR_BYTES);
    if (logSectorSequence(bytes) !== head.sequence + sector) continue;
    if (!decodeLogSector(bytes, `sector ${sector}`).valid) continue;
    throw new RefusedError(
      deviceName,
      `The remap log of spare ${identity.spareIndex} on "${deviceName}" stops at sector ` +
        `${replay.sectorsUsed} (${replay.stopReason}), but sector ${sector} continues it: ` +
        `the remaps in between are lost, so the table has a hole; restore from a backup; ` +
        `nothing was written`,
    );
  }
  return {
    startSequence: head.sequence,
    firstSlot,
    blocks: replay.blockIndexes,
    sectors: replay.sectorsUsed,
    stopReason: replay.stopReason,
  };
}

/**
 * The spare's own first slot in a log sector: its first own record's, or,
 * in a sector of other spares' records only, what the sector says of the own
 * table (format version 2; a version-1 sector always holds own records).
 */
function firstOwnSlot(sector: LogSector): number {
  return sector.records.find(isOwnRecord)?.slotIndex ?? sector.ownSlotsBefore;
}

/** The highest sequence any sector of the log region claims (0 for an empty region). */
function highestSequence(region: Uint8Array): number {
  let highest = 0;
  for (let at = 0; at < region.length; at += SECTOR_BYTES) {
    const sequence = logSectorSequence(region.subarray(at, at + SECTOR_BYTES));
    if (sequence !== undefined && sequence > highest) highest = sequence;
  }
  return highest;
}

/**
 * Checkpoints whose entries are proven: sealed ones where a checkpoint before
 * or after the run must end, and recorded table states, each read and checked
 * against its CRC.
 */
async function findCheckpoints(
  device: Device,
  layout: SpareLayout,
  run: LogRun | undefined,
  options: ProveTableOptions,
): Promise<Checkpoint[]> {
  const candidates: { table: OwnTableState; proof: Checkpoint["proof"] }[] = [];
  const counts = new Set(run ? [run.firstSlot, run.firstSlot + run.blocks.length] : [0]);
  for (const region of [0, 1] as const) {
    for (const entryCount of counts) {
      const offsetBytes = sealOffsetBytes(entryCount);
      if (offsetBytes + SECTOR_BYTES > layout.checkpointBytes) continue;
      const bytes = new Uint8Array(SECTOR_BYTES);
      await device.read(bytes, layout.checkpointOffsetBytes[region] + offsetBytes);
      const seal = decodeCheckpointSeal(bytes);
      if (
        !seal || seal.entryCount !== entryCount || seal.setupUuid !== options.identity.setupUuid ||
        seal.spareIndex !== options.identity.spareIndex
      ) continue;
      candidates.push({
        proof: "seal",
        table: {
          checkpointRegion: region,
          checkpointEntries: entryCount,
          checkpointCrc32c: seal.crc32c,
          logStartSequence: seal.logStartSequence,
        },
      });
    }
  }
  for (const table of options.recordedTables ?? []) {
    candidates.push({ proof: "recorded table", table });
  }
  const checkpoints: Checkpoint[] = [];
  for (const candidate of candidates) {
    const { checkpointRegion, checkpointEntries, checkpointCrc32c } = candidate.table;
    if (checkpointEntries > layout.slotCount) continue;
    const bytes = new Uint8Array(sealOffsetBytes(checkpointEntries));
    await device.read(bytes, layout.checkpointOffsetBytes[checkpointRegion]);
    const blocks = decodeCheckpoint(bytes, checkpointEntries, checkpointCrc32c);
    if (blocks) checkpoints.push({ ...candidate, blocks });
  }
  return checkpoints;
}

/** Refuses when a checkpoint and the log disagree about a slot both name. */
function checkAgreement(deviceName: string, where: string, checkpoint: Checkpoint, run: LogRun) {
  assert(run.firstSlot + run.blocks.length <= checkpoint.blocks.length, "the run is inside");
  const differs = run.blocks.findIndex((block, i) =>
    checkpoint.blocks[run.firstSlot + i] !== block
  );
  if (differs < 0) return;
  const slot = run.firstSlot + differs;
  throw new RefusedError(
    deviceName,
    `Checkpoint ${"AB"[checkpoint.table.checkpointRegion]} of ${where} says slot ${slot} holds ` +
      `block ${checkpoint.blocks[slot]}, its remap log says block ${run.blocks[differs]}: ` +
      `the spare is damaged; nothing was written`,
  );
}

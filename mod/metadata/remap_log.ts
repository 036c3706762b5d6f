/**
 * The remap log: the record of slots taken since the last checkpoint.
 *
 * Slots on a spare are handed out in order, once, and never given back, so
 * the remap table of a spare is simply "slot i holds main block b_i". The log
 * appends those facts in 512-byte sectors; a checkpoint (`checkpoint.ts`)
 * folds them into a dense array when the log region is full.
 *
 * Log sector, little-endian:
 *
 * | offset | width | field |
 * |---|---|---|
 * | 0 | 4 | magic `DRLG` |
 * | 4 | 2 | record count (1–29) |
 * | 6 | 2 | reserved, 0 |
 * | 8 | 8 | log sequence |
 * | 16 | 16 | setup UUID |
 * | 32 | 4 | spare index |
 * | 36 | 4 | reserved, 0 |
 * | 40 | 16 × n | records: slot index u32, type u8 (1 = remap), 3 reserved, main block u64 |
 * | 508 | 4 | CRC-32C of bytes 0–507 |
 *
 * Invariants checked on replay, where the first failure ends the log:
 * - sector k of the region carries sequence `logStartSequence + k`, so sectors
 *   left from before the last checkpoint (lower sequences) never count;
 * - records name consecutive slots, continuing from the checkpoint;
 * - a sector that fails its CRC (a torn write) ends the log: its records were
 *   never acknowledged, because acknowledgement waits for the flush.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { SECTOR_BYTES } from "../constants.ts";
import { crc32c } from "./crc32c.ts";
import { uuidFromBytes, uuidToBytes } from "./uuid.ts";

/** ASCII `DRLG`. */
const LOG_MAGIC = 0x474c5244;
const HEADER_BYTES = 40;
const RECORD_BYTES = 16;
const CRC_OFFSET = SECTOR_BYTES - 4;
const RECORD_TYPE_REMAP = 1;

/** Records that fit in one log sector. */
export const LOG_RECORDS_PER_SECTOR = Math.floor((CRC_OFFSET - HEADER_BYTES) / RECORD_BYTES);

/** One slot handed to a main-disk block. */
export interface RemapRecord {
  slotIndex: number;
  blockIndex: number;
}

/** Which setup and spare a log belongs to, and where it starts. */
export interface LogIdentity {
  setupUuid: string;
  spareIndex: number;
}

/** Sectors needed to log `recordCount` records. */
export function logSectorsFor(recordCount: number): number {
  return Math.ceil(recordCount / LOG_RECORDS_PER_SECTOR);
}

/**
 * Encodes records into consecutive log sectors starting at `firstSequence`.
 *
 * @returns Whole sectors, ready to write at the log position of `firstSequence`.
 */
export function encodeLogSectors(
  identity: LogIdentity,
  firstSequence: number,
  records: readonly RemapRecord[],
): Uint8Array {
  assert(records.length > 0, "a log write carries records");
  const sectorCount = logSectorsFor(records.length);
  const bytes = new Uint8Array(sectorCount * SECTOR_BYTES);
  const uuidBytes = uuidToBytes(identity.setupUuid);
  for (let sector = 0; sector < sectorCount; sector++) {
    const base = sector * SECTOR_BYTES;
    const view = new DataView(bytes.buffer, base, SECTOR_BYTES);
    const sectorRecords = records.slice(
      sector * LOG_RECORDS_PER_SECTOR,
      (sector + 1) * LOG_RECORDS_PER_SECTOR,
    );
    view.setUint32(0, LOG_MAGIC, true);
    view.setUint16(4, sectorRecords.length, true);
    view.setBigUint64(8, BigInt(firstSequence + sector), true);
    bytes.set(uuidBytes, base + 16);
    view.setUint32(32, identity.spareIndex, true);
    sectorRecords.forEach((record, i) => {
      const at = HEADER_BYTES + i * RECORD_BYTES;
      view.setUint32(at, record.slotIndex, true);
      view.setUint8(at + 4, RECORD_TYPE_REMAP);
      view.setBigUint64(at + 8, BigInt(record.blockIndex), true);
    });
    view.setUint32(CRC_OFFSET, crc32c(bytes.subarray(base, base + CRC_OFFSET)), true);
  }
  return bytes;
}

/** What replay found. */
export interface LogReplay {
  /** Main blocks of the logged slots, in slot order, continuing from `firstSlot`. */
  blockIndexes: number[];
  /** Valid sectors at the start of the region. */
  sectorsUsed: number;
  /** Why replay stopped: "end" for an unwritten or stale sector, or the fault found. */
  stopReason: string;
}

/**
 * Replays the log region read from a spare.
 *
 * @param region The whole log region.
 * @param options The identity, first sequence and first slot expected.
 */
export function replayLog(
  region: Uint8Array,
  options: LogIdentity & { startSequence: number; firstSlot: number },
): LogReplay {
  assert(region.length % SECTOR_BYTES === 0, "log region is whole sectors");
  const blockIndexes: number[] = [];
  const sectorTotal = region.length / SECTOR_BYTES;
  let nextSlot = options.firstSlot;
  for (let sector = 0; sector < sectorTotal; sector++) {
    const bytes = region.subarray(sector * SECTOR_BYTES, (sector + 1) * SECTOR_BYTES);
    const view = new DataView(bytes.buffer, bytes.byteOffset, SECTOR_BYTES);
    const stop = (stopReason: string) => ({ blockIndexes, sectorsUsed: sector, stopReason });
    if (view.getUint32(0, true) !== LOG_MAGIC) return stop("end");
    if (view.getBigUint64(8, true) !== BigInt(options.startSequence + sector)) return stop("end");
    if (view.getUint32(CRC_OFFSET, true) !== crc32c(bytes.subarray(0, CRC_OFFSET))) {
      return stop(`torn or corrupt sector ${sector}`);
    }
    if (uuidFromBytes(bytes.subarray(16, 32)) !== options.setupUuid) {
      return stop(`sector ${sector} of another setup`);
    }
    if (view.getUint32(32, true) !== options.spareIndex) {
      return stop(`sector ${sector} of another spare`);
    }
    const recordCount = view.getUint16(4, true);
    if (recordCount < 1 || recordCount > LOG_RECORDS_PER_SECTOR) {
      return stop(`sector ${sector} has a bad count`);
    }
    const sectorBlocks: number[] = [];
    for (let i = 0; i < recordCount; i++) {
      const at = HEADER_BYTES + i * RECORD_BYTES;
      const blockIndex = view.getBigUint64(at + 8, true);
      if (
        view.getUint32(at, true) !== nextSlot + i || view.getUint8(at + 4) !== RECORD_TYPE_REMAP
      ) {
        return stop(`sector ${sector} record ${i} breaks slot order`);
      }
      if (blockIndex > BigInt(Number.MAX_SAFE_INTEGER)) {
        return stop(`sector ${sector} record ${i} out of range`);
      }
      sectorBlocks.push(Number(blockIndex));
    }
    blockIndexes.push(...sectorBlocks);
    nextSlot += recordCount;
  }
  return { blockIndexes, sectorsUsed: sectorTotal, stopReason: "region full" };
}

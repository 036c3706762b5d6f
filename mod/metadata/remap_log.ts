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
 * | 36 | 4 | block size in bytes (0 in sectors written before it was recorded) |
 * | 40 | 16 × n | records: slot index u32, type u8, owner u8, 2 reserved, main block u64 |
 * | 504 | 4 | own slots logged before this sector (version 2; 0 before) |
 * | 508 | 4 | CRC-32C of bytes 0–507 |
 *
 * Record types: 1 = this spare's slot holds the block (its own table); 2 = the
 * slot of spare `owner` holds it (format version 2: every spare logs every
 * spare's remaps, so any one spare knows where every block lives); 3 = the
 * slot of spare `owner` no longer holds the block, which moved to the slot
 * of the record just before it, always in the same sector (a move is logged
 * whole or not at all). Type 1 records carry the spare's own index as owner
 * (version 1 wrote 0 there).
 *
 * Invariants checked on replay, where the first failure ends the log:
 * - sector k of the region carries sequence `logStartSequence + k`, so sectors
 *   left from before the last checkpoint (lower sequences) never count;
 * - records name consecutive slots of their owner, continuing from the checkpoint;
 * - a sector that fails its CRC (a torn write) ends the log: its records were
 *   never acknowledged, because acknowledgement waits for the flush.
 *
 * Each sector names its setup, spare and block size, so the log alone tells
 * which spare it belongs to and where its slots are when every metadata copy
 * is lost (`table_proof.ts`).
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
const OWN_SLOTS_OFFSET = CRC_OFFSET - 4;
const RECORD_TYPE_REMAP = 1;
const RECORD_TYPE_PEER_REMAP = 2;
const RECORD_TYPE_VACATE = 3;

/** Records that fit in one log sector. */
export const LOG_RECORDS_PER_SECTOR = Math.floor((OWN_SLOTS_OFFSET - HEADER_BYTES) / RECORD_BYTES);

/** One slot handed to a main-disk block. */
export interface RemapRecord {
  slotIndex: number;
  blockIndex: number;
  /** The spare whose slot it is. @default the log's own spare */
  ownerIndex?: number;
  /** The slot gave its block up (it moved to the slot of the record before). @default false */
  vacate?: boolean;
}

/** Which setup and spare a log belongs to. */
export interface LogIdentity {
  setupUuid: string;
  spareIndex: number;
}

/** What every sector of a spare's log records besides its remaps. */
export interface LogWriter extends LogIdentity {
  /** The setup's block size, so the log alone locates the data slots. */
  blockBytes: number;
}

/** One log sector that passed its own checks (magic, CRC, record count and ranges). */
export interface LogSector extends LogWriter {
  sequence: number;
  /**
   * The spare's own slots logged before this sector: where its own table
   * stands even when the sector holds only other spares' records (0 in
   * sectors of format version 1).
   */
  ownSlotsBefore: number;
  /** Records as written; replay checks that their slots continue the table. */
  records: (Required<RemapRecord> & { type: number })[];
}

/** The outcome of decoding one log sector. */
export type DecodedLogSector = { valid: true; sector: LogSector } | {
  valid: false;
  reason: string;
};

/** Sectors needed to log `recordCount` records without moves. */
export function logSectorsFor(recordCount: number): number {
  return Math.ceil(recordCount / LOG_RECORDS_PER_SECTOR);
}

/**
 * Splits records into sectors: full sectors, except that a vacate record
 * stays in the sector of the remap before it (a move is one sector's fact).
 */
export function packLogRecords(records: readonly RemapRecord[]): RemapRecord[][] {
  const sectors: RemapRecord[][] = [];
  let current: RemapRecord[] = [];
  records.forEach((record, i) => {
    assert(!record.vacate || (i > 0 && !records[i - 1]!.vacate), "a vacate follows its remap");
    const pairFollows = records[i + 1]?.vacate === true;
    const room = LOG_RECORDS_PER_SECTOR - current.length;
    if (room === 0 || (pairFollows && room < 2)) {
      sectors.push(current);
      current = [];
    }
    current.push(record);
  });
  if (current.length > 0) sectors.push(current);
  return sectors;
}

/**
 * Encodes records into consecutive log sectors starting at `firstSequence`.
 *
 * @returns Whole sectors, ready to write at the log position of `firstSequence`.
 */
export function encodeLogSectors(
  identity: LogWriter & { ownSlotsBefore?: number },
  firstSequence: number,
  records: readonly RemapRecord[],
): Uint8Array {
  let ownSlots = identity.ownSlotsBefore ?? 0;
  assert(records.length > 0, "a log write carries records");
  const packed = packLogRecords(records);
  const sectorCount = packed.length;
  const bytes = new Uint8Array(sectorCount * SECTOR_BYTES);
  const uuidBytes = uuidToBytes(identity.setupUuid);
  for (let sector = 0; sector < sectorCount; sector++) {
    const base = sector * SECTOR_BYTES;
    const view = new DataView(bytes.buffer, base, SECTOR_BYTES);
    const sectorRecords = packed[sector]!;
    view.setUint32(0, LOG_MAGIC, true);
    view.setUint16(4, sectorRecords.length, true);
    view.setBigUint64(8, BigInt(firstSequence + sector), true);
    bytes.set(uuidBytes, base + 16);
    view.setUint32(32, identity.spareIndex, true);
    view.setUint32(36, identity.blockBytes, true);
    view.setUint32(OWN_SLOTS_OFFSET, ownSlots, true);
    sectorRecords.forEach((record, i) => {
      const at = HEADER_BYTES + i * RECORD_BYTES;
      const ownerIndex = record.ownerIndex ?? identity.spareIndex;
      const type = record.vacate
        ? RECORD_TYPE_VACATE
        : ownerIndex === identity.spareIndex
        ? RECORD_TYPE_REMAP
        : RECORD_TYPE_PEER_REMAP;
      view.setUint32(at, record.slotIndex, true);
      view.setUint8(at + 4, type);
      view.setUint8(at + 5, ownerIndex);
      if (type === RECORD_TYPE_REMAP) ownSlots++;
      view.setBigUint64(at + 8, BigInt(record.blockIndex), true);
    });
    view.setUint32(CRC_OFFSET, crc32c(bytes.subarray(base, base + CRC_OFFSET)), true);
  }
  return bytes;
}

/**
 * The sequence a log sector claims, before any other check, or `undefined`
 * when it has no log magic (never written, or not a log).
 */
export function logSectorSequence(bytes: Uint8Array): number | undefined {
  assert(bytes.length === SECTOR_BYTES, "one log sector");
  const view = new DataView(bytes.buffer, bytes.byteOffset, SECTOR_BYTES);
  if (view.getUint32(0, true) !== LOG_MAGIC) return undefined;
  const sequence = view.getBigUint64(8, true);
  return sequence > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(sequence);
}

/**
 * Decodes one log sector and checks what it can alone: magic, CRC, record
 * count and record ranges. Whether it continues a log (sequence, setup,
 * spare, slot order) is for the reader to check.
 *
 * @param label How reasons name the sector, e.g. "sector 3".
 */
export function decodeLogSector(bytes: Uint8Array, label: string): DecodedLogSector {
  const sequence = logSectorSequence(bytes);
  if (sequence === undefined) return { valid: false, reason: `${label} is not a log sector` };
  const view = new DataView(bytes.buffer, bytes.byteOffset, SECTOR_BYTES);
  if (view.getUint32(CRC_OFFSET, true) !== crc32c(bytes.subarray(0, CRC_OFFSET))) {
    return { valid: false, reason: `torn or corrupt ${label}` };
  }
  const recordCount = view.getUint16(4, true);
  if (recordCount < 1 || recordCount > LOG_RECORDS_PER_SECTOR) {
    return { valid: false, reason: `${label} has a bad count` };
  }
  const records: LogSector["records"] = [];
  const spareIndex = view.getUint32(32, true);
  for (let i = 0; i < recordCount; i++) {
    const at = HEADER_BYTES + i * RECORD_BYTES;
    const blockIndex = view.getBigUint64(at + 8, true);
    if (blockIndex > BigInt(Number.MAX_SAFE_INTEGER)) {
      return { valid: false, reason: `${label} record ${i} out of range` };
    }
    const type = view.getUint8(at + 4);
    records.push({
      slotIndex: view.getUint32(at, true),
      type,
      blockIndex: Number(blockIndex),
      ownerIndex: type === RECORD_TYPE_REMAP ? spareIndex : view.getUint8(at + 5),
      vacate: type === RECORD_TYPE_VACATE,
    });
  }
  return {
    valid: true,
    sector: {
      sequence,
      setupUuid: uuidFromBytes(bytes.subarray(16, 32)),
      spareIndex,
      blockBytes: view.getUint32(36, true),
      ownSlotsBefore: view.getUint32(OWN_SLOTS_OFFSET, true),
      records,
    },
  };
}

/** Whether a decoded record is one of the log's own spare's slots. */
export function isOwnRecord(record: { type: number }): boolean {
  return record.type === RECORD_TYPE_REMAP;
}

/** What replay found. */
export interface LogReplay {
  /** Main blocks of the spare's own logged slots, in slot order, continuing from `firstSlot`. */
  blockIndexes: number[];
  /** Records of other spares' slots (type 2), in log order. */
  peerRecords: Required<RemapRecord>[];
  /** Slots that gave their block up (type 3), in log order: apply after the remaps. */
  vacated: Required<RemapRecord>[];
  /** Valid sectors at the start of the region. */
  sectorsUsed: number;
  /** Why replay stopped: "end" for an unwritten or stale sector, or the fault found. */
  stopReason: string;
}

/** Options for {@link replayLog}. */
export interface ReplayOptions extends LogIdentity {
  startSequence: number;
  /** The spare's own first slot expected. */
  firstSlot: number;
  /**
   * The next slot expected of each spare (by index) in peer records; a peer
   * record that does not continue its owner ends the log. When absent, peer
   * records are returned without that check (a proof from one spare alone).
   */
  peerNextSlots?: readonly number[];
}

/**
 * Replays the log region read from a spare.
 *
 * @param region The whole log region.
 * @param options The identity, first sequence and first slots expected.
 */
export function replayLog(region: Uint8Array, options: ReplayOptions): LogReplay {
  assert(region.length % SECTOR_BYTES === 0, "log region is whole sectors");
  const blockIndexes: number[] = [];
  const peerRecords: Required<RemapRecord>[] = [];
  const vacated: Required<RemapRecord>[] = [];
  const sectorTotal = region.length / SECTOR_BYTES;
  let nextSlot = options.firstSlot;
  const peerNext = options.peerNextSlots ? [...options.peerNextSlots] : undefined;
  for (let sector = 0; sector < sectorTotal; sector++) {
    const bytes = region.subarray(sector * SECTOR_BYTES, (sector + 1) * SECTOR_BYTES);
    const stop = (stopReason: string) => ({
      blockIndexes,
      peerRecords,
      vacated,
      sectorsUsed: sector,
      stopReason,
    });
    if (logSectorSequence(bytes) !== options.startSequence + sector) return stop("end");
    const decoded = decodeLogSector(bytes, `sector ${sector}`);
    if (!decoded.valid) return stop(decoded.reason);
    if (decoded.sector.setupUuid !== options.setupUuid) {
      return stop(`sector ${sector} of another setup`);
    }
    if (decoded.sector.spareIndex !== options.spareIndex) {
      return stop(`sector ${sector} of another spare`);
    }
    // A sector counts whole or not at all: checked before any of its records is taken.
    let own = nextSlot;
    const peers = peerNext ? [...peerNext] : undefined;
    const broken = decoded.sector.records.findIndex((record, i) => {
      if (record.type === RECORD_TYPE_REMAP) return record.slotIndex !== own++;
      if (record.type === RECORD_TYPE_VACATE) {
        // The slot given up was taken before; the move's remap is the record before.
        const before = decoded.sector.records[i - 1];
        if (!before || before.type === RECORD_TYPE_VACATE) return true;
        if (before.blockIndex !== record.blockIndex) return true;
        if (record.ownerIndex === options.spareIndex) return record.slotIndex >= own;
        return peers !== undefined && !(record.slotIndex < peers[record.ownerIndex]!);
      }
      if (record.type !== RECORD_TYPE_PEER_REMAP) return true;
      if (record.ownerIndex === options.spareIndex) return true;
      if (!peers) return false;
      if (peers[record.ownerIndex] !== record.slotIndex) return true;
      peers[record.ownerIndex]!++;
      return false;
    });
    if (broken >= 0) return stop(`sector ${sector} record ${broken} breaks slot order`);
    for (const record of decoded.sector.records) {
      if (record.type === RECORD_TYPE_REMAP) blockIndexes.push(record.blockIndex);
      else if (record.type === RECORD_TYPE_VACATE) {
        vacated.push({
          ownerIndex: record.ownerIndex,
          slotIndex: record.slotIndex,
          blockIndex: record.blockIndex,
          vacate: true,
        });
      } else {
        peerRecords.push({
          ownerIndex: record.ownerIndex,
          slotIndex: record.slotIndex,
          blockIndex: record.blockIndex,
          vacate: false,
        });
      }
    }
    nextSlot = own;
    if (peers) peerNext!.splice(0, peers.length, ...peers);
  }
  return {
    blockIndexes,
    peerRecords,
    vacated,
    sectorsUsed: sectorTotal,
    stopReason: "region full",
  };
}

/**
 * Checkpoints: the remap table of one spare as a dense array.
 *
 * Entry i (8 bytes, little-endian u64) is the main-disk block held by slot i.
 * The entry count and CRC-32C of the entries live in the metadata copies that
 * point to the checkpoint, so a stale or misdirected checkpoint is detected.
 * Two regions (A, B) alternate: a new checkpoint is written to the region not
 * in use, flushed, and only then do the copies point to it.
 *
 * Each checkpoint is followed, in the same write, by a seal sector that
 * repeats what the copies record about it (entry count, CRC, the log sequence
 * that follows it) and names its setup and spare, so the checkpoint can be
 * proven from the spare alone when every copy is lost (`table_proof.ts`). A
 * checkpoint that fills its region to the last sector has no room for a seal
 * and is written without one.
 *
 * In format version 2 the region also holds the other spares' tables (the
 * peer section), after the seal sector: for each other spare in index order,
 * the dense array of the blocks its slots hold. Their entry counts and one
 * CRC-32C over the section live in the copies' table (`peerEntries`,
 * `peerCrc32c`). The own entries and the seal stay where version 1 put them,
 * so a table is proven from a spare alone as before.
 *
 * Seal sector, little-endian:
 *
 * | offset | width | field |
 * |---|---|---|
 * | 0 | 4 | magic `DRCK` |
 * | 4 | 4 | reserved, 0 |
 * | 8 | 8 | entry count |
 * | 16 | 16 | setup UUID |
 * | 32 | 4 | spare index |
 * | 36 | 4 | CRC-32C of the entries |
 * | 40 | 8 | log sequence of the first log sector after this checkpoint |
 * | 48 | 460 | reserved, 0 |
 * | 508 | 4 | CRC-32C of bytes 0–507 |
 *
 * @module
 */

import { assert } from "../assert.ts";
import { SECTOR_BYTES } from "../constants.ts";
import { crc32c } from "./crc32c.ts";
import { CHECKPOINT_ENTRY_BYTES } from "./spare_layout.ts";
import { uuidFromBytes, uuidToBytes } from "./uuid.ts";

/**
 * The block of a slot that gave its block up (the block moved to another
 * slot, format version 2): in memory -1, on disk all ones.
 */
export const VACATED = -1;

/** ASCII `DRCK`. */
const SEAL_MAGIC = 0x4b435244;
const SEAL_CRC_OFFSET = SECTOR_BYTES - 4;

/** A checkpoint ready to write: whole sectors, and the CRC of its entries. */
export interface EncodedCheckpoint {
  bytes: Uint8Array;
  crc32c: number;
}

/** Encodes `entryCount` entries of `blockIndexes` (slot order). */
export function encodeCheckpoint(
  blockIndexes: ArrayLike<number>,
  entryCount: number,
): EncodedCheckpoint {
  assert(entryCount <= blockIndexes.length, "checkpoint entries exist");
  const entryBytes = entryCount * CHECKPOINT_ENTRY_BYTES;
  const bytes = new Uint8Array(Math.ceil(entryBytes / SECTOR_BYTES) * SECTOR_BYTES);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < entryCount; i++) {
    const blockIndex = blockIndexes[i]!;
    if (blockIndex === VACATED) {
      view.setUint32(i * 8, 0xffff_ffff, true);
      view.setUint32(i * 8 + 4, 0xffff_ffff, true);
      continue;
    }
    view.setUint32(i * 8, blockIndex % 0x1_0000_0000, true);
    view.setUint32(i * 8 + 4, Math.floor(blockIndex / 0x1_0000_0000), true);
  }
  return { bytes, crc32c: crc32c(bytes.subarray(0, entryBytes)) };
}

/**
 * Decodes a checkpoint read from disk.
 *
 * @returns The block indexes, or `undefined` when the CRC does not match.
 */
export function decodeCheckpoint(
  bytes: Uint8Array,
  entryCount: number,
  expectedCrc: number,
): number[] | undefined {
  const entryBytes = entryCount * CHECKPOINT_ENTRY_BYTES;
  assert(bytes.length >= entryBytes, "checkpoint read covers its entries");
  if (crc32c(bytes.subarray(0, entryBytes)) !== expectedCrc) return undefined;
  return decodeEntries(bytes, { firstEntry: 0, entryCount });
}

/** Entries `firstEntry` onwards as block indexes, or `undefined` when one is out of range. */
function decodeEntries(
  bytes: Uint8Array,
  range: { firstEntry: number; entryCount: number },
): number[] | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const blockIndexes = new Array<number>(range.entryCount);
  for (let i = 0; i < range.entryCount; i++) {
    const at = (range.firstEntry + i) * CHECKPOINT_ENTRY_BYTES;
    const high = view.getUint32(at + 4, true);
    const low = view.getUint32(at, true);
    if (high === 0xffff_ffff && low === 0xffff_ffff) {
      blockIndexes[i] = VACATED;
      continue;
    }
    if (high > 0x1fffff) return undefined;
    blockIndexes[i] = high * 0x1_0000_0000 + low;
  }
  return blockIndexes;
}

/** What a seal says about the checkpoint in front of it. */
export interface CheckpointSeal {
  setupUuid: string;
  spareIndex: number;
  entryCount: number;
  crc32c: number;
  /** Log sequence of the first log sector written after this checkpoint. */
  logStartSequence: number;
}

/** Where the seal of a checkpoint of `entryCount` entries starts, from the start of its region. */
export function sealOffsetBytes(entryCount: number): number {
  return Math.ceil(entryCount * CHECKPOINT_ENTRY_BYTES / SECTOR_BYTES) * SECTOR_BYTES;
}

/** Encodes the seal sector written right after a checkpoint's entries. */
export function encodeCheckpointSeal(seal: CheckpointSeal): Uint8Array {
  const bytes = new Uint8Array(SECTOR_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, SEAL_MAGIC, true);
  view.setBigUint64(8, BigInt(seal.entryCount), true);
  bytes.set(uuidToBytes(seal.setupUuid), 16);
  view.setUint32(32, seal.spareIndex, true);
  view.setUint32(36, seal.crc32c, true);
  view.setBigUint64(40, BigInt(seal.logStartSequence), true);
  view.setUint32(SEAL_CRC_OFFSET, crc32c(bytes.subarray(0, SEAL_CRC_OFFSET)), true);
  return bytes;
}

/**
 * Decodes a seal sector.
 *
 * @returns The seal, or `undefined` when the sector is not an intact seal.
 */
export function decodeCheckpointSeal(bytes: Uint8Array): CheckpointSeal | undefined {
  assert(bytes.length === SECTOR_BYTES, "one seal sector");
  const view = new DataView(bytes.buffer, bytes.byteOffset, SECTOR_BYTES);
  if (view.getUint32(0, true) !== SEAL_MAGIC) return undefined;
  if (view.getUint32(SEAL_CRC_OFFSET, true) !== crc32c(bytes.subarray(0, SEAL_CRC_OFFSET))) {
    return undefined;
  }
  const entryCount = view.getBigUint64(8, true);
  const logStartSequence = view.getBigUint64(40, true);
  if (
    entryCount > BigInt(Number.MAX_SAFE_INTEGER) ||
    logStartSequence > BigInt(Number.MAX_SAFE_INTEGER)
  ) {
    return undefined;
  }
  return {
    setupUuid: uuidFromBytes(bytes.subarray(16, 32)),
    spareIndex: view.getUint32(32, true),
    entryCount: Number(entryCount),
    crc32c: view.getUint32(36, true),
    logStartSequence: Number(logStartSequence),
  };
}

/** Where the peer section of a checkpoint with `ownEntries` own entries starts in its region. */
export function peerSectionOffsetBytes(ownEntries: number): number {
  return sealOffsetBytes(ownEntries) + SECTOR_BYTES;
}

/**
 * Encodes the other spares' tables, in spare order, skipping `ownIndex`.
 *
 * @returns The section (whole sectors), its CRC and the entry count per spare (0 for `ownIndex`).
 */
export function encodePeerSection(
  peers: readonly (readonly number[])[],
  ownIndex: number,
): EncodedCheckpoint & { peerEntries: number[] } {
  const peerEntries = peers.map((blocks, index) => index === ownIndex ? 0 : blocks.length);
  const all: number[] = [];
  peers.forEach((blocks, index) => {
    if (index !== ownIndex) { for (const block of blocks) all.push(block); }
  });
  return { ...encodeCheckpoint(all, all.length), peerEntries };
}

/**
 * Decodes a peer section read from disk.
 *
 * @returns The block lists per spare (empty for `ownIndex`), or `undefined` when the CRC does not match.
 */
export function decodePeerSection(
  bytes: Uint8Array,
  peerEntries: readonly number[],
  expectedCrc: number,
): number[][] | undefined {
  const total = peerEntries.reduce((sum, count) => sum + count, 0);
  assert(bytes.length >= total * CHECKPOINT_ENTRY_BYTES, "the read covers the section");
  if (crc32c(bytes.subarray(0, total * CHECKPOINT_ENTRY_BYTES)) !== expectedCrc) return undefined;
  const peers: number[][] = [];
  let firstEntry = 0;
  for (const entryCount of peerEntries) {
    const blocks = decodeEntries(bytes, { firstEntry, entryCount });
    if (!blocks) return undefined;
    peers.push(blocks);
    firstEntry += entryCount;
  }
  return peers;
}

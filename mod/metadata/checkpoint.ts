/**
 * Checkpoints: the remap table of one spare as a dense array.
 *
 * Entry i (8 bytes, little-endian u64) is the main-disk block held by slot i.
 * The entry count and CRC-32C of the entries live in the metadata copies that
 * point to the checkpoint, so a stale or misdirected checkpoint is detected.
 * Two regions (A, B) alternate: a new checkpoint is written to the region not
 * in use, flushed, and only then do the copies point to it.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { SECTOR_BYTES } from "../constants.ts";
import { crc32c } from "./crc32c.ts";
import { CHECKPOINT_ENTRY_BYTES } from "./spare_layout.ts";

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
  const view = new DataView(bytes.buffer, bytes.byteOffset, entryBytes);
  const blockIndexes = new Array<number>(entryCount);
  for (let i = 0; i < entryCount; i++) {
    const high = view.getUint32(i * 8 + 4, true);
    if (high > 0x1fffff) return undefined;
    blockIndexes[i] = high * 0x1_0000_0000 + view.getUint32(i * 8, true);
  }
  return blockIndexes;
}

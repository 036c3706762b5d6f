/**
 * Where everything lives on a spare: metadata copies, remap log, two
 * checkpoint regions, then the data slots.
 *
 * The layout is computed once at `create` and stored in every copy, so a
 * later version may compute it differently without moving existing data.
 *
 * Invariants (asserted by {@link checkLayout}):
 * - the five copies, the log, both checkpoint regions and the data slots are disjoint;
 * - data slots start on a {@link DATA_ALIGN_BYTES} boundary, after all metadata;
 * - each checkpoint region holds one 8-byte entry per slot, and (format
 *   version 2) the seal and one entry per slot of every other spare of the
 *   setup ({@link checkpointBytesFor}; checked where the setup is known).
 *
 * @module
 */

import { assert } from "../assert.ts";
import {
  BLOCK_BYTES_MAX,
  BLOCK_BYTES_MIN,
  COPY_BYTES,
  COPY_SECTORS,
  DATA_ALIGN_BYTES,
  LOG_BYTES,
  LOG_OFFSET_BYTES,
  SECTOR_BYTES,
  SPARE_SLOTS_MIN,
} from "../constants.ts";

/** Bytes of one checkpoint entry: the main-disk block index held by a slot. */
export const CHECKPOINT_ENTRY_BYTES = 8;

/** Byte positions of the regions of one spare. */
export interface SpareLayout {
  blockBytes: number;
  logOffsetBytes: number;
  logBytes: number;
  /** Start of checkpoint region A and B. */
  checkpointOffsetBytes: [number, number];
  checkpointBytes: number;
  dataOffsetBytes: number;
  slotCount: number;
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

/**
 * Bytes a checkpoint of `ownEntries` own and `peerEntries` peer entries needs
 * in its region: without peers, the entries alone (the seal is written when
 * there is room); with peers, entries, the seal sector and the peer section
 * (`checkpoint.ts`), each rounded to whole sectors.
 */
export function checkpointBytesFor(ownEntries: number, peerEntries: number): number {
  const ownBytes = ownEntries * CHECKPOINT_ENTRY_BYTES;
  if (peerEntries === 0) return ownBytes;
  return alignUp(ownBytes, SECTOR_BYTES) + SECTOR_BYTES +
    alignUp(peerEntries * CHECKPOINT_ENTRY_BYTES, SECTOR_BYTES);
}

function layoutForSlots(slotCount: number, blockBytes: number, peerSlots: number): SpareLayout {
  const checkpointBytes = alignUp(checkpointBytesFor(slotCount, peerSlots), DATA_ALIGN_BYTES);
  const checkpointA = LOG_OFFSET_BYTES + LOG_BYTES;
  const checkpointB = checkpointA + checkpointBytes;
  return {
    blockBytes,
    logOffsetBytes: LOG_OFFSET_BYTES,
    logBytes: LOG_BYTES,
    checkpointOffsetBytes: [checkpointA, checkpointB],
    checkpointBytes,
    dataOffsetBytes: checkpointB + checkpointBytes,
    slotCount,
  };
}

function layoutEndBytes(layout: SpareLayout): number {
  return layout.dataOffsetBytes + layout.slotCount * layout.blockBytes;
}

/**
 * Computes the layout that gives a spare of `sizeBytes` the most data slots.
 *
 * @param peerSlots The slots of the setup's other spares, which each
 *   checkpoint region must also hold (format version 2). @default 0
 * @returns The layout, or `undefined` when fewer than {@link SPARE_SLOTS_MIN} slots fit.
 */
export function computeLayout(
  sizeBytes: number,
  blockBytes: number,
  peerSlots = 0,
): SpareLayout | undefined {
  assert(blockBytes >= BLOCK_BYTES_MIN && blockBytes <= BLOCK_BYTES_MAX, "block size in range");
  // The end of the layout grows with the slot count, so the largest count
  // that fits is found by bisection.
  let fits = SPARE_SLOTS_MIN - 1;
  let tooMany = Math.floor(sizeBytes / blockBytes) + 1;
  while (tooMany - fits > 1) {
    const middle = Math.floor((fits + tooMany) / 2);
    if (layoutEndBytes(layoutForSlots(middle, blockBytes, peerSlots)) <= sizeBytes) fits = middle;
    else tooMany = middle;
  }
  if (fits < SPARE_SLOTS_MIN) return undefined;
  return checkLayout(layoutForSlots(fits, blockBytes, peerSlots), sizeBytes);
}

/** The smallest spare size that {@link computeLayout} accepts for `blockBytes`. */
export function minimumSpareBytes(blockBytes: number): number {
  return layoutEndBytes(layoutForSlots(SPARE_SLOTS_MIN, blockBytes, 0));
}

/**
 * Checks a layout read from disk or computed here against its invariants.
 *
 * @returns The same layout.
 * @throws {AssertionError} When regions overlap or lie outside the spare.
 */
export function checkLayout(layout: SpareLayout, sizeBytes: number): SpareLayout {
  const lastCopyEnd = COPY_SECTORS[COPY_SECTORS.length - 1]! * SECTOR_BYTES + COPY_BYTES;
  const [checkpointA, checkpointB] = layout.checkpointOffsetBytes;
  assert(layout.logOffsetBytes >= lastCopyEnd, "the log starts after the metadata copies");
  assert(checkpointA >= layout.logOffsetBytes + layout.logBytes, "checkpoint A after the log");
  assert(checkpointB >= checkpointA + layout.checkpointBytes, "checkpoint B after checkpoint A");
  assert(layout.dataOffsetBytes >= checkpointB + layout.checkpointBytes, "data after checkpoints");
  assert(layout.dataOffsetBytes % DATA_ALIGN_BYTES === 0, "data slots aligned");
  assert(
    layout.checkpointBytes >= layout.slotCount * CHECKPOINT_ENTRY_BYTES,
    "checkpoint holds every slot",
  );
  assert(layoutEndBytes(layout) <= sizeBytes, "slots end inside the spare");
  assert(layout.logBytes % SECTOR_BYTES === 0, "the log is whole sectors");
  return layout;
}

/** Byte offset of a data slot on its spare. */
export function slotOffsetBytes(layout: SpareLayout, slotIndex: number): number {
  assert(
    Number.isSafeInteger(slotIndex) && slotIndex >= 0 && slotIndex < layout.slotCount,
    "slot index in range",
  );
  return layout.dataOffsetBytes + slotIndex * layout.blockBytes;
}

/**
 * Whether a spare's checkpoint regions hold its own slots and `peerSlots`
 * slots of the other spares (format version 2).
 */
export function holdsPeers(layout: SpareLayout, peerSlots: number): boolean {
  return checkpointBytesFor(layout.slotCount, peerSlots) <= layout.checkpointBytes;
}

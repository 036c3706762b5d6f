/**
 * The in-memory remap table: main-disk block → (spare, slot), O(1) per lookup.
 *
 * Open addressing with linear probing over typed arrays, so one million
 * entries cost about 26 bytes each at the worst load factor instead of the
 * ~80 a `Map` costs, and a lookup touches one or two cache lines (neighbouring
 * blocks share theirs, see GROUP_BLOCKS). Entries are
 * never removed: a remapped block stays remapped, as in drive firmware.
 *
 * Beside the buckets, a summary keeps one bit per extent of
 * {@link SUMMARY_EXTENT_BLOCKS} blocks, set once a block of the extent is
 * remapped: a sequential request skips the lookups of extents without remaps
 * ({@link RemapTableReader.extentIsClear}), which is most of them when remaps
 * are spread over a large disk.
 *
 * The arrays live in `SharedArrayBuffer`s so connection workers can look
 * blocks up without a message ({@link RemapTableReader}). Only the owning
 * thread inserts, and only while no reader is inside (the cross-thread gate of
 * the engine); a grow replaces the arrays and bumps {@link RemapTable.generation},
 * so readers know to take the new ones.
 *
 * @example
 * ```ts
 * import { RemapTable } from "./remap_table.ts";
 * const table = new RemapTable();
 * table.insert(1234, { spareIndex: 0, slotIndex: 7 });
 * table.lookup(1234); // { spareIndex: 0, slotIndex: 7 }
 * ```
 *
 * @module
 */

import { assert } from "../assert.ts";
import { SPARES_MAX } from "../constants.ts";

/** Where a remapped block lives. */
export interface SlotLocation {
  spareIndex: number;
  slotIndex: number;
}

const CAPACITY_MIN = 1024;
/**
 * Blocks per summary bit: 256 KiB at 4 KiB blocks, so a 1 MiB request checks
 * four bits. With 1M remaps over 1 TiB (one block in 268), 21 % of extents
 * hold a remap and a 1 MiB request looks up about 54 blocks instead of 256.
 */
export const SUMMARY_EXTENT_BLOCKS = 64;
/**
 * Summary bits at most: 8 MiB, which covers a 16 TiB disk of 4 KiB blocks
 * bit for bit. Extents past it share bits (extent modulo the bit count): a
 * shared bit can only be set needlessly, never clear for an extent with a remap.
 */
const SUMMARY_BITS_MAX = 2 ** 26;
/** Summary bits at least, so a table made without a disk size still has one. */
const SUMMARY_BITS_MIN = 2 ** 12;
/** Grow when more than half full: probes stay short. */
const LOAD_FACTOR_MAX = 0.5;
/** Keys are stored plus one so that zero marks an empty bucket. */
const EMPTY = 0;

/** The table's arrays, as handed to a {@link RemapTableReader} on another thread. */
export interface RemapTableArrays {
  keys: Float64Array;
  slots: Uint32Array;
  spares: Uint8Array;
  /** One bit per extent (see SUMMARY_EXTENT_BLOCKS); the same array for the table's lifetime. */
  summary: Uint32Array;
}

/** Block index → slot location. */
export class RemapTable {
  #keys: Float64Array;
  #slots: Uint32Array;
  #spares: Uint8Array;
  readonly #summary: Uint32Array;
  #size = 0;
  #mask: number;
  #generation = 0;

  /**
   * @param expectedEntries Sizes the buckets so that many inserts do not grow them.
   * @param blockCount The disk's blocks: sizes the summary to cover them bit for bit.
   */
  constructor(expectedEntries = 0, blockCount = 0) {
    let capacity = CAPACITY_MIN;
    while (expectedEntries > capacity * LOAD_FACTOR_MAX) capacity *= 2;
    this.#keys = sharedArray(Float64Array, capacity);
    this.#slots = sharedArray(Uint32Array, capacity);
    this.#spares = sharedArray(Uint8Array, capacity);
    this.#mask = capacity - 1;
    let summaryBits = SUMMARY_BITS_MIN;
    while (summaryBits * SUMMARY_EXTENT_BLOCKS < blockCount && summaryBits < SUMMARY_BITS_MAX) {
      summaryBits *= 2;
    }
    this.#summary = sharedArray(Uint32Array, summaryBits / 32);
  }

  /** Bumped each time the arrays are replaced by bigger ones. */
  get generation(): number {
    return this.#generation;
  }

  /** The current arrays, for a reader on another thread. */
  get arrays(): RemapTableArrays {
    return { keys: this.#keys, slots: this.#slots, spares: this.#spares, summary: this.#summary };
  }

  /** Remapped blocks. */
  get size(): number {
    return this.#size;
  }

  /** Bytes held by the table's arrays. */
  get memoryBytes(): number {
    return this.#keys.byteLength + this.#slots.byteLength + this.#spares.byteLength +
      this.#summary.byteLength;
  }

  /** The slot of a block, or `undefined` when the block is not remapped. */
  lookup(blockIndex: number): SlotLocation | undefined {
    const bucket = this.#find(blockIndex);
    if (this.#keys[bucket] === EMPTY) return undefined;
    return { spareIndex: this.#spares[bucket]!, slotIndex: this.#slots[bucket]! };
  }

  /** Whether a block is remapped, without allocating. */
  has(blockIndex: number): boolean {
    return this.#keys[this.#find(blockIndex)] !== EMPTY;
  }

  /** True when no block of the extent holding `blockIndex` is remapped (see RemapTableReader). */
  extentIsClear(blockIndex: number): boolean {
    return extentIsClear(this.#summary, blockIndex);
  }

  /** The bucket holding `blockIndex`, or -1 when it is not remapped (see RemapTableReader). */
  bucketOf(blockIndex: number): number {
    const bucket = this.#find(blockIndex);
    return this.#keys[bucket] === EMPTY ? -1 : bucket;
  }

  /** The spare index of an occupied bucket. */
  spareAt(bucket: number): number {
    return this.#spares[bucket]!;
  }

  /** The slot index of an occupied bucket. */
  slotAt(bucket: number): number {
    return this.#slots[bucket]!;
  }

  /** Records a remap; a block is remapped at most once. */
  insert(blockIndex: number, location: SlotLocation): void {
    assert(this.tryInsert(blockIndex, location), `block ${blockIndex} is remapped only once`);
  }

  /**
   * Records a remap unless the block is remapped already (one lookup for both).
   *
   * @returns Whether it was recorded; false leaves the table as it was.
   */
  tryInsert(blockIndex: number, location: SlotLocation): boolean {
    assert(Number.isSafeInteger(blockIndex) && blockIndex >= 0, "block index is a safe integer");
    assert(location.spareIndex >= 0 && location.spareIndex < SPARES_MAX, "spare index in range");
    assert(location.slotIndex >= 0 && location.slotIndex <= 0xffff_ffff, "slot index fits 32 bits");
    if ((this.#size + 1) > this.#keys.length * LOAD_FACTOR_MAX) this.#grow();
    const bucket = this.#find(blockIndex);
    if (this.#keys[bucket] !== EMPTY) return false;
    this.#keys[bucket] = blockIndex + 1;
    this.#slots[bucket] = location.slotIndex;
    this.#spares[bucket] = location.spareIndex;
    markExtent(this.#summary, blockIndex);
    this.#size++;
    return true;
  }

  /**
   * Moves a remapped block to another slot (its spare failed). Only while no
   * reader is inside the gate, as an insert.
   */
  move(blockIndex: number, location: SlotLocation): void {
    assert(location.spareIndex >= 0 && location.spareIndex < SPARES_MAX, "spare index in range");
    assert(location.slotIndex >= 0 && location.slotIndex <= 0xffff_ffff, "slot index fits 32 bits");
    const bucket = this.#find(blockIndex);
    assert(this.#keys[bucket] !== EMPTY, `block ${blockIndex} is remapped before it moves`);
    this.#slots[bucket] = location.slotIndex;
    this.#spares[bucket] = location.spareIndex;
  }

  /** Calls `visit` for every entry, in no particular order. */
  forEach(visit: (blockIndex: number, location: SlotLocation) => void): void {
    for (let bucket = 0; bucket < this.#keys.length; bucket++) {
      const key = this.#keys[bucket]!;
      if (key !== EMPTY) {
        visit(key - 1, { spareIndex: this.#spares[bucket]!, slotIndex: this.#slots[bucket]! });
      }
    }
  }

  #find(blockIndex: number): number {
    return findBucket(this.#keys, this.#mask, blockIndex);
  }

  #grow(): void {
    const keys = this.#keys;
    const slots = this.#slots;
    const spares = this.#spares;
    const capacity = keys.length * 2;
    this.#keys = sharedArray(Float64Array, capacity);
    this.#slots = sharedArray(Uint32Array, capacity);
    this.#spares = sharedArray(Uint8Array, capacity);
    this.#mask = capacity - 1;
    this.#generation++;
    for (let bucket = 0; bucket < keys.length; bucket++) {
      const key = keys[bucket]!;
      if (key === EMPTY) continue;
      const target = this.#find(key - 1);
      this.#keys[target] = key;
      this.#slots[target] = slots[bucket]!;
      this.#spares[target] = spares[bucket]!;
    }
  }
}

/**
 * Lookups over a {@link RemapTable}'s arrays from another thread. The owner
 * inserts only while no reader is inside its gate, so a lookup never sees a
 * half-written entry.
 */
export class RemapTableReader {
  #keys: Float64Array;
  #slots: Uint32Array;
  #spares: Uint8Array;
  readonly #summary: Uint32Array;
  #mask: number;

  constructor(arrays: RemapTableArrays) {
    assert(
      arrays.keys.length > 0 && (arrays.keys.length & (arrays.keys.length - 1)) === 0,
      "power-of-two capacity",
    );
    this.#keys = arrays.keys;
    this.#slots = arrays.slots;
    this.#spares = arrays.spares;
    this.#summary = arrays.summary;
    this.#mask = arrays.keys.length - 1;
  }

  /**
   * True when no block of the extent holding `blockIndex` (the
   * SUMMARY_EXTENT_BLOCKS-aligned run around it) is remapped; false when one
   * may be, so its blocks must be looked up one by one.
   */
  extentIsClear(blockIndex: number): boolean {
    return extentIsClear(this.#summary, blockIndex);
  }

  /**
   * The bucket holding `blockIndex`, or -1 when it is not remapped; read the
   * location with {@link spareAt} and {@link slotAt} (no allocation per lookup).
   */
  bucketOf(blockIndex: number): number {
    const bucket = findBucket(this.#keys, this.#mask, blockIndex);
    return this.#keys[bucket] === EMPTY ? -1 : bucket;
  }

  /** The spare index of an occupied bucket. */
  spareAt(bucket: number): number {
    return this.#spares[bucket]!;
  }

  /** The slot index of an occupied bucket. */
  slotAt(bucket: number): number {
    return this.#slots[bucket]!;
  }
}

/** The summary bit of a block's extent; extents past the summary's reach share bits. */
function extentBit(summary: Uint32Array, blockIndex: number): number {
  const extent = Math.floor(blockIndex / SUMMARY_EXTENT_BLOCKS);
  const bits = summary.length * 32;
  // Bit operations are exact only below 2^31; past that the (slower) modulo is.
  return extent <= 0x7fff_ffff ? extent & (bits - 1) : extent % bits;
}

function extentIsClear(summary: Uint32Array, blockIndex: number): boolean {
  const bit = extentBit(summary, blockIndex);
  return (summary[bit >>> 5]! & (1 << (bit & 31))) === 0;
}

function markExtent(summary: Uint32Array, blockIndex: number): void {
  const bit = extentBit(summary, blockIndex);
  summary[bit >>> 5]! |= 1 << (bit & 31);
}

function sharedArray<T>(
  type: { new (buffer: SharedArrayBuffer): T; BYTES_PER_ELEMENT: number },
  length: number,
): T {
  return new type(new SharedArrayBuffer(length * type.BYTES_PER_ELEMENT));
}

/**
 * Consecutive blocks hash as groups of this many, to neighbouring buckets: the
 * lookups of a sequential request then touch one cache line of keys per group
 * (8 keys of 8 bytes) instead of one line per block. Each miss costs a trip to
 * memory once the table outgrows the caches, and a 1 MiB request looks up 256
 * blocks. With 1M remaps, 1 MiB QD8 went from about 5350 to 5700 MiB/s (reads)
 * and 4770 to 5190 (writes) with one remapped block in 268, in a development
 * run side by side with the per-block hash.
 */
const GROUP_SHIFT = 3;
const GROUP_BLOCKS = 1 << GROUP_SHIFT;

function findBucket(keys: Float64Array, mask: number, blockIndex: number): number {
  const key = blockIndex + 1;
  // Int32 arithmetic: the shift drops high hash bits the mask drops anyway.
  let bucket = ((hashBlock(Math.floor(blockIndex / GROUP_BLOCKS)) << GROUP_SHIFT) |
    (blockIndex & (GROUP_BLOCKS - 1))) & mask;
  for (let probes = 0; probes <= mask; probes++) {
    const found = keys[bucket];
    if (found === EMPTY || found === key) return bucket;
    bucket = (bucket + 1) & mask;
  }
  return assertNeverFull();
}

function assertNeverFull(): never {
  throw new Error("remap table has no empty bucket: the load factor invariant is broken");
}

/** Mixes both 32-bit halves of a block index (a murmur3-style finaliser). */
function hashBlock(blockIndex: number): number {
  let hash = (blockIndex >>> 0) ^ Math.imul(Math.floor(blockIndex / 0x1_0000_0000), 0x9e3779b1);
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  return (hash ^ (hash >>> 16)) >>> 0;
}

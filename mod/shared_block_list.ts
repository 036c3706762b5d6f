/**
 * A sorted list of block indexes in shared memory: one thread publishes it,
 * others ask whether a range of blocks touches it, without a message. The
 * engine publishes its pending blocks this way, and a device the ranges it
 * leaves to itself under direct access (`Device.directAccess`); the NBD data
 * plane's workers send the requests that touch them to the engine's thread.
 *
 * A sequence lock orders it: the writer makes the sequence odd, writes, and
 * makes it even again; a reader retries while the sequence is odd or moved.
 * A list longer than the capacity (or a writer that wants every request) is
 * published as "everything": readers then find every range listed, which
 * only sends more requests the slow, exact way.
 *
 * @example
 * ```ts
 * import { SharedBlockListReader, SharedBlockListWriter } from "./shared_block_list.ts";
 * const writer = new SharedBlockListWriter(16);
 * writer.publish([7, 3]);
 * const reader = new SharedBlockListReader(writer.buffers); // on any thread
 * reader.anyBetween(4, 8); // true: block 7
 * reader.anyBetween(4, 6); // false
 * ```
 *
 * @module
 */

import { assert } from "./assert.ts";

/** Words of the control array. */
const CONTROL = {
  /** Odd while the writer changes the list (a seqlock). */
  SEQUENCE: 0,
  COUNT: 1,
  /** 1 when every range counts as listed. */
  EVERYTHING: 2,
  WORDS: 4,
} as const;

/** The shared arrays; structured-cloneable, to post to a worker. */
export interface SharedBlockListBuffers {
  control: Int32Array;
  blocks: Float64Array;
}

/** The publishing side (one thread). */
export class SharedBlockListWriter {
  readonly buffers: SharedBlockListBuffers;

  /** @param capacity Most blocks listed exactly; more are published as "everything". */
  constructor(capacity: number) {
    assert(Number.isSafeInteger(capacity) && capacity > 0, "capacity is a positive integer");
    this.buffers = {
      control: new Int32Array(new SharedArrayBuffer(CONTROL.WORDS * 4)),
      blocks: new Float64Array(new SharedArrayBuffer(capacity * 8)),
    };
  }

  /** Replaces the list. */
  publish(blocks: Iterable<number>): void {
    const sorted = [...blocks].sort((a, b) => a - b);
    const { control, blocks: shared } = this.buffers;
    Atomics.add(control, CONTROL.SEQUENCE, 1);
    const fits = sorted.length <= shared.length;
    if (fits) shared.set(sorted);
    Atomics.store(control, CONTROL.COUNT, fits ? sorted.length : 0);
    Atomics.store(control, CONTROL.EVERYTHING, fits ? 0 : 1);
    Atomics.add(control, CONTROL.SEQUENCE, 1);
  }

  /** Makes every range count as listed, until the next {@link publish}. */
  publishEverything(): void {
    const { control } = this.buffers;
    Atomics.add(control, CONTROL.SEQUENCE, 1);
    Atomics.store(control, CONTROL.EVERYTHING, 1);
    Atomics.add(control, CONTROL.SEQUENCE, 1);
  }
}

/** The asking side (any thread). */
export class SharedBlockListReader {
  readonly #control: Int32Array;
  readonly #blocks: Float64Array;

  constructor(buffers: SharedBlockListBuffers) {
    this.#control = buffers.control;
    this.#blocks = buffers.blocks;
  }

  /** Whether every range counts as listed. */
  get everything(): boolean {
    return Atomics.load(this.#control, CONTROL.EVERYTHING) !== 0;
  }

  /** Whether a listed block lies from `firstBlock` to `lastBlock`, inclusive. */
  anyBetween(firstBlock: number, lastBlock: number): boolean {
    for (;;) {
      const sequence = Atomics.load(this.#control, CONTROL.SEQUENCE);
      if (sequence % 2 !== 0) continue;
      const found = Atomics.load(this.#control, CONTROL.EVERYTHING) !== 0 ||
        this.#listedBetween(Atomics.load(this.#control, CONTROL.COUNT), firstBlock, lastBlock);
      if (Atomics.load(this.#control, CONTROL.SEQUENCE) === sequence) return found;
    }
  }

  /** Binary search for the first listed block ≥ firstBlock. */
  #listedBetween(count: number, firstBlock: number, lastBlock: number): boolean {
    const end = Math.min(count, this.#blocks.length);
    let low = 0;
    let high = end;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.#blocks[middle]! < firstBlock) low = middle + 1;
      else high = middle;
    }
    return low < end && this.#blocks[low]! <= lastBlock;
  }
}

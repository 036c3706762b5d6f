/**
 * The fault model of {@link FaultyDevice}: which failures a test can inject
 * into a `Device`, and how they behave. Longer prose: `docs/fault_model.md`.
 *
 * Bad blocks (after dm-dust). The device is cut into blocks of `blockBytes`
 * (512 or 4096, say); a set of them is bad, each for reads, writes or both
 * ({@link FailOn}; blocks given by index fail both).
 * - A read that touches a read-failing block fails as a whole with EIO, like
 *   a disk's failing command; nothing is returned. The error names the whole
 *   request.
 * - A write (or writeZeroes) that touches a write-failing block, in mode
 *   `"fail"`, fails as a whole with EIO and writes nothing, like a dying sector.
 * - In mode `"heal"`, a write that covers whole bad blocks succeeds and removes
 *   them from the set, like drive firmware reallocating a sector on write.
 *   A write that covers a write-failing block only in part fails with EIO: the
 *   drive would have to read the rest of the failing block to merge it (512e
 *   disks do exactly this with 4 KiB physical sectors).
 * - Writes pass over read-only-failing blocks; only mode `"heal"` removes them
 *   (when covered wholly), so in mode `"fail"` a block can stay unreadable
 *   however often it is written.
 * - Discard never fails and never heals: it is advisory.
 * - The set can change while requests run; a request sees the set as it was
 *   when it started.
 *
 * Random faults (after nbdkit's error filter). Each read, write (including
 * writeZeroes) and flush fails with EIO with its own probability, drawn from a
 * seeded PRNG, so a seed replays the same faults for the same request order.
 * A failed request is not forwarded: a failed write stores nothing, a failed
 * flush makes nothing durable (with `MemoryDevice.crash()`, the unflushed
 * writes are then lost).
 *
 * Removal (a pulled disk, a deleted device). Once removed, every request
 * (read, write, writeZeroes, flush, discard) fails with `"ENODEV"`, as the
 * device layer reports a disk that vanished; nothing brings it back.
 *
 * Weak and slow blocks (a sector going bad, as a scanner meets it). A read
 * that touches a weak block fails with EIO every other time, starting with
 * the first: it succeeds only on a retry, as a marginal sector read again
 * by the drive does. A read that touches a slow block completes after that
 * block's delay (the largest of those it touches), in real time. Both are
 * reads only; writes pass over them and do not heal them.
 *
 * Not modelled here: torn writes and power loss (`MemoryDevice.crash()`),
 * silent corruption (flip bytes in `MemoryDevice.peek()`).
 *
 * Simulations that must end in recovery cap the faults per zone, as
 * TigerBeetle's storage simulator does: for example at most four of the five
 * metadata copies of a spare bad, never all spares failing at once.
 *
 * @module
 */

import { assert } from "../assert.ts";

/** What a write to a write-failing bad block does. */
export type WriteFaultMode = "fail" | "heal";

/** Which requests a bad block or range fails: reads, writes (and writeZeroes), or both. */
export type FailOn = "read" | "write" | "both";

/** Probabilities, each in [0, 1], that an operation fails with EIO. */
export interface FaultRates {
  /** Per read. @default 0 */
  readEio?: number;
  /** Per write and writeZeroes. @default 0 */
  writeEio?: number;
  /** Per flush. @default 0 */
  flushEio?: number;
}

/** Counts of injected faults, for tests to check that faults happened. */
export interface FaultCounters {
  /** Reads failed because they touched a bad block. */
  badBlockReads: number;
  /** Writes and writeZeroes failed because they touched a bad block. */
  badBlockWrites: number;
  /** Bad blocks removed by a successful write in `"heal"` mode. */
  healedBlocks: number;
  /** Reads failed by the random read rate. */
  randomReadFaults: number;
  /** Writes and writeZeroes failed by the random write rate. */
  randomWriteFaults: number;
  /** Flushes failed by the random flush rate. */
  randomFlushFaults: number;
  /** Requests failed because the device was removed. */
  removedRequests: number;
  /** Reads failed because they touched a weak block on its failing turn. */
  weakBlockReads: number;
  /** Reads delayed because they touched a slow block. */
  slowBlockReads: number;
}

/** A fresh set of zero counters. */
export function zeroFaultCounters(): FaultCounters {
  return {
    badBlockReads: 0,
    badBlockWrites: 0,
    healedBlocks: 0,
    randomReadFaults: 0,
    randomWriteFaults: 0,
    randomFlushFaults: 0,
    removedRequests: 0,
    weakBlockReads: 0,
    slowBlockReads: 0,
  };
}

/**
 * Checks that every rate is a probability.
 *
 * @throws {RangeError} When a rate is outside [0, 1].
 */
export function checkFaultRates(rates: FaultRates): Required<FaultRates> {
  const checked = {
    readEio: rates.readEio ?? 0,
    writeEio: rates.writeEio ?? 0,
    flushEio: rates.flushEio ?? 0,
  };
  for (const [name, rate] of Object.entries(checked)) {
    if (!(rate >= 0 && rate <= 1)) {
      throw new RangeError(`Cannot use fault rate ${name}: ${rate} is not in [0, 1]`);
    }
  }
  return checked;
}

/**
 * A small deterministic PRNG (mulberry32): the same seed gives the same
 * sequence of numbers in [0, 1).
 *
 * @param seed Any integer; only its low 32 bits count.
 * @returns The next-number function.
 *
 * @example
 * ```ts
 * import { seededRandom } from "./fault_model.ts";
 * const random = seededRandom(42);
 * console.log(random() === seededRandom(42)()); // true
 * ```
 */
export function seededRandom(seed: number): () => number {
  assert(Number.isInteger(seed), "a seed is an integer");
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = state;
    mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };
}

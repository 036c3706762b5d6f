/**
 * A `Device` wrapper whose single job is to break sectors: bad blocks like
 * dm-dust, random faults like nbdkit's error filter. Everything else is
 * forwarded to the wrapped device unchanged. The rules are in `fault_model.ts`.
 *
 * Configuration (all optional, all changeable while serving):
 * - `blockBytes`: the bad-block unit, a multiple of 512 (default 512).
 * - `writeMode`: `"fail"` or `"heal"` for writes to bad blocks (default `"fail"`).
 * - `badBlocks`: block indexes that start bad, failing reads and writes (default none).
 * - `rates`: `readEio`, `writeEio`, `flushEio` probabilities (default 0).
 * - `seed`: the PRNG seed for the rates (default 1).
 * - {@link FaultyDevice.setWeak}, {@link FaultyDevice.setSlow}: reads that
 *   succeed only on a retry, or only late (until {@link FaultyDevice.clearWeakAndSlow}).
 * - {@link FaultyDevice.remove}: the device vanishes, as a pulled disk does;
 *   every request from then on fails with `"ENODEV"`.
 *
 * When the wrapped device offers direct access ({@link FaultyDevice.directAccess}),
 * this layer offers the same descriptor with its bad blocks as the ranges to
 * leave to it, one shared-memory list for reads and one for writes: a direct
 * reader/writer then sends every request that may fail (with a random rate,
 * every request of that kind, and with a write or flush rate every flush)
 * through this layer. The layer alone decides what fails.
 *
 * @example Failing one 4 KiB block of a memory device
 * ```ts
 * import { MemoryDevice } from "../device/memory_device.ts";
 * import { FaultyDevice } from "./faulty_device.ts";
 * import { DeviceIoError } from "../errors.ts";
 *
 * const device = new FaultyDevice(new MemoryDevice("mem0", 1 << 20), { blockBytes: 4096 });
 * device.setBad({ offsetBytes: 12288, lengthBytes: 4096 }, "read");
 * try {
 *   await device.read(new Uint8Array(8192), 8192);
 * } catch (error) {
 *   console.log(error instanceof DeviceIoError && error.code); // "EIO"
 * }
 * ```
 *
 * @module
 */

import { assert } from "../assert.ts";
import { FAULT_SHARED_BLOCKS_MAX, SECTOR_BYTES } from "../constants.ts";
import { SharedBlockListWriter } from "../shared_block_list.ts";
import type {
  ByteRange,
  Device,
  DirectAccess,
  WriteOptions,
  WriteZeroesOptions,
} from "../device/device.ts";
import { isRangeInside } from "../device/device.ts";
import { DeviceIoError } from "../errors.ts";
import {
  checkFaultRates,
  type FailOn,
  type FaultCounters,
  type FaultRates,
  seededRandom,
  type WriteFaultMode,
  zeroFaultCounters,
} from "./fault_model.ts";

/** Options for {@link FaultyDevice}. */
export interface FaultyDeviceOptions {
  /** The bad-block unit; a multiple of 512. @default 512 */
  blockBytes?: number;
  /** What a write to a bad block does. @default "fail" */
  writeMode?: WriteFaultMode;
  /** Blocks that are bad from the start, for reads and writes. @default [] */
  badBlocks?: Iterable<number>;
  /** Random EIO probabilities per operation. @default no random faults */
  rates?: FaultRates;
  /** Seed of the PRNG behind `rates`. @default 1 */
  seed?: number;
}

/** A wrapper that injects bad-block and random I/O errors. */
export class FaultyDevice implements Device {
  readonly name: string;
  readonly sizeBytes: number;
  readonly blockBytes: number;
  /** Number of blocks, the last one possibly partial. */
  readonly blockCount: number;
  /** Injected faults so far. */
  readonly counters: FaultCounters = zeroFaultCounters();
  /** What a write to a write-failing bad block does; may change while serving. */
  writeMode: WriteFaultMode;
  readonly #next: Device;
  /** Bad block index → which operations it fails. */
  readonly #badBlocks = new Map<number, FailOn>();
  /** Weak block index → whether the next read touching it fails. */
  readonly #weakBlocks = new Map<number, boolean>();
  /** Slow block index → its delay in milliseconds. */
  readonly #slowBlocks = new Map<number, number>();
  readonly #sharedReads = new SharedBlockListWriter(FAULT_SHARED_BLOCKS_MAX);
  readonly #sharedWrites = new SharedBlockListWriter(FAULT_SHARED_BLOCKS_MAX);
  #rates: Required<FaultRates>;
  #random: () => number;
  #removed = false;
  #closed = false;

  /**
   * @param next The device to forward to.
   * @param options Bad blocks, write mode, rates and seed.
   * @throws {RangeError} When a rate is not a probability.
   */
  constructor(next: Device, options: FaultyDeviceOptions = {}) {
    const blockBytes = options.blockBytes ?? SECTOR_BYTES;
    assert(Number.isSafeInteger(blockBytes) && blockBytes > 0, "block size is a positive integer");
    assert(blockBytes % SECTOR_BYTES === 0, "block size is a multiple of the sector size");
    this.#next = next;
    this.name = next.name;
    this.sizeBytes = next.sizeBytes;
    this.blockBytes = blockBytes;
    this.blockCount = Math.ceil(next.sizeBytes / blockBytes);
    this.writeMode = options.writeMode ?? "fail";
    this.#rates = checkFaultRates(options.rates ?? {});
    this.#random = seededRandom(options.seed ?? 1);
    this.addBadBlocks(options.badBlocks ?? []);
  }

  /**
   * The wrapped device's direct access, with the blocks where this layer may
   * fail requests as the ranges to leave to it: reads of blocks that fail
   * reads, writes of blocks that fail writes, and everything of a kind while
   * its random rate is set (a write or flush rate covers flushes too).
   *
   * @returns `undefined` when the wrapped device offers none, or leaves
   * ranges to itself already: two layers' lists are not merged, so then
   * every request goes through the layers.
   */
  directAccess(): DirectAccess | undefined {
    const inner = this.#next.directAccess?.();
    if (inner === undefined || inner.leftToDevice !== undefined) return undefined;
    return {
      ...inner,
      leftToDevice: {
        reads: this.#sharedReads.buffers,
        writes: this.#sharedWrites.buffers,
        blockBytes: this.blockBytes,
      },
    };
  }

  /**
   * Makes the device vanish, as a pulled disk or a deleted device does: every
   * request from now on fails with `"ENODEV"` (a direct reader/writer is told
   * to send everything here), and nothing brings it back.
   */
  remove(): void {
    this.#removed = true;
    this.#publish();
  }

  /** Marks blocks bad for reads, writes or both (default both), replacing what they were. */
  addBadBlocks(blockIndexes: Iterable<number>, fail: FailOn = "both"): void {
    for (const blockIndex of blockIndexes) {
      this.#checkBlockIndex(blockIndex);
      this.#badBlocks.set(blockIndex, fail);
    }
    this.#publish();
  }

  /**
   * Marks bad every block that a byte range touches, for reads, writes or both,
   * replacing what they were.
   */
  setBad(range: ByteRange, fail: FailOn): void {
    assert(isRangeInside(this, range), "bad range inside the device");
    const [first, end] = this.#blockSpan(range);
    for (let blockIndex = first; blockIndex < end; blockIndex++) {
      this.#badBlocks.set(blockIndex, fail);
    }
    this.#publish();
  }

  /** Makes every block a range touches weak: its reads fail every other time, the first included. */
  setWeak(range: ByteRange): void {
    assert(isRangeInside(this, range), "weak range inside the device");
    const [first, end] = this.#blockSpan(range);
    for (let blockIndex = first; blockIndex < end; blockIndex++) {
      this.#weakBlocks.set(blockIndex, true);
    }
    this.#publish();
  }

  /** Makes every block a range touches slow: reads touching it complete `delayMs` late. */
  setSlow(range: ByteRange, delayMs: number): void {
    assert(isRangeInside(this, range), "slow range inside the device");
    assert(delayMs >= 0, "a delay is not negative");
    const [first, end] = this.#blockSpan(range);
    for (let blockIndex = first; blockIndex < end; blockIndex++) {
      this.#slowBlocks.set(blockIndex, delayMs);
    }
    this.#publish();
  }

  /** Makes every weak and slow block normal again. */
  clearWeakAndSlow(): void {
    this.#weakBlocks.clear();
    this.#slowBlocks.clear();
    this.#publish();
  }

  /** Marks blocks good again; returns how many were bad. */
  removeBadBlocks(blockIndexes: Iterable<number>): number {
    let removed = 0;
    for (const blockIndex of blockIndexes) {
      this.#checkBlockIndex(blockIndex);
      if (this.#badBlocks.delete(blockIndex)) removed++;
    }
    this.#publish();
    return removed;
  }

  /** Marks every block good. */
  clearBadBlocks(): void {
    this.#badBlocks.clear();
    this.#publish();
  }

  /** The bad blocks, in ascending order. */
  listBadBlocks(): number[] {
    return [...this.#badBlocks.keys()].sort((a, b) => a - b);
  }

  /** Which operations a block fails, or `undefined` when it is good. */
  failureOf(blockIndex: number): FailOn | undefined {
    this.#checkBlockIndex(blockIndex);
    return this.#badBlocks.get(blockIndex);
  }

  /**
   * Replaces the random fault rates and, if given, restarts the PRNG from `seed`.
   *
   * @throws {RangeError} When a rate is not a probability.
   */
  setRates(rates: FaultRates, seed?: number): void {
    this.#rates = checkFaultRates(rates);
    if (seed !== undefined) this.#random = seededRandom(seed);
    this.#publish();
  }

  async read(buffer: Uint8Array, offsetBytes: number): Promise<void> {
    const request = { offsetBytes, lengthBytes: buffer.length };
    this.#check(request);
    this.#failIfRemoved("read", request);
    if (this.#touchedBadBlocks(request).some(([, fail]) => fail !== "write")) {
      this.counters.badBlockReads++;
      throw eio(this.name, "read", request);
    }
    if (this.#draw(this.#rates.readEio)) {
      this.counters.randomReadFaults++;
      throw eio(this.name, "read", request);
    }
    if (this.#weakTurnFails(request)) {
      this.counters.weakBlockReads++;
      throw eio(this.name, "read", request);
    }
    const delayMs = this.#delayOf(request);
    if (delayMs > 0) {
      this.counters.slowBlockReads++;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
    await this.#next.read(buffer, offsetBytes);
  }

  async write(data: Uint8Array, offsetBytes: number, options: WriteOptions = {}): Promise<void> {
    const request = { offsetBytes, lengthBytes: data.length };
    this.#check(request);
    const healing = this.#beforeWrite("write", request);
    await this.#next.write(data, offsetBytes, options);
    this.#heal(healing);
  }

  async writeZeroes(range: ByteRange, options: WriteZeroesOptions = {}): Promise<void> {
    this.#check(range);
    const healing = this.#beforeWrite("write zeroes to", range);
    await this.#next.writeZeroes(range, options);
    this.#heal(healing);
  }

  async flush(): Promise<void> {
    assert(!this.#closed, `faulty device "${this.name}" is open`);
    this.#failIfRemoved("flush", { offsetBytes: 0, lengthBytes: this.sizeBytes });
    if (this.#draw(this.#rates.flushEio)) {
      this.counters.randomFlushFaults++;
      throw eio(this.name, "flush", { offsetBytes: 0, lengthBytes: this.sizeBytes });
    }
    await this.#next.flush();
  }

  async discard(range: ByteRange): Promise<void> {
    this.#check(range);
    this.#failIfRemoved("discard", range);
    await this.#next.discard(range);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#next.close();
  }

  /**
   * Fails a write that bad blocks or the random rate reject; returns the bad
   * blocks that the write heals when it succeeds.
   */
  #beforeWrite(action: string, request: ByteRange): number[] {
    this.#failIfRemoved(action, request);
    const touched = this.#touchedBadBlocks(request);
    const failing = touched.filter(([, fail]) => fail !== "read").map(([blockIndex]) => blockIndex);
    if (
      failing.length > 0 && (this.writeMode === "fail" || !this.#coversWholly(request, failing))
    ) {
      this.counters.badBlockWrites++;
      throw eio(this.name, action, request);
    }
    if (this.#draw(this.#rates.writeEio)) {
      this.counters.randomWriteFaults++;
      throw eio(this.name, action, request);
    }
    if (failing.length > 0) {
      assert(this.writeMode === "heal", "only heal mode lets a write reach write-failing blocks");
    }
    if (this.writeMode === "fail") return [];
    return touched.map(([blockIndex]) => blockIndex).filter((blockIndex) =>
      this.#coversWholly(request, [blockIndex])
    );
  }

  /** Whether a read fails on a weak block it touches; every touched weak block takes its turn. */
  #weakTurnFails(request: ByteRange): boolean {
    if (this.#weakBlocks.size === 0 || request.lengthBytes === 0) return false;
    const [first, end] = this.#blockSpan(request);
    let fails = false;
    for (const [blockIndex, failsNext] of this.#weakBlocks) {
      if (blockIndex < first || blockIndex >= end) continue;
      fails ||= failsNext;
      this.#weakBlocks.set(blockIndex, !failsNext);
    }
    return fails;
  }

  /** The longest delay of the slow blocks a read touches. */
  #delayOf(request: ByteRange): number {
    if (this.#slowBlocks.size === 0 || request.lengthBytes === 0) return 0;
    const [first, end] = this.#blockSpan(request);
    let delayMs = 0;
    for (const [blockIndex, blockDelayMs] of this.#slowBlocks) {
      if (blockIndex >= first && blockIndex < end) delayMs = Math.max(delayMs, blockDelayMs);
    }
    return delayMs;
  }

  #heal(blockIndexes: readonly number[]): void {
    for (const blockIndex of blockIndexes) {
      if (this.#badBlocks.delete(blockIndex)) this.counters.healedBlocks++;
    }
    if (blockIndexes.length > 0) this.#publish();
  }

  #failIfRemoved(action: string, request: ByteRange): void {
    if (!this.#removed) return;
    this.counters.removedRequests++;
    throw new DeviceIoError(action, {
      device: this.name,
      offsetBytes: request.offsetBytes,
      lengthBytes: request.lengthBytes,
      code: "ENODEV",
      errno: 19,
    });
  }

  #publish(): void {
    if (this.#removed) {
      this.#sharedReads.publishEverything();
      this.#sharedWrites.publishEverything();
      return;
    }
    const failing = (kind: FailOn) =>
      [...this.#badBlocks].filter(([, fail]) => fail !== kind).map(([blockIndex]) => blockIndex);
    const { readEio, writeEio, flushEio } = this.#rates;
    if (readEio > 0) this.#sharedReads.publishEverything();
    else {
      this.#sharedReads.publish(
        new Set([...failing("write"), ...this.#weakBlocks.keys(), ...this.#slowBlocks.keys()]),
      );
    }
    if (writeEio > 0 || flushEio > 0) this.#sharedWrites.publishEverything();
    else this.#sharedWrites.publish(failing("read"));
  }

  /** Whether the request covers each of the blocks entirely (the last block may be partial). */
  #coversWholly(request: ByteRange, blockIndexes: readonly number[]): boolean {
    const requestEnd = request.offsetBytes + request.lengthBytes;
    return blockIndexes.every((blockIndex) => {
      const blockStart = blockIndex * this.blockBytes;
      const blockEnd = Math.min(blockStart + this.blockBytes, this.sizeBytes);
      return request.offsetBytes <= blockStart && blockEnd <= requestEnd;
    });
  }

  /** The bad blocks a request touches, walking whichever is smaller: the request or the set. */
  #touchedBadBlocks(request: ByteRange): [number, FailOn][] {
    if (this.#badBlocks.size === 0 || request.lengthBytes === 0) return [];
    const [first, end] = this.#blockSpan(request);
    const touched: [number, FailOn][] = [];
    if (end - first <= this.#badBlocks.size) {
      for (let blockIndex = first; blockIndex < end; blockIndex++) {
        const fail = this.#badBlocks.get(blockIndex);
        if (fail !== undefined) touched.push([blockIndex, fail]);
      }
    } else {
      for (const [blockIndex, fail] of this.#badBlocks) {
        if (blockIndex >= first && blockIndex < end) touched.push([blockIndex, fail]);
      }
    }
    return touched;
  }

  /** The first block a range touches and the one after its last. */
  #blockSpan(range: ByteRange): [number, number] {
    if (range.lengthBytes === 0) return [0, 0];
    const first = Math.floor(range.offsetBytes / this.blockBytes);
    const end = Math.floor((range.offsetBytes + range.lengthBytes - 1) / this.blockBytes) + 1;
    assert(first < end && end <= this.blockCount, "block span inside the device");
    return [first, end];
  }

  /** Draws a random fault; a zero rate draws no number, so a device without rates never uses the PRNG. */
  #draw(rate: number): boolean {
    return rate > 0 && this.#random() < rate;
  }

  #checkBlockIndex(blockIndex: number): void {
    assert(Number.isSafeInteger(blockIndex), "block index is an integer");
    assert(
      blockIndex >= 0 && blockIndex < this.blockCount,
      `block ${blockIndex} inside "${this.name}"`,
    );
  }

  #check(range: ByteRange): void {
    assert(!this.#closed, `faulty device "${this.name}" is open`);
    assert(isRangeInside(this, range), `range inside faulty device "${this.name}"`);
  }
}

function eio(device: string, action: string, range: ByteRange): DeviceIoError {
  return new DeviceIoError(action, {
    device,
    offsetBytes: range.offsetBytes,
    lengthBytes: range.lengthBytes,
    code: "EIO",
    errno: 5,
  });
}

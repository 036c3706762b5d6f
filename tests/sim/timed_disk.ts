/**
 * Simulated time for the storage under the engine, after TigerBeetle's
 * `src/testing/storage.zig`: every request to a {@link TimedDisk} completes
 * after a random delay, so requests complete in a different order than they
 * were issued, and the disk checks that requests in flight never overlap a
 * write in flight (a real disk gives no order between them, so software that
 * issues them has a race).
 *
 * Time is virtual: a {@link DiskClock} shared by the disks of one world holds
 * every pending completion and releases them earliest first when the test
 * calls {@link DiskClock.settle}. A write reaches the disk below at its
 * completion, with the buffer's contents at that moment, so a caller that
 * reuses a buffer before its write completed is caught too.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import type {
  ByteRange,
  Device,
  DirectAccess,
  WriteOptions,
  WriteZeroesOptions,
} from "../../mod/device/device.ts";

/** Longest simulated latency of one request, in virtual milliseconds. */
const LATENCY_MS_MAX = 20;
/** Turns of the event loop with nothing in flight before settle() says the world is idle. */
const IDLE_TURNS = 50;

/** A request as a {@link TimedDisk} hands it to the clock. */
interface DiskRequest {
  disk: string;
  kind: "read" | "write" | "flush";
  range: ByteRange;
  /** Performs the request on the disk below; runs at completion time. */
  complete: () => Promise<void>;
}

interface InFlight extends DiskRequest {
  completeAtMs: number;
  /** Issue order, to count completions that overtook earlier requests. */
  order: number;
}

/** Options of {@link DiskClock.settle}. */
export interface SettleOptions {
  /**
   * Runs before each completion; resolves true when it did something, and
   * then the world gets another round before a disk completes anything.
   * @default none
   */
  worker?: () => Promise<boolean>;
}

/** The virtual clock and completion queue of one simulated world. */
export class DiskClock {
  readonly #random: () => number;
  readonly #inFlight: InFlight[] = [];
  /** Every overlap of two requests in flight, described, for the test to assert empty. */
  readonly overlaps: string[] = [];
  #nowMs = 0;
  /** Counts power cuts; a disk from before the last one is dead. */
  #epoch = 0;
  /** Most requests that were in flight at once: the test checks that concurrency happened. */
  inFlightMax = 0;
  /** Completions released in a different order than their requests were issued. */
  reordered = 0;
  #issued = 0;

  constructor(random: () => number) {
    this.#random = random;
  }

  get nowMs(): number {
    return this.#nowMs;
  }

  get epoch(): number {
    return this.#epoch;
  }

  /**
   * Power cut: requests in flight never complete, and the disks made before
   * now never answer again, as the engine that used them died with the power.
   */
  powerCut(): void {
    this.#inFlight.length = 0;
    this.#epoch++;
  }

  /** Queues a request; it completes when {@link settle} reaches its time. */
  schedule(request: DiskRequest, epoch: number): Promise<void> {
    if (epoch !== this.#epoch) return new Promise(() => {});
    this.#checkOverlap(request);
    return new Promise<void>((resolve, reject) => {
      this.#inFlight.push({
        ...request,
        complete: () => request.complete().then(resolve, reject),
        completeAtMs: this.#nowMs + 1 + Math.floor(this.#random() * LATENCY_MS_MAX),
        order: this.#issued++,
      });
      this.inFlightMax = Math.max(this.inFlightMax, this.#inFlight.length);
    });
  }

  /**
   * Runs the world until `work` resolves: lets the code under test issue its
   * requests, then completes the earliest pending one, again and again.
   * A `worker` (code that does not run on its own, like a data path's turns)
   * goes first each round; while it finds something to do, no disk moves, so
   * a round's outcome does not depend on how long real I/O below took.
   */
  async settle<T>(work: Promise<T>, options: SettleOptions = {}): Promise<T> {
    let done = false;
    // A handler now, so a rejection while the loop turns is not reported as unhandled.
    work.then(() => done = true, () => done = true);
    let idleTurns = 0;
    while (!done) {
      await new Promise((resolve) => setImmediate(resolve));
      if (done) break;
      if (options.worker !== undefined && await options.worker()) continue;
      const next = this.#takeEarliest();
      if (next === undefined) {
        // Nothing in flight: the engine waits on a timer of its own (group commit).
        if (++idleTurns > IDLE_TURNS) await new Promise((resolve) => setTimeout(resolve, 1));
        continue;
      }
      idleTurns = 0;
      this.#nowMs = Math.max(this.#nowMs, next.completeAtMs);
      await next.complete();
    }
    return await work;
  }

  #takeEarliest(): InFlight | undefined {
    if (this.#inFlight.length === 0) return undefined;
    let best = 0;
    for (let i = 1; i < this.#inFlight.length; i++) {
      if (this.#inFlight[i]!.completeAtMs < this.#inFlight[best]!.completeAtMs) best = i;
    }
    const [entry] = this.#inFlight.splice(best, 1);
    if (this.#inFlight.some((other) => other.order < entry!.order)) this.reordered++;
    return entry;
  }

  #checkOverlap(request: DiskRequest): void {
    if (request.kind === "flush") return;
    for (const other of this.#inFlight) {
      if (other.disk !== request.disk || other.kind === "flush") continue;
      if (request.kind === "read" && other.kind === "read") continue;
      if (!overlap(other.range, request.range)) continue;
      this.overlaps.push(
        `${request.kind} ${describe(request.range)} on ${request.disk} issued while ` +
          `${other.kind} ${describe(other.range)} was in flight (virtual time ${this.#nowMs} ms)`,
      );
    }
  }
}

function overlap(a: ByteRange, b: ByteRange): boolean {
  return a.offsetBytes < b.offsetBytes + b.lengthBytes &&
    b.offsetBytes < a.offsetBytes + a.lengthBytes;
}

function describe(range: ByteRange): string {
  return `${range.offsetBytes}+${range.lengthBytes}`;
}

/** A device whose requests complete in virtual time, in random order. */
export class TimedDisk implements Device {
  readonly name: string;
  readonly sizeBytes: number;
  readonly #next: Device;
  readonly #clock: DiskClock;
  readonly #epoch: number;

  constructor(next: Device, clock: DiskClock) {
    this.#next = next;
    this.#clock = clock;
    this.#epoch = clock.epoch;
    this.name = next.name;
    this.sizeBytes = next.sizeBytes;
  }

  read(buffer: Uint8Array, offsetBytes: number): Promise<void> {
    return this.#clock.schedule({
      disk: this.name,
      kind: "read",
      range: { offsetBytes, lengthBytes: buffer.length },
      complete: () => this.#next.read(buffer, offsetBytes),
    }, this.#epoch);
  }

  write(data: Uint8Array, offsetBytes: number, options?: WriteOptions): Promise<void> {
    return this.#clock.schedule({
      disk: this.name,
      kind: "write",
      range: { offsetBytes, lengthBytes: data.length },
      complete: () => this.#next.write(data, offsetBytes, options),
    }, this.#epoch);
  }

  flush(): Promise<void> {
    return this.#clock.schedule({
      disk: this.name,
      kind: "flush",
      range: { offsetBytes: 0, lengthBytes: 0 },
      complete: () => this.#next.flush(),
    }, this.#epoch);
  }

  discard(range: ByteRange): Promise<void> {
    return this.#clock.schedule({
      disk: this.name,
      kind: "write",
      range,
      complete: () => this.#next.discard(range),
    }, this.#epoch);
  }

  writeZeroes(range: ByteRange, options?: WriteZeroesOptions): Promise<void> {
    return this.#clock.schedule({
      disk: this.name,
      kind: "write",
      range,
      complete: () => this.#next.writeZeroes(range, options),
    }, this.#epoch);
  }

  /**
   * The disk below's direct access: a direct reader/writer (the data path)
   * bypasses this object, so its I/O is timed by its own simulated queue on
   * the same clock (`simulated_io_queue.ts`).
   */
  directAccess(): DirectAccess | undefined {
    return this.#next.directAccess?.();
  }

  close(): Promise<void> {
    return this.#next.close();
  }
}

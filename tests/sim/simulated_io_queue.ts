/**
 * A simulated {@link IoQueue} for the data path, on the {@link DiskClock} of
 * the engine's {@link TimedDisk}s: submitted I/O completes after a random
 * virtual delay, in any order, and the clock checks that it never overlaps a
 * write in flight on the same disk, the engine's included.
 *
 * The real pread/pwrite/fdatasync on the descriptor runs only when the clock
 * completes the request, with the buffer's contents at that moment: a data
 * path that hands a buffer back (or answers) before its I/O completed reads
 * or writes the wrong bytes and the model sees it. Main-disk reads and writes
 * may fail with a transient EIO instead of running (the disk gave up once;
 * the engine's retry finds it working). Main-disk I/O that only the engine
 * may do (on bad or pending blocks) is recorded as a bypass.
 *
 * It signals nothing: the test drives the data path's turns, and a turn's
 * `reap` takes whatever the clock completed since the last one.
 *
 * @module
 */

import { assert } from "../../mod/assert.ts";
import { AIO_SLOTS_MAX } from "../../mod/constants.ts";
import type { IoQueue, IoRequest } from "../../mod/datapath/io_queue.ts";
import type { ByteRange } from "../../mod/device/device.ts";
import { AIO_OPCODE } from "../../mod/sys/aio.ts";
import { ERRNO } from "../../mod/sys/libc.ts";
import { readAt, syncData, writeAt } from "../../mod/sys/syscalls.ts";
import type { DiskClock } from "./timed_disk.ts";

/** Options of {@link SimulatedIoQueue}. */
export interface SimulatedIoQueueOptions {
  clock: DiskClock;
  /** Descriptor → the disk's name as its {@link TimedDisk} calls it, so overlaps with the engine's I/O show. */
  diskNames: ReadonlyMap<number, string>;
  /** The main disk's descriptor: its reads and writes may fail transiently. */
  mainFd: number;
  /** Probability that a main-disk read or write fails with EIO instead of running. */
  transientEioRate: number;
  /** Draws the transient faults. */
  random: () => number;
  /**
   * Whether the data path must forward such a main-disk request to the engine
   * (the device sees it fail, or the engine remaps it): doing it here is a
   * bypass.
   */
  mustForward: (kind: "read" | "write", range: ByteRange) => boolean;
}

interface Submitted<T> {
  request: IoRequest;
  owner: T;
  /** Submission order, to count completions that overtook earlier ones. */
  order: number;
}

/** An {@link IoQueue} whose I/O completes in virtual time, in random order. */
export class SimulatedIoQueue<T> implements IoQueue<T> {
  readonly #options: SimulatedIoQueueOptions;
  #prepared: Submitted<T>[] = [];
  readonly #inFlight = new Set<Submitted<T>>();
  #finished: { owner: T; result: number }[] = [];
  #submitted = 0;
  /** Most requests submitted and not yet reaped at once. */
  inFlightMax = 0;
  /** Completions that overtook a request submitted before them. */
  reordered = 0;
  /** Transient EIOs returned. */
  transientFaults = 0;
  /** Main-disk I/O the data path should have forwarded, described, for the test to assert empty. */
  readonly bypasses: string[] = [];

  constructor(options: SimulatedIoQueueOptions) {
    this.#options = options;
  }

  get free(): number {
    return AIO_SLOTS_MAX - this.#prepared.length - this.inflight;
  }

  /** Submitted and not yet reaped (completed by the clock or not). */
  get inflight(): number {
    return this.#inFlight.size + this.#finished.length;
  }

  /** Completions waiting for the next reap: news for the test's loop. */
  get completed(): number {
    return this.#finished.length;
  }

  prepare(request: IoRequest, owner: T): void {
    assert(this.free > 0, "the caller checked for a free slot");
    // Checked here, right after the data path's lookups: the engine may mark
    // a block pending before the submit, and then the write is still right.
    const kind = kindOf(request.opcode);
    const range = { offsetBytes: request.offsetBytes, lengthBytes: lengthOf(request) };
    if (
      kind !== "flush" && request.fd === this.#options.mainFd &&
      this.#options.mustForward(kind, range)
    ) {
      this.bypasses.push(`${kind} ${range.offsetBytes}+${range.lengthBytes} on the main disk`);
    }
    this.#prepared.push({ request, owner, order: -1 });
  }

  submit(): void {
    const clock = this.#options.clock;
    for (const submitted of this.#prepared) {
      submitted.order = this.#submitted++;
      this.#inFlight.add(submitted);
      const { request } = submitted;
      const disk = this.#options.diskNames.get(request.fd);
      assert(disk !== undefined, `descriptor ${request.fd} is a disk of the setup`);
      void clock.schedule({
        disk,
        kind: kindOf(request.opcode),
        range: { offsetBytes: request.offsetBytes, lengthBytes: lengthOf(request) },
        complete: () => Promise.resolve(this.#complete(submitted)),
      }, clock.epoch);
    }
    this.#prepared = [];
    this.inFlightMax = Math.max(this.inFlightMax, this.inflight);
  }

  reap(complete: (owner: T, result: number) => void): void {
    const finished = this.#finished;
    this.#finished = [];
    for (const { owner, result } of finished) complete(owner, result);
  }

  /**
   * Not simulated: it would block the thread that turns the virtual clock.
   * The data path calls it only from an export's `settle()`, which the
   * simulation does not drive.
   */
  reapAll(): void {
    assert(false, "the simulation never blocks in reapAll");
  }

  close(): void {
    assert(this.inflight === 0 && this.#prepared.length === 0, "nothing in flight at close");
  }

  /** The clock reached the request: run it on the descriptor now. */
  #complete(submitted: Submitted<T>): void {
    this.#inFlight.delete(submitted);
    for (const other of this.#inFlight) {
      if (other.order < submitted.order) {
        this.reordered++;
        break;
      }
    }
    this.#finished.push({ owner: submitted.owner, result: this.#perform(submitted.request) });
  }

  /** Bytes done or `-errno`, as io_getevents would report them. */
  #perform(request: IoRequest): number {
    const { mainFd, transientEioRate, random } = this.#options;
    if (request.opcode === AIO_OPCODE.FDSYNC) return syncData(request.fd);
    if (request.fd === mainFd && random() < transientEioRate) {
      this.transientFaults++;
      return -ERRNO.EIO;
    }
    const write = request.opcode === AIO_OPCODE.PWRITE;
    let offsetBytes = request.offsetBytes;
    for (const segment of request.segments ?? [request.buffer]) {
      const done = write
        ? writeAt(request.fd, segment, offsetBytes, request.rwFlags)
        : readAt(request.fd, segment, offsetBytes);
      if (done !== segment.length) return done < 0 ? done : -ERRNO.EIO;
      offsetBytes += segment.length;
    }
    return offsetBytes - request.offsetBytes;
  }
}

function kindOf(opcode: number): "read" | "write" | "flush" {
  if (opcode === AIO_OPCODE.FDSYNC) return "flush";
  assert(opcode === AIO_OPCODE.PREAD || opcode === AIO_OPCODE.PWRITE, "a data path opcode");
  return opcode === AIO_OPCODE.PWRITE ? "write" : "read";
}

function lengthOf(request: IoRequest): number {
  if (request.segments === undefined) return request.buffer.length;
  return request.segments.reduce((total, segment) => total + segment.length, 0);
}

/**
 * Linux AIO for a data-plane worker, its default {@link IoQueue}: requests are prepared one by one,
 * submitted together with one io_submit, and reaped without blocking.
 * Completions also count on an eventfd, so the worker's poll() wakes for the
 * ones that finish later (a real disk; tmpfs completes inside io_submit).
 *
 * Unlike the event-loop `AioRing`, nothing here returns a promise: the worker
 * thread may block, and does so in poll() only.
 *
 * A request alone in the batch with nothing else in flight runs as one
 * synchronous pread/pwrite/fdatasync instead: one syscall instead of
 * io_submit plus io_getevents, and with nothing else in flight, blocking
 * costs nothing. Disabling it in a development run cost 3-6 % at QD1.
 *
 * A vectored request (PREADV/PWRITEV) moves one range of a disk to or from
 * several pieces of memory: remapped blocks whose slots follow each other
 * on a spare while main-disk blocks lie between them in the request.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { AIO_SLOTS_MAX } from "../constants.ts";
import { AIO_OPCODE, AIO_SYSCALLS, EVENT_BYTES, IOCB_BYTES, writeIocb } from "../sys/aio.ts";
import { ERRNO } from "../sys/libc.ts";
import { IoAddresses } from "./io_addresses.ts";
import type { IoQueue, IoRequest } from "./io_queue.ts";
import { addressOf, rawSyscall, readAt, syncData, writeAt } from "../sys/syscalls.ts";

/**
 * One AIO context with a fixed number of slots; `T` is whatever the caller
 * wants back. The data path's {@link IoQueue}.
 */
export class AioBatch<T> implements IoQueue<T> {
  readonly #context: bigint;
  readonly #eventFd: number;
  readonly #iocbs = new Uint8Array(AIO_SLOTS_MAX * IOCB_BYTES);
  readonly #iocbView = new DataView(this.#iocbs.buffer);
  readonly #iocbBase = addressOf(this.#iocbs);
  readonly #addresses = new IoAddresses();
  readonly #owners: (T | undefined)[] = new Array(AIO_SLOTS_MAX);
  readonly #buffers: (Uint8Array | undefined)[] = new Array(AIO_SLOTS_MAX);
  readonly #freeSlots: number[] = [];
  readonly #prepared = new BigUint64Array(AIO_SLOTS_MAX);
  /** The lone prepared request, kept to run synchronously. */
  #lone: IoRequest | undefined;
  readonly #preparedAddress = addressOf(new Uint8Array(this.#prepared.buffer));
  readonly #events = new BigInt64Array(AIO_SLOTS_MAX * (EVENT_BYTES / 8));
  readonly #eventsAddress = addressOf(new Uint8Array(this.#events.buffer));
  #preparedCount = 0;
  #inflight = 0;
  /** Requests done at submit (refused, or run synchronously), completed at the next reap. */
  #finished: { slot: number; result: number }[] = [];

  private constructor(context: bigint, eventFd: number) {
    this.#context = context;
    this.#eventFd = eventFd;
    for (let slot = AIO_SLOTS_MAX - 1; slot >= 0; slot--) this.#freeSlots.push(slot);
  }

  /** A context whose completions count on `eventFd`; or `-errno`. */
  static open<T>(eventFd: number): AioBatch<T> | number {
    const cell = new BigUint64Array(1);
    const result = rawSyscall(
      AIO_SYSCALLS.ioSetup,
      BigInt(AIO_SLOTS_MAX),
      addressOf(new Uint8Array(cell.buffer)),
      0n,
      0n,
    );
    return result < 0 ? result : new AioBatch<T>(cell[0]!, eventFd);
  }

  /** Slots free for {@link prepare}. */
  get free(): number {
    return this.#freeSlots.length;
  }

  /** Requests submitted and not yet reaped. */
  get inflight(): number {
    return this.#inflight;
  }

  /** Prepares one request; it goes to the kernel at the next {@link submit}. */
  prepare(request: IoRequest, owner: T): void {
    const slot = this.#freeSlots.pop();
    assert(slot !== undefined, "the caller checked for a free slot");
    // The kernel writes into read buffers after submit: they must be off V8's moving heap.
    assert(
      request.buffer.length === 0 || request.buffer.buffer.byteLength > 64,
      "buffer is off-heap",
    );
    const segments = request.segments;
    writeIocb(this.#iocbs, this.#iocbView, slot * IOCB_BYTES, {
      token: slot,
      opcode: segments ? vectoredOpcode(request.opcode) : request.opcode,
      fd: request.fd,
      address: segments
        ? this.#addresses.iovecsOf(slot, segments)
        : request.buffer.length > 0
        ? this.#addresses.addressOf(request.buffer)
        : 0n,
      // For a vectored request the kernel takes the iovec count here.
      lengthBytes: segments ? segments.length : request.buffer.length,
      offsetBytes: request.offsetBytes,
      rwFlags: request.rwFlags,
      eventFd: this.#eventFd,
    });
    this.#owners[slot] = owner;
    this.#buffers[slot] = request.buffer;
    // A vectored request never runs alone: main-disk runs lie between its pieces.
    this.#lone = this.#preparedCount === 0 && !segments ? request : undefined;
    this.#prepared[this.#preparedCount++] = this.#iocbBase + BigInt(slot * IOCB_BYTES);
  }

  /** Hands every prepared request to the kernel (or runs a lone one). */
  submit(): void {
    const lone = this.#lone;
    this.#lone = undefined;
    if (lone !== undefined && this.#preparedCount === 1 && this.#inflight === 0) {
      this.#finished.push({ slot: this.#slotOf(0), result: runAlone(lone) });
      this.#preparedCount = 0;
      return;
    }
    for (let next = 0; next < this.#preparedCount;) {
      const submitted = rawSyscall(
        AIO_SYSCALLS.ioSubmit,
        this.#context,
        BigInt(this.#preparedCount - next),
        this.#preparedAddress + BigInt(next * 8),
        0n,
      );
      if (submitted > 0) {
        this.#inflight += submitted;
        next += submitted;
        continue;
      }
      // The request at `next` was refused (EINVAL for FDSYNC on some files, say): it fails alone.
      this.#finished.push({ slot: this.#slotOf(next), result: submitted < 0 ? submitted : -5 });
      next++;
    }
    this.#preparedCount = 0;
  }

  #slotOf(preparedIndex: number): number {
    return Number((this.#prepared[preparedIndex]! - this.#iocbBase) / BigInt(IOCB_BYTES));
  }

  /** Calls `complete` for every finished request (result: bytes or `-errno`); never blocks. */
  reap(complete: (owner: T, result: number) => void): void {
    this.#collect(complete, false);
  }

  /** Like {@link reap}, but blocks until nothing is in flight. */
  reapAll(complete: (owner: T, result: number) => void): void {
    this.#collect(complete, true);
  }

  #collect(complete: (owner: T, result: number) => void, untilIdle: boolean): void {
    const finished = this.#finished;
    if (finished.length > 0) {
      this.#finished = [];
      for (const { slot, result } of finished) complete(this.#release(slot), result);
    }
    while (this.#inflight > 0) {
      const count = rawSyscall(
        AIO_SYSCALLS.ioGetevents,
        this.#context,
        untilIdle ? 1n : 0n,
        BigInt(AIO_SLOTS_MAX),
        this.#eventsAddress,
      );
      if (count <= 0 && !untilIdle) return;
      // Anything but EINTR means a broken context: a programmer error.
      assert(count > 0 || count === -ERRNO.EINTR, `io_getevents waits for I/O in flight: ${count}`);
      if (count <= 0) continue;
      this.#inflight -= count;
      for (let i = 0; i < count; i++) {
        const slot = Number(this.#events[i * 4]!);
        complete(this.#release(slot), Number(this.#events[i * 4 + 2]!));
      }
    }
  }

  /** Releases the context; nothing may be in flight. */
  close(): void {
    assert(
      this.#inflight === 0 && this.#preparedCount === 0,
      "no AIO request is in flight at close",
    );
    rawSyscall(AIO_SYSCALLS.ioDestroy, this.#context, 0n, 0n, 0n);
  }

  #release(slot: number): T {
    const owner = this.#owners[slot];
    assert(owner !== undefined, "a completion belongs to a prepared request");
    this.#owners[slot] = undefined;
    this.#buffers[slot] = undefined;
    this.#freeSlots.push(slot);
    return owner;
  }
}

/**
 * Runs a request alone, synchronously (pread, pwrite or fdatasync): what an
 * I/O queue does with a lone request while nothing is in flight.
 *
 * @returns The bytes done, or `-errno`.
 */
export function runAlone(request: IoRequest): number {
  assert(request.segments === undefined, "a vectored request never runs alone");
  return request.opcode === AIO_OPCODE.FDSYNC
    ? syncData(request.fd)
    : request.opcode === AIO_OPCODE.PWRITE
    ? writeAt(request.fd, request.buffer, request.offsetBytes, request.rwFlags)
    : readAt(request.fd, request.buffer, request.offsetBytes);
}

function vectoredOpcode(opcode: number): number {
  assert(
    opcode === AIO_OPCODE.PREAD || opcode === AIO_OPCODE.PWRITE,
    "only reads and writes are vectored",
  );
  return opcode === AIO_OPCODE.PREAD ? AIO_OPCODE.PREADV : AIO_OPCODE.PWRITEV;
}

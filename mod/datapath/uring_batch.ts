/**
 * io_uring for a data-plane worker: the same {@link IoQueue} as
 * `AioBatch`, with the disk I/O as io_uring READ/WRITE/READV/WRITEV/FSYNC
 * entries. Prepared requests are entries filled in the mapped submission
 * ring; `submit` is one `io_uring_enter`; completions are read from the
 * mapped completion ring, without a system call while the ring has some
 * (Linux AIO needs `io_getevents` for every reap). Completions count on the
 * worker's eventfd (IORING_REGISTER_EVENTFD), so its poll() wakes for them.
 *
 * The ublk queue workers use it: bench/uring_aio_bench.ts measured it
 * against AioBatch in one process (docs/ublk.md, bench/RESULTS.md). As in
 * AioBatch, a lone request with nothing in flight runs synchronously.
 *
 * The ring belongs to the worker's thread, which creates it and alone enters it.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { AIO_SLOTS_MAX } from "../constants.ts";
import { AIO_OPCODE } from "../sys/aio.ts";
import { IORING_FSYNC_DATASYNC, IORING_OP, IoUring, prepareSqe, SQE } from "../sys/io_uring.ts";
import { ERRNO } from "../sys/libc.ts";
import { runAlone } from "./aio_batch.ts";
import { IoAddresses } from "./io_addresses.ts";
import type { IoQueue, IoRequest } from "./io_queue.ts";

/** The io_uring opcode of an `IoRequest` opcode (`AIO_OPCODE`), plain or vectored. */
function uringOpcode(request: IoRequest): number {
  const vectored = request.segments !== undefined;
  switch (request.opcode) {
    case AIO_OPCODE.PREAD:
      return vectored ? IORING_OP.READV : IORING_OP.READ;
    case AIO_OPCODE.PWRITE:
      return vectored ? IORING_OP.WRITEV : IORING_OP.WRITE;
    default:
      assert(request.opcode === AIO_OPCODE.FDSYNC, "reads, writes and syncs only");
      return IORING_OP.FSYNC;
  }
}

/** One io_uring with {@link AIO_SLOTS_MAX} slots; `T` is whatever the caller wants back. */
export class UringBatch<T> implements IoQueue<T> {
  readonly #ring: IoUring;
  readonly #addresses = new IoAddresses();
  readonly #owners: (T | undefined)[] = new Array(AIO_SLOTS_MAX);
  readonly #buffers: (Uint8Array | undefined)[] = new Array(AIO_SLOTS_MAX);
  readonly #freeSlots: number[] = [];
  /** The lone prepared request and its slot, kept to run synchronously. */
  #lone: { request: IoRequest; slot: number } | undefined;
  #preparedCount = 0;
  #inflight = 0;
  /** Requests done at submit (run synchronously, or refused), completed at the next reap. */
  #finished: { slot: number; result: number }[] = [];

  private constructor(ring: IoUring) {
    this.#ring = ring;
    for (let slot = AIO_SLOTS_MAX - 1; slot >= 0; slot--) this.#freeSlots.push(slot);
  }

  /** A ring whose completions count on `eventFd`; or `-errno`. */
  static open<T>(eventFd: number): UringBatch<T> | number {
    // Room for every slot in the submission ring; the completion ring is twice that.
    const ring = IoUring.create({ entries: AIO_SLOTS_MAX });
    if (typeof ring === "number") return ring;
    const registered = ring.registerEventFd(eventFd);
    if (registered < 0) {
      ring.close();
      return registered;
    }
    return new UringBatch<T>(ring);
  }

  /** Slots free for {@link prepare}. */
  get free(): number {
    return this.#freeSlots.length;
  }

  /** Requests submitted and not yet reaped. */
  get inflight(): number {
    return this.#inflight;
  }

  /** Fills one entry; it goes to the kernel at the next {@link submit}. */
  prepare(request: IoRequest, owner: T): void {
    const slot = this.#freeSlots.pop();
    assert(slot !== undefined, "the caller checked for a free slot");
    // The kernel writes into read buffers after submit: they must be off V8's moving heap.
    assert(
      request.buffer.length === 0 || request.buffer.buffer.byteLength > 64,
      "buffer is off-heap",
    );
    const sqe = this.#ring.nextSqe();
    assert(sqe !== undefined, "the submission ring has an entry for every slot");
    const segments = request.segments;
    const opcode = uringOpcode(request);
    prepareSqe(sqe, {
      opcode,
      fd: request.fd,
      userData: BigInt(slot),
      addr: segments
        ? this.#addresses.iovecsOf(slot, segments)
        : request.buffer.length > 0
        ? this.#addresses.addressOf(request.buffer)
        : 0n,
      // For a vectored request the kernel takes the iovec count here.
      len: segments ? segments.length : request.buffer.length,
      off: BigInt(request.offsetBytes),
    });
    sqe.setUint32(
      SQE.OP_FLAGS,
      opcode === IORING_OP.FSYNC ? IORING_FSYNC_DATASYNC : request.rwFlags,
      true,
    );
    this.#owners[slot] = owner;
    this.#buffers[slot] = request.buffer;
    this.#lone = this.#preparedCount === 0 && !segments ? { request, slot } : undefined;
    this.#preparedCount++;
  }

  /** Hands every prepared entry to the kernel (or runs a lone request). */
  submit(): void {
    const lone = this.#lone;
    this.#lone = undefined;
    if (lone !== undefined && this.#preparedCount === 1 && this.#inflight === 0) {
      // Its entry is taken back unpublished: the request runs here instead.
      this.#ring.withdrawLast();
      this.#finished.push({ slot: lone.slot, result: runAlone(lone.request) });
      this.#preparedCount = 0;
      return;
    }
    const count = this.#preparedCount;
    this.#preparedCount = 0;
    if (count === 0) return;
    const entered = this.#ring.submit(0);
    // The ring has room for every slot and waits for nothing: only a broken ring refuses.
    assert(entered === count, `io_uring_enter takes every prepared entry: ${entered} of ${count}`);
    this.#inflight += count;
  }

  /** Calls `complete` for every finished request (result: bytes or `-errno`); never blocks. */
  reap(complete: (owner: T, result: number) => void): void {
    this.#takeFinished(complete);
    if (this.#inflight === 0) return;
    // Completions whose task work waits for the next entry into the kernel (COOP_TASKRUN).
    if (this.#ring.cqReady === 0) this.#ring.flushCompletions();
    this.#takeCompleted(complete);
  }

  /** Like {@link reap}, but blocks until nothing is in flight. */
  reapAll(complete: (owner: T, result: number) => void): void {
    this.#takeFinished(complete);
    while (this.#inflight > 0) {
      if (this.#ring.cqReady === 0) {
        const waited = this.#ring.submit(1);
        // Anything but EINTR means a broken ring: a programmer error.
        assert(
          waited >= 0 || waited === -ERRNO.EINTR,
          `io_uring_enter waits for I/O in flight: ${waited}`,
        );
      }
      this.#takeCompleted(complete);
    }
  }

  #takeFinished(complete: (owner: T, result: number) => void): void {
    const finished = this.#finished;
    if (finished.length === 0) return;
    this.#finished = [];
    for (const { slot, result } of finished) complete(this.#release(slot), result);
  }

  #takeCompleted(complete: (owner: T, result: number) => void): void {
    this.#inflight -= this.#ring.reap((completion) => {
      complete(this.#release(Number(completion.userData)), completion.result);
    });
  }

  /** Closes the ring; nothing may be in flight. */
  close(): void {
    assert(
      this.#inflight === 0 && this.#preparedCount === 0,
      "no io_uring request is in flight at close",
    );
    this.#ring.close();
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

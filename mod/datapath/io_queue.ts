/**
 * The seam between the data path and the disks: a queue of disk I/O that is
 * prepared request by request, submitted in batches and reaped without
 * blocking. {@link AioBatch} implements it with Linux AIO; a simulator can
 * implement it with a queue that completes I/O in any order after any delay
 * (and checks that writes in flight never overlap), and hand it to
 * `DataPath` through its `openIoQueue` option.
 *
 * Contract, which the data path relies on:
 * - `prepare` takes a free slot (the caller checks `free` first) and keeps
 *   the buffers untouched until the request completes; nothing goes to the
 *   disk before `submit`.
 * - Every submitted request completes exactly once, through `reap` or
 *   `reapAll`, with the bytes done or `-errno`; in any order.
 * - `reap` never blocks; `reapAll` returns only once nothing is in flight.
 * - Completions that arrive later also signal the eventfd the queue was
 *   opened with, so a worker sleeping in poll() wakes for them.
 *
 * @module
 */

/** What one queued disk I/O does. */
export interface IoRequest {
  /** PREAD, PWRITE or FDSYNC (`AIO_OPCODE`); with `segments`, a PREAD or PWRITE is vectored. */
  opcode: number;
  fd: number;
  /**
   * The data (empty for FDSYNC); must stay untouched until completion. For a
   * vectored request: the first segment, which keeps their memory alive.
   */
  buffer: Uint8Array;
  /** For a vectored request: the pieces of memory, in disk order. */
  segments?: readonly Uint8Array[];
  offsetBytes: number;
  /** `RWF_DSYNC` for a write that must be durable before it completes, else 0. */
  rwFlags: number;
}

/** A queue of disk I/O; `T` is whatever the caller wants back with each completion. */
export interface IoQueue<T> {
  /** Slots free for {@link prepare}. */
  readonly free: number;
  /** Requests submitted and not yet reaped. */
  readonly inflight: number;
  /** Queues one request; it goes to the disk at the next {@link submit}. */
  prepare(request: IoRequest, owner: T): void;
  /** Hands every prepared request to the disk. */
  submit(): void;
  /** Calls `complete` for every finished request (result: bytes or `-errno`); never blocks. */
  reap(complete: (owner: T, result: number) => void): void;
  /** Like {@link reap}, but blocks until nothing is in flight. */
  reapAll(complete: (owner: T, result: number) => void): void;
  /** Releases the queue; nothing may be in flight. */
  close(): void;
}

/** Opens a queue whose late completions signal `eventFd`; or returns `-errno`. */
export type IoQueueOpener = <T>(eventFd: number) => IoQueue<T> | number;

/**
 * Linux native AIO (io_submit/io_getevents) for O_DIRECT file devices.
 *
 * Why: a non-blocking FFI call costs a hop to a worker thread per request,
 * which was 47 % of the server's busy time under 4 KiB random reads. With AIO
 * the main thread submits each request with one short synchronous syscall,
 * and completions are reaped in batches: synchronously when they are already
 * done (tmpfs completes O_DIRECT inside io_submit), otherwise by ONE blocking
 * io_getevents on a worker thread for however many requests are in flight.
 * Results carry `-errno` in the completion, so no thread-local errno is read.
 *
 * Invariants:
 * - a slot's iocb, buffer and resolver belong to one request from submit to completion;
 * - the blocking reaper runs only while requests are in flight, and while it
 *   runs nothing else reaps, so it always has a completion to return.
 *
 * Only for O_DIRECT: on buffered files Linux runs AIO synchronously inside
 * io_submit, which would block the event loop on a slow disk.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { AIO_SLOTS_MAX } from "../constants.ts";
import { addressOf, callSync, type Libc, loadLibc, type PositionalIo, RWF_DSYNC } from "./libc.ts";

/** Linux AIO syscall numbers (x86_64: arch/x86/entry/syscalls; aarch64: asm-generic/unistd.h). */
export const AIO_SYSCALLS = Deno.build.arch === "x86_64"
  ? { ioSetup: 206n, ioDestroy: 207n, ioGetevents: 208n, ioSubmit: 209n }
  : { ioSetup: 0n, ioDestroy: 1n, ioGetevents: 4n, ioSubmit: 2n };

/** `struct iocb` and `struct io_event` sizes (linux/aio_abi.h). */
export const IOCB_BYTES = 64;
export const EVENT_BYTES = 32;
/** `aio_lio_opcode` values (linux/aio_abi.h). */
export const AIO_OPCODE = { PREAD: 0, PWRITE: 1, FDSYNC: 3, PREADV: 7, PWRITEV: 8 } as const;
const OPCODE_PREAD = AIO_OPCODE.PREAD;
const OPCODE_PWRITE = AIO_OPCODE.PWRITE;
/** `aio_flags`: signal completions on the eventfd in `aio_resfd`. */
const IOCB_FLAG_RESFD = 1;

/** One `struct iocb`. */
export interface IocbFields {
  /** Returned in the completion: which request it was. */
  token: number;
  opcode: number;
  fd: number;
  /** Buffer address and length; 0 for FDSYNC. */
  address: bigint;
  lengthBytes: number;
  offsetBytes: number;
  rwFlags: number;
  /** An eventfd to count completions on, or -1. */
  eventFd: number;
}

/** Writes a `struct iocb` at byte `at` of `iocbs`. */
export function writeIocb(iocbs: Uint8Array, view: DataView, at: number, fields: IocbFields): void {
  iocbs.fill(0, at, at + IOCB_BYTES);
  view.setBigUint64(at, BigInt(fields.token), true); // aio_data
  view.setUint32(at + 12, fields.rwFlags, true); // aio_rw_flags
  view.setUint16(at + 16, fields.opcode, true); // aio_lio_opcode
  view.setUint32(at + 20, fields.fd, true); // aio_fildes
  view.setBigUint64(at + 24, fields.address, true); // aio_buf
  view.setBigUint64(at + 32, BigInt(fields.lengthBytes), true); // aio_nbytes
  view.setBigInt64(at + 40, BigInt(fields.offsetBytes), true); // aio_offset
  if (fields.eventFd >= 0) {
    view.setUint32(at + 56, IOCB_FLAG_RESFD, true); // aio_flags
    view.setUint32(at + 60, fields.eventFd, true); // aio_resfd
  }
}

interface Pending {
  resolve: (result: number) => void;
  /** Held so the buffer stays alive while the kernel uses it. */
  buffer: Uint8Array;
}

/** One AIO context serving one file descriptor. */
export class AioRing implements PositionalIo {
  readonly #libc: Libc;
  readonly #fd: number;
  readonly #context: bigint;
  readonly #iocbs = new Uint8Array(AIO_SLOTS_MAX * IOCB_BYTES);
  readonly #iocbView = new DataView(this.#iocbs.buffer);
  readonly #iocbPointers = new BigUint64Array(AIO_SLOTS_MAX);
  readonly #pending: (Pending | undefined)[] = new Array(AIO_SLOTS_MAX);
  readonly #freeSlots: number[] = [];
  /** Requests waiting for a free slot, in arrival order. */
  readonly #waitingForSlot: (() => void)[] = [];
  readonly #syncEvents = new BigInt64Array(AIO_SLOTS_MAX * (EVENT_BYTES / 8));
  readonly #reaperEvents = new BigInt64Array(AIO_SLOTS_MAX * (EVENT_BYTES / 8));
  #inflight = 0;
  #reaping = false;
  #pumpScheduled = false;
  /** Slots prepared in this turn, submitted together. */
  #toSubmit: number[] = [];
  readonly #submitList = new BigUint64Array(AIO_SLOTS_MAX);
  readonly #submitListAddress = addressOf(new Uint8Array(this.#submitList.buffer));

  private constructor(libc: Libc, fd: number, context: bigint) {
    this.#libc = libc;
    this.#fd = fd;
    this.#context = context;
    const base = addressOf(this.#iocbs);
    for (let slot = 0; slot < AIO_SLOTS_MAX; slot++) {
      this.#iocbPointers[slot] = base + BigInt(slot * IOCB_BYTES);
    }
    for (let slot = AIO_SLOTS_MAX - 1; slot >= 0; slot--) this.#freeSlots.push(slot);
  }

  /**
   * Sets up a context for `fd`.
   *
   * @returns The ring, or `-errno` when the kernel refuses (e.g. fs.aio-max-nr reached).
   */
  static open(fd: number): AioRing | number {
    const libc = loadLibc();
    const contextCell = new BigUint64Array(1);
    const result = callSync(() =>
      libc.syscallSync(
        AIO_SYSCALLS.ioSetup,
        BigInt(AIO_SLOTS_MAX),
        addressOf(new Uint8Array(contextCell.buffer)),
        0n,
        0n,
        0n,
      )
    );
    if (result < 0) return result;
    return new AioRing(libc, fd, contextCell[0]!);
  }

  pread(buffer: Uint8Array, offsetBytes: number): Promise<number> {
    return this.#submit(OPCODE_PREAD, buffer, offsetBytes, 0);
  }

  pwrite(data: Uint8Array, offsetBytes: number): Promise<number> {
    return this.#submit(OPCODE_PWRITE, data, offsetBytes, 0);
  }

  pwriteDsync(data: Uint8Array, offsetBytes: number): Promise<number> {
    return this.#submit(OPCODE_PWRITE, data, offsetBytes, RWF_DSYNC);
  }

  /** Releases the context; every request must have completed. */
  close(): void {
    assert(this.#inflight === 0 && !this.#reaping, "no AIO request is in flight at close");
    this.#libc.syscallSync(AIO_SYSCALLS.ioDestroy, this.#context, 0n, 0n, 0n, 0n);
  }

  async #submit(
    opcode: number,
    buffer: Uint8Array,
    offsetBytes: number,
    rwFlags: number,
  ): Promise<number> {
    if (buffer.length === 0) return 0;
    // V8 keeps typed arrays of up to 64 bytes inside its moving heap; the
    // kernel writes into this buffer after submit, so it must live off-heap.
    assert(buffer.buffer.byteLength > 64, "AIO buffers are off the V8 heap");
    let slot = this.#freeSlots.pop();
    while (slot === undefined) {
      await new Promise<void>((resolve) => this.#waitingForSlot.push(resolve));
      slot = this.#freeSlots.pop();
    }
    writeIocb(this.#iocbs, this.#iocbView, slot * IOCB_BYTES, {
      token: slot,
      opcode,
      fd: this.#fd,
      address: addressOf(buffer),
      lengthBytes: buffer.length,
      offsetBytes,
      rwFlags,
      eventFd: -1,
    });
    const completion = new Promise<number>((resolve) => this.#pending[slot] = { resolve, buffer });
    this.#toSubmit.push(slot);
    this.#schedulePump();
    return await completion;
  }

  /**
   * Once per turn of the event loop: submits every request prepared in it
   * with one io_submit, then reaps what has completed.
   */
  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    queueMicrotask(() => {
      this.#pumpScheduled = false;
      this.#submitPrepared();
      if (!this.#reaping && this.#inflight > 0) this.#reapNow();
    });
  }

  #submitPrepared(): void {
    const slots = this.#toSubmit;
    for (let i = 0; i < slots.length; i++) this.#submitList[i] = this.#iocbPointers[slots[i]!]!;
    for (let next = 0; next < slots.length;) {
      const submitted = callSync(() =>
        this.#libc.syscallSync(
          AIO_SYSCALLS.ioSubmit,
          this.#context,
          BigInt(slots.length - next),
          this.#submitListAddress + BigInt(next * 8),
          0n,
          0n,
        )
      );
      if (submitted > 0) {
        this.#inflight += submitted;
        next += submitted;
      } else {
        // The request at `next` was refused: it completes with the error, the rest go on.
        this.#complete(slots[next]!, submitted < 0 ? submitted : -5);
        next++;
      }
    }
    this.#toSubmit = [];
  }

  /** Takes what has completed; if requests remain, one blocking reaper waits for the next. */
  #reapNow(): void {
    assert(!this.#reaping, "nothing reaps while the blocking reaper runs");
    const count = Number(this.#libc.syscallSync(
      AIO_SYSCALLS.ioGetevents,
      this.#context,
      0n,
      BigInt(AIO_SLOTS_MAX),
      addressOf(new Uint8Array(this.#syncEvents.buffer)),
      0n,
    ));
    if (count > 0) this.#deliver(this.#syncEvents, count);
    if (this.#inflight > 0) this.#startReaper();
  }

  #startReaper(): void {
    this.#reaping = true;
    const events = this.#reaperEvents;
    this.#libc.syscall(
      AIO_SYSCALLS.ioGetevents,
      this.#context,
      1n,
      BigInt(AIO_SLOTS_MAX),
      addressOf(new Uint8Array(events.buffer)),
      0n,
    ).then((result) => {
      this.#reaping = false;
      // -1 is EINTR here (the context is valid and requests are in flight): wait again.
      const count = Number(result);
      if (count > 0) this.#deliver(events, count);
      if (this.#inflight > 0) this.#reapNow();
    });
  }

  #deliver(events: BigInt64Array, count: number): void {
    for (let i = 0; i < count; i++) {
      const slot = Number(events[i * 4]!);
      const result = Number(events[i * 4 + 2]!);
      this.#inflight--;
      this.#complete(slot, result);
    }
  }

  #complete(slot: number, result: number): void {
    const pending = this.#pending[slot];
    assert(pending !== undefined, "a completion belongs to a submitted request");
    this.#pending[slot] = undefined;
    this.#freeSlots.push(slot);
    this.#waitingForSlot.shift()?.();
    pending.resolve(result);
  }
}

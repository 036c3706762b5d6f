/**
 * io_uring through Deno FFI: `io_uring_setup` and `io_uring_enter` by
 * `syscall(2)` (glibc wraps neither), the submission and completion rings
 * and the SQE array mapped with `mmap`, and the few opcodes the ublk export
 * needs (URING_CMD, POLL_ADD, NOP), and the disk I/O of `datapath/uring_batch.ts`
 * (READ, WRITE, READV, WRITEV, FSYNC).
 *
 * Layouts and constants are those of include/uapi/linux/io_uring.h;
 * tests/sys/io_uring_layout_test.ts checks them against the header with a
 * compiled C program. A ring belongs to one thread: the ublk driver insists
 * that a queue's commands come from one task, so the ring is entered
 * synchronously from the thread that created it (see docs/ublk.md).
 *
 * Memory ordering: the kernel reads the SQ tail and writes the CQ tail
 * concurrently. Those words are accessed with `Atomics` (sequentially
 * consistent, so no load or store moves across them), as liburing does with
 * its acquire/release helpers.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { addressOf, callSync } from "./libc.ts";

/** Syscall numbers of the generic table (x86_64 and aarch64 share them). */
const SYS_IO_URING_SETUP = 425n;
const SYS_IO_URING_ENTER = 426n;
const SYS_IO_URING_REGISTER = 427n;

/** `io_uring_setup` flags. */
export const IORING_SETUP = {
  CQSIZE: 1 << 3,
  /** Completions' task work runs when the task enters the kernel, not by interrupting it. */
  COOP_TASKRUN: 1 << 8,
  /** 128-byte SQEs: an 80-byte command area for URING_CMD (ublk's control commands). */
  SQE128: 1 << 10,
} as const;

/** `io_uring_params.features` bits. */
export const IORING_FEAT_SINGLE_MMAP = 1 << 0;

/** `io_uring_enter` flags. */
export const IORING_ENTER_GETEVENTS = 1 << 0;

/** Opcodes (enum io_uring_op). */
export const IORING_OP = {
  NOP: 0,
  READV: 1,
  WRITEV: 2,
  FSYNC: 3,
  POLL_ADD: 6,
  READ: 22,
  WRITE: 23,
  URING_CMD: 46,
} as const;

/** `fsync_flags` of IORING_OP_FSYNC: fdatasync rather than fsync. */
export const IORING_FSYNC_DATASYNC = 1;

/** `io_uring_register` opcodes. */
export const IORING_REGISTER = { EVENTFD: 4 } as const;

/** `mmap` offsets of the ring areas. */
/** (The CQ ring shares the SQ ring's mapping: IORING_FEAT_SINGLE_MMAP.) */
export const IORING_OFF = { SQ_RING: 0n, CQ_RING: 0x8000000n, SQES: 0x10000000n } as const;

/** Byte offsets in struct io_uring_params (120 bytes). */
export const PARAMS = {
  BYTES: 120,
  SQ_ENTRIES: 0,
  CQ_ENTRIES: 4,
  FLAGS: 8,
  FEATURES: 20,
  /** struct io_sqring_offsets: head, tail, ring_mask, ring_entries, flags, dropped, array. */
  SQ_OFF: 40,
  /** struct io_cqring_offsets: head, tail, ring_mask, ring_entries, overflow, cqes, flags. */
  CQ_OFF: 80,
} as const;

/** Byte offsets in struct io_uring_sqe (64 bytes, 128 with SQE128). */
export const SQE = {
  BYTES: 64,
  OPCODE: 0,
  FLAGS: 1,
  IOPRIO: 2,
  FD: 4,
  /** `off`; for URING_CMD, `cmd_op` (u32). */
  OFF: 8,
  CMD_OP: 8,
  ADDR: 16,
  LEN: 24,
  /** `rw_flags`, `poll32_events`, ... */
  OP_FLAGS: 28,
  USER_DATA: 32,
  /** URING_CMD's command area: 16 bytes in a 64-byte SQE, 80 in a 128-byte one. */
  CMD: 48,
} as const;

/** Byte offsets in struct io_uring_cqe (16 bytes). */
export const CQE = { BYTES: 16, USER_DATA: 0, RES: 8, FLAGS: 12 } as const;

const PROT_READ_WRITE = 0x1 | 0x2;
const MAP_SHARED_POPULATE = 0x01 | 0x8000;
const MAP_FAILED = 0xffffffffffffffffn;

const SYMBOLS = {
  // Seven fixed i64 arguments: syscall(2) passes six to the kernel, io_uring_enter's sigsz among them.
  syscall: { parameters: ["i64", "i64", "i64", "i64", "i64", "i64", "i64"], result: "i64" },
  /** The same, on a thread of the runtime's pool: for waits that must not block the event loop. */
  syscallNonblocking: {
    name: "syscall",
    parameters: ["i64", "i64", "i64", "i64", "i64", "i64", "i64"],
    result: "i64",
    nonblocking: true,
  },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let symbols: Symbols | undefined;

function libc(): Symbols {
  symbols ??= Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  return symbols;
}

/** A shared mapping of `lengthBytes` of `fd` at `offset`, or `-errno`. */
export function mapShared(
  fd: number,
  offset: bigint,
  lengthBytes: number,
  prot = PROT_READ_WRITE,
): { pointer: Deno.PointerObject; bytes: ArrayBuffer } | number {
  let pointer: Deno.PointerValue = null;
  const result = callSync(() => {
    pointer = libc().mmap(null, BigInt(lengthBytes), prot, MAP_SHARED_POPULATE, fd, offset);
    return BigInt(Deno.UnsafePointer.value(pointer)) === MAP_FAILED ? -1 : 0;
  });
  if (result < 0) return result;
  assert(pointer !== null, "a successful mmap is not NULL");
  const bytes = Deno.UnsafePointerView.getArrayBuffer(pointer, lengthBytes);
  return { pointer, bytes };
}

/** Unmaps what {@link mapShared} mapped. */
export function unmap(pointer: Deno.PointerObject, lengthBytes: number): void {
  libc().munmap(pointer, BigInt(lengthBytes));
}

/** Options of {@link IoUring.create}. */
export interface IoUringOptions {
  /** Submission queue entries (the kernel rounds up to a power of two). */
  entries: number;
  /** 128-byte SQEs (IORING_SETUP_SQE128). @default false */
  sqe128?: boolean;
  /** Completion queue entries; @default twice `entries` */
  cqEntries?: number;
}

/** One completion, as {@link IoUring.reap} hands it out. */
export interface Completion {
  userData: bigint;
  /** The result: non-negative or `-errno`. */
  result: number;
  flags: number;
}

/**
 * One io_uring: a submission ring whose SQEs are filled in place
 * ({@link IoUring.nextSqe}) and a completion ring read by {@link IoUring.reap}.
 */
export class IoUring {
  readonly fd: number;
  readonly sqeBytes: number;
  readonly sqEntries: number;
  readonly cqEntries: number;
  readonly #maps: { pointer: Deno.PointerObject; lengthBytes: number }[];
  readonly #sqHead: Uint32Array;
  readonly #sqTail: Uint32Array;
  readonly #sqMask: number;
  readonly #sqArray: Uint32Array;
  readonly #sqes: Uint8Array;
  readonly #sqeView: DataView;
  readonly #cqHead: Uint32Array;
  readonly #cqTail: Uint32Array;
  readonly #cqMask: number;
  readonly #cqes: DataView;
  readonly #cqesOffset: number;
  /** SQEs filled and not yet handed to the kernel. */
  #pending = 0;
  #closed = false;

  private constructor(fd: number, params: DataView, sqeBytes: number) {
    this.fd = fd;
    this.sqeBytes = sqeBytes;
    this.sqEntries = params.getUint32(PARAMS.SQ_ENTRIES, true);
    this.cqEntries = params.getUint32(PARAMS.CQ_ENTRIES, true);
    const sq = (field: number) => params.getUint32(PARAMS.SQ_OFF + field * 4, true);
    const cq = (field: number) => params.getUint32(PARAMS.CQ_OFF + field * 4, true);
    const features = params.getUint32(PARAMS.FEATURES, true);
    assert((features & IORING_FEAT_SINGLE_MMAP) !== 0, "kernels with ublk map both rings at once");
    const sqRingBytes = sq(6) + this.sqEntries * 4;
    const cqRingBytes = cq(5) + this.cqEntries * CQE.BYTES;
    const ringBytes = Math.max(sqRingBytes, cqRingBytes);
    this.#maps = [];
    const ring = this.#map(IORING_OFF.SQ_RING, ringBytes);
    const sqes = this.#map(IORING_OFF.SQES, this.sqEntries * sqeBytes);
    this.#sqHead = new Uint32Array(ring, sq(0), 1);
    this.#sqTail = new Uint32Array(ring, sq(1), 1);
    this.#sqMask = new Uint32Array(ring, sq(2), 1)[0]!;
    this.#sqArray = new Uint32Array(ring, sq(6), this.sqEntries);
    this.#sqes = new Uint8Array(sqes);
    this.#sqeView = new DataView(sqes);
    this.#cqHead = new Uint32Array(ring, cq(0), 1);
    this.#cqTail = new Uint32Array(ring, cq(1), 1);
    this.#cqMask = new Uint32Array(ring, cq(2), 1)[0]!;
    this.#cqes = new DataView(ring);
    this.#cqesOffset = cq(5);
    // The SQ array maps ring slots to SQEs one to one, once and for all.
    for (let i = 0; i < this.sqEntries; i++) this.#sqArray[i] = i;
  }

  /**
   * Sets up a ring.
   *
   * @returns The ring, or `-errno`: EPERM when `kernel.io_uring_disabled` forbids
   * it, ENOSYS when the kernel has no io_uring, ENOMEM past the locked-memory limit.
   */
  static create(options: IoUringOptions): IoUring | number {
    const params = new Uint8Array(PARAMS.BYTES);
    const view = new DataView(params.buffer);
    let flags = IORING_SETUP.COOP_TASKRUN;
    if (options.sqe128) flags |= IORING_SETUP.SQE128;
    if (options.cqEntries !== undefined) {
      flags |= IORING_SETUP.CQSIZE;
      view.setUint32(PARAMS.CQ_ENTRIES, options.cqEntries, true);
    }
    view.setUint32(PARAMS.FLAGS, flags, true);
    const pointer = addressOf(params);
    const fd = callSync(() =>
      libc().syscall(SYS_IO_URING_SETUP, BigInt(options.entries), pointer, 0n, 0n, 0n, 0n)
    );
    if (fd < 0) return fd;
    try {
      return new IoUring(fd, view, options.sqe128 ? 2 * SQE.BYTES : SQE.BYTES);
    } catch (error) {
      libc().close(fd);
      throw error;
    }
  }

  #map(offset: bigint, lengthBytes: number): ArrayBuffer {
    const mapped = mapShared(this.fd, offset, lengthBytes);
    if (typeof mapped === "number") {
      throw new Error(`Cannot map the io_uring area at ${offset}: errno ${-mapped}`);
    }
    this.#maps.push({ pointer: mapped.pointer, lengthBytes });
    return mapped.bytes;
  }

  /** SQEs that can be filled before the next {@link submit}. */
  get sqFree(): number {
    const inKernel = (Atomics.load(this.#sqTail, 0) - Atomics.load(this.#sqHead, 0)) >>> 0;
    return this.sqEntries - inKernel - this.#pending;
  }

  /**
   * The next free SQE, zeroed, as a DataView over the ring (valid until the
   * next {@link submit}), or undefined when the ring is full: submit first.
   */
  nextSqe(): DataView | undefined {
    if (this.sqFree === 0) return undefined;
    const tail = (Atomics.load(this.#sqTail, 0) + this.#pending) >>> 0;
    const offset = (tail & this.#sqMask) * this.sqeBytes;
    this.#sqes.fill(0, offset, offset + this.sqeBytes);
    this.#pending++;
    return new DataView(this.#sqeView.buffer, offset, this.sqeBytes);
  }

  /** Takes back the last SQE filled since the last {@link submit}: the kernel never sees it. */
  withdrawLast(): void {
    assert(this.#pending > 0, "an SQE was filled and not yet submitted");
    this.#pending--;
  }

  /**
   * Publishes the filled SQEs and enters the kernel: submits them and, with
   * `waitFor` > 0, blocks this thread until that many completions are there.
   *
   * @returns SQEs the kernel took, or `-errno` (EINTR is retried; EBUSY or EAGAIN: reap first).
   */
  submit(waitFor = 0): number {
    const toSubmit = this.#publish();
    const flags = waitFor > 0 ? IORING_ENTER_GETEVENTS : 0;
    if (toSubmit === 0 && waitFor === 0) return 0;
    return callSync(() =>
      libc().syscall(
        SYS_IO_URING_ENTER,
        BigInt(this.fd),
        BigInt(toSubmit),
        BigInt(waitFor),
        BigInt(flags),
        0n,
        0n,
      )
    );
  }

  /**
   * Waits until `waitFor` completions are in the ring, with the kernel call
   * on a thread of the runtime's pool, so the event loop goes on meanwhile:
   * for rings whose commands may come from any task (the ublk control ring).
   * Submit first; no other call on the ring may run until it resolves.
   *
   * @returns 0, or `-errno` when the ring itself fails.
   */
  async waitAsync(waitFor: number): Promise<number> {
    while (this.cqReady < waitFor) {
      const result = await libc().syscallNonblocking(
        SYS_IO_URING_ENTER,
        BigInt(this.fd),
        0n,
        BigInt(waitFor),
        BigInt(IORING_ENTER_GETEVENTS),
        0n,
        0n,
      );
      if (result !== -1n) continue;
      // errno stayed on the pool thread: a call that does not wait tells whether the ring is broken (EINTR is not).
      const check = this.submit(0) === 0 ? this.#enterNow() : -1;
      if (check < 0) return check;
    }
    return 0;
  }

  #enterNow(): number {
    return callSync(() =>
      libc().syscall(
        SYS_IO_URING_ENTER,
        BigInt(this.fd),
        0n,
        0n,
        BigInt(IORING_ENTER_GETEVENTS),
        0n,
        0n,
      )
    );
  }

  #publish(): number {
    const count = this.#pending;
    if (count > 0) {
      // The store of the tail is the release: the SQEs are written before it.
      Atomics.store(this.#sqTail, 0, (Atomics.load(this.#sqTail, 0) + count) >>> 0);
      this.#pending = 0;
    }
    return (Atomics.load(this.#sqTail, 0) - Atomics.load(this.#sqHead, 0)) >>> 0;
  }

  /**
   * Enters the kernel without waiting, so completions whose task work is
   * pending (IORING_SETUP_COOP_TASKRUN defers it to the next entry) reach the ring.
   *
   * @returns 0, or `-errno`.
   */
  flushCompletions(): number {
    const entered = this.#enterNow();
    return entered < 0 ? entered : 0;
  }

  /**
   * IORING_REGISTER_EVENTFD: every completion posted to this ring also
   * counts on `eventFd`, so a thread asleep in poll() wakes for it.
   *
   * @returns 0, or `-errno`.
   */
  registerEventFd(eventFd: number): number {
    const cell = new Int32Array([eventFd]);
    return callSync(() =>
      libc().syscall(
        SYS_IO_URING_REGISTER,
        BigInt(this.fd),
        BigInt(IORING_REGISTER.EVENTFD),
        addressOf(new Uint8Array(cell.buffer)),
        1n,
        0n,
        0n,
      )
    );
  }

  /** Completions waiting in the ring. */
  get cqReady(): number {
    return (Atomics.load(this.#cqTail, 0) - Atomics.load(this.#cqHead, 0)) >>> 0;
  }

  /** Hands every completion in the ring to `take`, oldest first; returns how many. */
  reap(take: (completion: Completion) => void): number {
    let head = Atomics.load(this.#cqHead, 0);
    const tail = Atomics.load(this.#cqTail, 0);
    let count = 0;
    while (head !== tail) {
      const offset = this.#cqesOffset + (head & this.#cqMask) * CQE.BYTES;
      const completion = {
        userData: this.#cqes.getBigUint64(offset + CQE.USER_DATA, true),
        result: this.#cqes.getInt32(offset + CQE.RES, true),
        flags: this.#cqes.getUint32(offset + CQE.FLAGS, true),
      };
      head = (head + 1) >>> 0;
      // Freed before `take` runs: it may queue SQEs whose completions need the room.
      Atomics.store(this.#cqHead, 0, head);
      count++;
      take(completion);
    }
    return count;
  }

  /** Unmaps the rings and closes the ring's descriptor (the kernel cancels what is in flight). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const { pointer, lengthBytes } of this.#maps) unmap(pointer, lengthBytes);
    libc().close(this.fd);
  }
}

/** Fills an SQE's common fields. */
export function prepareSqe(
  sqe: DataView,
  fields: {
    opcode: number;
    fd: number;
    userData: bigint;
    addr?: bigint;
    len?: number;
    off?: bigint;
  },
): void {
  sqe.setUint8(SQE.OPCODE, fields.opcode);
  sqe.setInt32(SQE.FD, fields.fd, true);
  sqe.setBigUint64(SQE.OFF, fields.off ?? 0n, true);
  sqe.setBigUint64(SQE.ADDR, fields.addr ?? 0n, true);
  sqe.setUint32(SQE.LEN, fields.len ?? 0, true);
  sqe.setBigUint64(SQE.USER_DATA, fields.userData, true);
}

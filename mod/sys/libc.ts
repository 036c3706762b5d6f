/**
 * The few libc calls a file or block device needs, through Deno FFI, with
 * correct `errno`. Devices, the data path and the exports share its errno
 * handling through the other bindings of `mod/sys/`.
 *
 * Why FFI: positional I/O through FFI measured about 108K IOPS on tmpfs against
 * about 37K for `node:fs` callbacks, and the data-path calls are declared
 * `nonblocking`, so they run on a worker thread and a slow or failing disk
 * never blocks the event loop.
 *
 * Why the repeat: `errno` is thread-local and a nonblocking call runs on some
 * worker thread, so the main thread cannot read the worker's `errno`. When a
 * nonblocking call returns -1, the exact same call is repeated once on the
 * main thread, and `errno` is read right after it through `__errno_location`.
 * Every repeated call is idempotent (pread, pwrite at a fixed offset,
 * fdatasync, fallocate, ioctl). If the repeat succeeds, its result stands: a
 * transient failure then costs one synchronous call, a real one costs the
 * event loop one failed call's latency.
 *
 * Every wrapper returns the call's non-negative result or `-errno`, the kernel
 * convention, so callers branch without exceptions on the hot path.
 *
 * @module
 */

import { assert } from "../assert.ts";
import type { IoErrorCode } from "../errors.ts";
import type { ByteRange } from "../byte_range.ts";
import { EINTR_RETRIES_MAX } from "../constants.ts";
export { EINTR_RETRIES_MAX };

/** Linux `errno` values the device layer names (asm-generic/errno-base.h, errno.h). */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  ENODEV: 19,
  EISDIR: 21,
  EINVAL: 22,
  ENOTTY: 25,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EOPNOTSUPP: 95,
} as const;

/** `open()` flags for x86_64 and aarch64 Linux (asm-generic/fcntl.h). */
export const OPEN_FLAGS = {
  O_RDONLY: 0,
  O_RDWR: 2,
  O_EXCL: 0o200,
  O_CLOEXEC: 0o2000000,
  // O_DIRECT is 0o40000 on x86_64 but 0o200000 on aarch64 and arm.
  O_DIRECT: Deno.build.arch === "aarch64" ? 0o200000 : 0o40000,
} as const;

/** `fallocate()` modes (linux/falloc.h). */
export const FALLOC_FL = { KEEP_SIZE: 0x01, PUNCH_HOLE: 0x02, ZERO_RANGE: 0x10 } as const;

/** Block-device ioctls (linux/fs.h): `_IO(0x12, n)` and `_IOR(0x12, 114, size_t)`. */
export const IOCTL = {
  BLKDISCARD: 0x1277n,
  BLKZEROOUT: 0x127fn,
  BLKSSZGET: 0x1268n,
  BLKGETSIZE64: 0x80081272n,
  /** `LOOP_GET_STATUS64` (linux/loop.h): a loop device's `struct loop_info64`. */
  LOOP_GET_STATUS64: 0x4c05n,
} as const;

/** `sizeof(struct loop_info64)`: five u64, four u32, three name/key arrays, two u64. */
const LOOP_INFO64_BYTES = 5 * 8 + 4 * 4 + 64 + 64 + 32 + 2 * 8;

/** `pwritev2()` flag: the write is durable when the call returns (linux/fs.h). */
export const RWF_DSYNC = 0x02;

/** `flock()` operations (sys/file.h). */
export const LOCK_EX_NB = 0x02 | 0x04;

/** The errno values that have a name of their own in `errors.ts`. */
const IO_ERROR_CODES: ReadonlyMap<number, IoErrorCode> = new Map([
  [ERRNO.EIO, "EIO"],
  [ERRNO.ENOSPC, "ENOSPC"],
  [ERRNO.EINVAL, "EINVAL"],
  [ERRNO.EROFS, "EROFS"],
  [ERRNO.EOPNOTSUPP, "ENOTSUP"],
  [ERRNO.EBADF, "EBADF"],
  [ERRNO.EACCES, "EACCES"],
  [ERRNO.EBUSY, "EBUSY"],
  [ERRNO.ENOENT, "ENOENT"],
  // A removed disk or a detached device answers these: the device is gone.
  [ERRNO.ENODEV, "ENODEV"],
  [ERRNO.ENXIO, "ENODEV"],
]);

/** Translates an errno into the error names of `errors.ts`; the rest are `"EOTHER"`. */
export function ioErrorCodeOf(errno: number): IoErrorCode {
  return IO_ERROR_CODES.get(errno) ?? "EOTHER";
}

const IO_PREAD = ["i32", "buffer", "usize", "i64"] as const;
const IO_PWRITEV2 = ["i32", "buffer", "i32", "i64", "i32"] as const;
const IO_FALLOCATE = ["i32", "i32", "i64", "i64"] as const;
const IO_IOCTL = ["i32", "u64", "buffer"] as const;
const SYSCALL_ARGS = ["i64", "i64", "i64", "i64", "i64", "i64"] as const;

/**
 * The calls that may wait on a disk. Each is declared twice: as itself, run
 * on a thread of the runtime's pool (`nonblocking`: a slow or failing disk
 * never stalls the event loop), and as `<name>Sync`, run on the caller's
 * thread, for worker threads that wait in their own loop.
 */
const DISK_CALLS = {
  pread: { parameters: IO_PREAD, result: "isize" },
  pwrite: { parameters: IO_PREAD, result: "isize" },
  pwritev2: { parameters: IO_PWRITEV2, result: "isize" },
  fdatasync: { parameters: ["i32"], result: "i32" },
  fallocate: { parameters: IO_FALLOCATE, result: "i32" },
  ioctl: { parameters: IO_IOCTL, result: "i32" },
  // syscall(2) for the Linux AIO calls, which glibc does not wrap. glibc's
  // syscall() is a register shuffle, so declaring six fixed i64 arguments is
  // safe for this variadic function on x86_64 and aarch64.
  syscall: { parameters: SYSCALL_ARGS, result: "i64" },
} as const satisfies Deno.ForeignLibraryInterface;

/** {@link DISK_CALLS} as the pool-thread declarations and their `Sync` twins. */
type WithSyncTwins<T> =
  & { [Name in keyof T]: T[Name] & { nonblocking: true } }
  & { [Name in keyof T as `${Name & string}Sync`]: T[Name] & { name: Name } };

function withSyncTwins<T extends Deno.ForeignLibraryInterface>(calls: T): WithSyncTwins<T> {
  const symbols: Record<string, Deno.ForeignFunction> = {};
  for (const [name, call] of Object.entries(calls)) {
    symbols[name] = { ...call as Deno.ForeignFunction, nonblocking: true };
    symbols[`${name}Sync`] = { ...call as Deno.ForeignFunction, name };
  }
  // Built key by key above; the mapped type states the result the loop guarantees.
  return symbols as unknown as WithSyncTwins<T>;
}

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  ...withSyncTwins(DISK_CALLS),
} as const satisfies Deno.ForeignLibraryInterface;

/** The libc functions dm-remap calls. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let libc: Libc | undefined;

/**
 * Loads libc on first use, so importing `device/` needs no FFI permission.
 *
 * @throws {Error} Off Linux on x86_64 or aarch64: the flag values here are for those.
 * @throws {Deno.errors.NotCapable} Without `--allow-ffi`.
 */
export function loadLibc(): Libc {
  if (libc !== undefined) return libc;
  if (Deno.build.os !== "linux" || !["x86_64", "aarch64"].includes(Deno.build.arch)) {
    throw new Error(
      `File devices need Linux on x86_64 or aarch64, not ${Deno.build.os} on ${Deno.build.arch}`,
    );
  }
  libc = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  return libc;
}

/** The calling thread's errno; call it right after the failed synchronous call. */
function lastErrno(): number {
  const location = loadLibc().__errno_location();
  assert(location !== null, "__errno_location returns a pointer");
  return new Deno.UnsafePointerView(location).getInt32(0);
}

/**
 * Runs a call on a worker thread; on -1, repeats it on this thread to read errno.
 * Returns the result or `-errno`.
 */
async function callNonblocking(
  nonblocking: () => Promise<number | bigint>,
  repeat: () => number | bigint,
): Promise<number> {
  for (let attempt = 0;; attempt++) {
    const result = Number(await nonblocking());
    if (result !== -1) return result;
    const repeated = Number(repeat());
    if (repeated !== -1) return repeated;
    // Nothing may run between the repeated call and this read of errno.
    const errno = lastErrno();
    assert(errno > 0, "a failed libc call sets errno");
    if (errno !== ERRNO.EINTR || attempt >= EINTR_RETRIES_MAX) return -errno;
  }
}

/** Runs a call on this thread; returns the result or `-errno`. */
export function callSync(call: () => number | bigint): number {
  for (let attempt = 0;; attempt++) {
    const result = Number(call());
    if (result !== -1) return result;
    const errno = lastErrno();
    assert(errno > 0, "a failed libc call sets errno");
    if (errno !== ERRNO.EINTR || attempt >= EINTR_RETRIES_MAX) return -errno;
  }
}

/** `open(path, flags)` with `O_CLOEXEC`: the fd or `-errno`. Never creates a file. */
export function openPath(path: string, flags: number): number {
  const pathZ = new TextEncoder().encode(path + "\0");
  return callSync(() => loadLibc().open(pathZ, flags | OPEN_FLAGS.O_CLOEXEC, 0));
}

/** Positional data calls: each returns the bytes done or `-errno`. */
export interface PositionalIo {
  pread(buffer: Uint8Array, offsetBytes: number): Promise<number>;
  pwrite(data: Uint8Array, offsetBytes: number): Promise<number>;
  /** Writes with RWF_DSYNC: durable when it resolves. */
  pwriteDsync(data: Uint8Array, offsetBytes: number): Promise<number>;
}

/**
 * The calls on one open file descriptor. Each returns its result or `-errno`;
 * none checks whether the descriptor is still open: its owner does.
 */
export class FileDescriptor implements PositionalIo {
  readonly fd: number;
  readonly #libc: Libc;

  constructor(fd: number) {
    assert(Number.isInteger(fd) && fd >= 0, "a file descriptor is a non-negative integer");
    this.fd = fd;
    this.#libc = loadLibc();
  }

  /** `pread`: bytes read (0 at end of file) or `-errno`. */
  pread(buffer: Uint8Array, offsetBytes: number): Promise<number> {
    const c = this.#libc;
    return callNonblocking(
      () => c.pread(this.fd, buffer, BigInt(buffer.length), BigInt(offsetBytes)),
      () => c.preadSync(this.fd, buffer, BigInt(buffer.length), BigInt(offsetBytes)),
    );
  }

  /** `pwrite`: bytes written or `-errno`. */
  pwrite(data: Uint8Array, offsetBytes: number): Promise<number> {
    const c = this.#libc;
    return callNonblocking(
      () => c.pwrite(this.fd, data, BigInt(data.length), BigInt(offsetBytes)),
      () => c.pwriteSync(this.fd, data, BigInt(data.length), BigInt(offsetBytes)),
    );
  }

  /** `pwritev2` of one buffer with `RWF_DSYNC`: bytes written and durable, or `-errno`. */
  pwriteDsync(data: Uint8Array, offsetBytes: number): Promise<number> {
    const c = this.#libc;
    // struct iovec { void *iov_base; size_t iov_len; }: it holds `data`'s address, not
    // a reference, so the worker closure below keeps `data` alive until the call ends.
    const iovec = new BigUint64Array([addressOf(data), BigInt(data.length)]);
    const iovecBytes = new Uint8Array(iovec.buffer);
    return callNonblocking(
      async () => {
        const result = await c.pwritev2(this.fd, iovecBytes, 1, BigInt(offsetBytes), RWF_DSYNC);
        assert(data.length >= 0, "the written buffer is alive");
        return result;
      },
      () => c.pwritev2Sync(this.fd, iovecBytes, 1, BigInt(offsetBytes), RWF_DSYNC),
    );
  }

  /** `fdatasync`: 0 or `-errno`. */
  fdatasync(): Promise<number> {
    const c = this.#libc;
    return callNonblocking(() => c.fdatasync(this.fd), () => c.fdatasyncSync(this.fd));
  }

  /** `fallocate(fd, mode, offset, length)`: 0 or `-errno`. */
  fallocate(mode: number, range: ByteRange): Promise<number> {
    const c = this.#libc;
    return callNonblocking(
      () => c.fallocate(this.fd, mode, BigInt(range.offsetBytes), BigInt(range.lengthBytes)),
      () => c.fallocateSync(this.fd, mode, BigInt(range.offsetBytes), BigInt(range.lengthBytes)),
    );
  }

  /** A block-device range ioctl (BLKDISCARD, BLKZEROOUT) taking `uint64_t[2]`: 0 or `-errno`. */
  ioctlRange(request: bigint, range: ByteRange): Promise<number> {
    const c = this.#libc;
    const words = new BigUint64Array([BigInt(range.offsetBytes), BigInt(range.lengthBytes)]);
    const argument = new Uint8Array(words.buffer);
    return callNonblocking(
      () => c.ioctl(this.fd, request, argument),
      () => c.ioctlSync(this.fd, request, argument),
    );
  }

  /** BLKGETSIZE64: the block device's size in bytes, or `-errno`. */
  blockDeviceBytes(): number {
    const size = new BigUint64Array(1);
    const argument = new Uint8Array(size.buffer);
    const result = callSync(() => this.#libc.ioctlSync(this.fd, IOCTL.BLKGETSIZE64, argument));
    if (result < 0) return result;
    const sizeBytes = Number(size[0]);
    assert(Number.isSafeInteger(sizeBytes), "block device size is a safe integer");
    return sizeBytes;
  }

  /** BLKSSZGET: the block device's logical sector size, or `-errno`. */
  logicalSectorBytes(): number {
    const size = new Int32Array(1);
    const argument = new Uint8Array(size.buffer);
    const result = callSync(() => this.#libc.ioctlSync(this.fd, IOCTL.BLKSSZGET, argument));
    return result < 0 ? result : size[0]!;
  }

  /** `flock(fd, LOCK_EX | LOCK_NB)`: 0 or `-errno` (EAGAIN when another holder has it). */
  lockExclusive(): number {
    return callSync(() => this.#libc.flock(this.fd, LOCK_EX_NB));
  }

  /** `close(fd)`: 0 or `-errno`. Not retried on EINTR: Linux has released the fd anyway. */
  close(): number {
    const result = this.#libc.close(this.fd);
    return result === -1 ? -lastErrno() : result;
  }
}

/**
 * The file behind a loop device: `lo_device` and `lo_inode` of LOOP_GET_STATUS64,
 * the `st_dev` (kernel encoding, as glibc's) and `st_ino` of its backing file.
 *
 * @returns The backing file's device and inode, or `-errno` (ENXIO for an unbound loop device).
 */
export function loopBackingOf(path: string): { device: number; inode: number } | number {
  const fd = openPath(path, OPEN_FLAGS.O_RDONLY);
  if (fd < 0) return fd;
  const info = new BigUint64Array(LOOP_INFO64_BYTES / 8);
  try {
    const argument = new Uint8Array(info.buffer);
    const result = callSync(() => loadLibc().ioctlSync(fd, IOCTL.LOOP_GET_STATUS64, argument));
    if (result < 0) return result;
  } finally {
    loadLibc().close(fd);
  }
  const device = Number(info[0]);
  const inode = Number(info[1]);
  assert(Number.isSafeInteger(device) && Number.isSafeInteger(inode), "loop backing fits a number");
  return { device, inode };
}

/** The address of a buffer's first byte, to check O_DIRECT alignment. */
export function addressOf(buffer: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
}

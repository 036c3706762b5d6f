/**
 * The block device interface every layer of the data path speaks.
 *
 * Like an nbdkit plugin under its filters, a `Device` is either a backend
 * (file, block device, memory) or a wrapper that does one job and forwards the
 * rest (fault injection, remapping). The NBD server sees only this interface.
 *
 * Contract for every implementation:
 * - `read` fills the whole buffer or throws; it never returns short or invented data.
 * - `write` stores the whole buffer or throws `DeviceIoError`; with `fua` it is
 *   durable when the promise resolves.
 * - `flush` makes every completed write durable.
 * - `writeZeroes` makes the range read back as zeros; `discard` makes its
 *   contents unspecified (but never data from another range or device).
 * - Ranges are checked by the caller; implementations assert them.
 *
 * A device may also let other threads of this process do reads and writes on
 * its storage themselves ({@link Device.directAccess}), as the NBD data
 * plane's workers do; a wrapper that must see some requests lists them as
 * ranges to leave to it. Nothing above the device needs to know which wrapper
 * that is.
 *
 * @module
 */

import type { ByteRange } from "../byte_range.ts";
export type { ByteRange };
import type { SharedBlockListBuffers } from "../shared_block_list.ts";

/** Options for {@link Device.write}. */
export interface WriteOptions {
  /** Force unit access: the write is durable when the promise resolves. @default false */
  fua?: boolean;
}

/** Options for {@link Device.writeZeroes}. */
export interface WriteZeroesOptions extends WriteOptions {
  /** Whether the range may be deallocated (punched) instead of written. @default false */
  mayPunch?: boolean;
}

/** A random-access block store. */
export interface Device {
  /** Path or label used in messages. */
  readonly name: string;
  /** Size in bytes; a multiple of 512. */
  readonly sizeBytes: number;
  /** Reads `buffer.length` bytes at `offsetBytes`. @throws {DeviceIoError} */
  read(buffer: Uint8Array, offsetBytes: number): Promise<void>;
  /** Writes all of `data` at `offsetBytes`. @throws {DeviceIoError} */
  write(data: Uint8Array, offsetBytes: number, options?: WriteOptions): Promise<void>;
  /** Makes completed writes durable (fdatasync). @throws {DeviceIoError} */
  flush(): Promise<void>;
  /** Hints that a range is unused. @throws {DeviceIoError} */
  discard(range: ByteRange): Promise<void>;
  /** Makes a range read back as zeros. @throws {DeviceIoError} */
  writeZeroes(range: ByteRange, options?: WriteZeroesOptions): Promise<void>;
  /** Releases the device; later calls fail. */
  close(): Promise<void>;
  /**
   * Lets a direct reader/writer (another thread of this process) do I/O on
   * this device's storage itself, except on the ranges the answer says to
   * leave to the device. Asking grants it for the life of the device: from
   * then on `flush` syncs even when nothing went through this object, since
   * writes it cannot see may be waiting (a flush through the device stays the
   * way to make the direct writer's writes durable).
   *
   * @returns The access, or `undefined` when every request must go through
   * the device (it is not backed by a descriptor, or a wrapper cannot tell
   * which requests it must see). @default undefined
   */
  directAccess?(): DirectAccess | undefined;
}

/** How a direct reader/writer reaches a device's storage: see {@link Device.directAccess}. */
export interface DirectAccess {
  /** An open descriptor of this process; valid until the device closes. */
  fd: number;
  /** Opened with O_DIRECT: memory, offsets and lengths must be aligned. */
  direct: boolean;
  /** Requests the device must see itself. @default none: every request may bypass it */
  leftToDevice?: LeftToDevice;
}

/**
 * Blocks whose requests a direct reader/writer must send through the device,
 * in shared memory, so any thread can check them without a message while the
 * device changes them. A request that touches a listed block goes through the
 * device whole.
 */
export interface LeftToDevice {
  /** Blocks whose reads go through the device. */
  reads: SharedBlockListBuffers;
  /** Blocks whose writes go through the device; while it lists everything, flushes do too. */
  writes: SharedBlockListBuffers;
  /** The unit of both lists; a multiple of 512. */
  blockBytes: number;
}

/** Asserts that a range lies inside a device: for implementations, after the edge checked it. */
export function isRangeInside(device: { sizeBytes: number }, range: ByteRange): boolean {
  return Number.isSafeInteger(range.offsetBytes) && Number.isSafeInteger(range.lengthBytes) &&
    range.offsetBytes >= 0 && range.lengthBytes >= 0 &&
    range.offsetBytes + range.lengthBytes <= device.sizeBytes;
}

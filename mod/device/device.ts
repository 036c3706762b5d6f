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
 * @module
 */

import type { ByteRange } from "../byte_range.ts";
export type { ByteRange };

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
   * Writes reached the storage other than through this object (the NBD data
   * plane's workers): a device that skips flushes when it wrote nothing must
   * not skip the next one. @default no such skipping
   */
  noteOutsideWrites?(): void;
}

/** Asserts that a range lies inside a device: for implementations, after the edge checked it. */
export function isRangeInside(device: { sizeBytes: number }, range: ByteRange): boolean {
  return Number.isSafeInteger(range.offsetBytes) && Number.isSafeInteger(range.lengthBytes) &&
    range.offsetBytes >= 0 && range.lengthBytes >= 0 &&
    range.offsetBytes + range.lengthBytes <= device.sizeBytes;
}

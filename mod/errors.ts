/**
 * Typed operating errors: the failures a storage appliance expects and handles.
 *
 * Each error names the device and what to do, and carries the fields that the
 * boundaries translate: NBD error codes (`nbd/`), HTTP status (`api/`) and
 * process exit codes (`cli/exit_codes.ts`).
 *
 * @module
 */

/** The POSIX error names the data path distinguishes. */
export type IoErrorCode =
  | "EIO"
  | "ENOSPC"
  | "EINVAL"
  | "EROFS"
  | "ENOTSUP"
  | "EBADF"
  | "ENOENT"
  | "EACCES"
  | "EBUSY"
  | "EOTHER";

/** Fields of {@link DeviceIoError}. */
export interface DeviceIoErrorOptions {
  /** Path or label of the device that failed. */
  device: string;
  /** Byte offset of the failed request. */
  offsetBytes: number;
  /** Length of the failed request in bytes. */
  lengthBytes: number;
  /** POSIX error name. */
  code: IoErrorCode;
  /** The OS error number when one is known. */
  errno?: number;
  /** The underlying error, if any. */
  cause?: unknown;
}

/**
 * An I/O request to a device failed.
 *
 * @example
 * ```ts
 * import { DeviceIoError } from "./errors.ts";
 * const error = new DeviceIoError("read", {
 *   device: "/dev/sdb", offsetBytes: 4096, lengthBytes: 512, code: "EIO",
 * });
 * console.log(error.message); // Cannot read "/dev/sdb": offset 4096, length 512: EIO
 * ```
 */
export class DeviceIoError extends Error {
  override name = "DeviceIoError";
  readonly device: string;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly code: IoErrorCode;
  readonly errno: number | undefined;

  constructor(action: string, options: DeviceIoErrorOptions) {
    super(
      `Cannot ${action} "${options.device}": offset ${options.offsetBytes}, length ${options.lengthBytes}: ${options.code}`,
      { cause: options.cause },
    );
    this.device = options.device;
    this.offsetBytes = options.offsetBytes;
    this.lengthBytes = options.lengthBytes;
    this.code = options.code;
    this.errno = options.errno;
  }
}

/** Opening or probing a device failed (missing, busy, wrong type, no permission). */
export class DeviceOpenError extends Error {
  override name = "DeviceOpenError";
  readonly device: string;
  readonly code: IoErrorCode;
  constructor(device: string, message: string, code: IoErrorCode, cause?: unknown) {
    super(`Cannot open "${device}": ${message}`, { cause });
    this.device = device;
    this.code = code;
  }
}

/** No metadata copy on a spare passed its checks; nothing was written. */
export class NoValidCopyError extends Error {
  override name = "NoValidCopyError";
  readonly device: string;
  constructor(device: string, detail: string) {
    super(
      `No valid dm-remap metadata copy on "${device}": ${detail}; nothing was written. ` +
        `Run "dm-remap check ${device}" to see each copy`,
    );
    this.device = device;
  }
}

/** Devices belong to different setups, or do not match what the metadata records. */
export class SetupMismatchError extends Error {
  override name = "SetupMismatchError";
  readonly device: string;
  constructor(device: string, detail: string) {
    super(`Device "${device}" does not match the setup: ${detail}`);
    this.device = device;
  }
}

/** The request or command line cannot be carried out as given; data was not touched. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A device holds data that the command would destroy; pass --force to proceed. */
export class RefusedError extends Error {
  override name = "RefusedError";
  readonly device: string;
  constructor(device: string, message: string) {
    super(message);
    this.device = device;
  }
}

/** The metadata was written by a newer format version than this program reads. */
export class UnsupportedVersionError extends Error {
  override name = "UnsupportedVersionError";
  readonly device: string;
  constructor(device: string, found: number, supported: number) {
    super(
      `Metadata on "${device}" has format version ${found}, this dm-remap reads up to ${supported}: ` +
        `upgrade dm-remap; nothing was written`,
    );
    this.device = device;
  }
}

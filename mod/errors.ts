/**
 * Typed operating errors: the failures a storage appliance expects and handles.
 *
 * Each error names the device and what to do, and carries the fields that the
 * boundaries translate: NBD error codes (`nbd/`), HTTP status (`api/`) and
 * process exit codes (`cli/exit_codes.ts`).
 *
 * @module
 */

/**
 * The POSIX error names the data path distinguishes. `"EIO"` is a medium
 * error: this request failed, the device is still there, and other blocks
 * may work. `"ENODEV"` means the device is gone (ENODEV, ENXIO, or a block
 * device whose size dropped under an open descriptor, as the kernel does to
 * a removed disk): no request on it will work again, so no block is to blame.
 */
export type IoErrorCode =
  | "EIO"
  | "ENODEV"
  | "ENOSPC"
  | "EINVAL"
  | "EROFS"
  | "ENOTSUP"
  | "EBADF"
  | "ENOENT"
  | "EACCES"
  | "EBUSY"
  | "EOTHER";

/** Linux errno numbers with their names and glibc's words (asm-generic/errno-base.h, errno.h). */
const ERRNO_WORDS: Readonly<Record<number, readonly [string, string]>> = {
  1: ["EPERM", "operation not permitted"],
  2: ["ENOENT", "no such file or directory"],
  4: ["EINTR", "interrupted system call"],
  5: ["EIO", "input/output error"],
  6: ["ENXIO", "no such device or address"],
  9: ["EBADF", "bad file descriptor"],
  11: ["EAGAIN", "resource temporarily unavailable"],
  12: ["ENOMEM", "cannot allocate memory"],
  13: ["EACCES", "permission denied"],
  16: ["EBUSY", "device or resource busy"],
  17: ["EEXIST", "file exists"],
  18: ["EXDEV", "invalid cross-device link"],
  19: ["ENODEV", "no such device"],
  20: ["ENOTDIR", "not a directory"],
  21: ["EISDIR", "is a directory"],
  22: ["EINVAL", "invalid argument"],
  23: ["ENFILE", "too many open files in system"],
  24: ["EMFILE", "too many open files"],
  25: ["ENOTTY", "inappropriate ioctl for device"],
  26: ["ETXTBSY", "text file busy"],
  27: ["EFBIG", "file too large"],
  28: ["ENOSPC", "no space left on device"],
  29: ["ESPIPE", "illegal seek"],
  30: ["EROFS", "read-only file system"],
  36: ["ENAMETOOLONG", "file name too long"],
  38: ["ENOSYS", "function not implemented"],
  40: ["ELOOP", "too many levels of symbolic links"],
  61: ["ENODATA", "no data available"],
  95: ["EOPNOTSUPP", "operation not supported"],
  98: ["EADDRINUSE", "address already in use"],
  99: ["EADDRNOTAVAIL", "cannot assign requested address"],
  110: ["ETIMEDOUT", "connection timed out"],
  111: ["ECONNREFUSED", "connection refused"],
  121: ["EREMOTEIO", "remote I/O error"],
  122: ["EDQUOT", "disk quota exceeded"],
  125: ["ECANCELED", "operation canceled"],
};

/**
 * An errno in words, for messages: never a bare number.
 *
 * @example
 * ```ts
 * import { errnoInWords } from "./errors.ts";
 * console.log(errnoInWords(1)); // EPERM (operation not permitted)
 * ```
 */
export function errnoInWords(errno: number): string {
  const known = ERRNO_WORDS[errno];
  return known ? `${known[0]} (${known[1]})` : `error number ${errno} (unknown to dm-remap)`;
}

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
    const known = options.errno === undefined ? options.code : errnoInWords(options.errno);
    const reason = options.code === "ENODEV" ? `${known}; the device is gone` : known;
    super(
      `Cannot ${action} "${options.device}": offset ${options.offsetBytes}, length ${options.lengthBytes}: ${reason}`,
      { cause: options.cause },
    );
    this.device = options.device;
    this.offsetBytes = options.offsetBytes;
    this.lengthBytes = options.lengthBytes;
    this.code = options.code;
    this.errno = options.errno;
  }
}

/**
 * Whether an error says that the device is gone rather than that one request
 * failed ({@link IoErrorCode}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DeviceIoError, isDeviceGone } from "./errors.ts";
 * const range = { device: "/dev/sdb", offsetBytes: 0, lengthBytes: 512 };
 * assert.equal(isDeviceGone(new DeviceIoError("read", { ...range, code: "ENODEV" })), true);
 * assert.equal(isDeviceGone(new DeviceIoError("read", { ...range, code: "EIO" })), false);
 * ```
 */
export function isDeviceGone(error: unknown): error is DeviceIoError {
  return error instanceof DeviceIoError && error.code === "ENODEV";
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

/** A scrub rewrote a metadata copy or the remap table and it did not read back as written. */
export class MetadataScrubError extends Error {
  override name = "MetadataScrubError";
  readonly device: string;
  constructor(device: string, detail: string) {
    super(
      `Cannot repair the dm-remap metadata on "${device}": ${detail}; ` +
        `the spare's metadata may be failing, replace the spare`,
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

/**
 * What a command needs is not there or not free now: no server runs the
 * setup, a device is in use, a server did not stop in time. Nothing was changed.
 */
export class UnavailableError extends Error {
  override name = "UnavailableError";
}

/**
 * An alert could not be delivered: the hook failed or timed out, the webhook
 * did not answer 2xx after its retries. Delivery failures are logged and
 * counted by the service; `dm-remap alert test` reports them (exit 69).
 */
export class AlertDeliveryError extends UnavailableError {
  override name = "AlertDeliveryError";
  /** The target's name in the configuration. */
  readonly target: string;
  constructor(target: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.target = target;
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

/** Listening on a socket path or TCP address failed: it is taken, or not ours to replace. */
export class ListenError extends Error {
  override name = "ListenError";
  /** The socket path or `host:port`. */
  readonly address: string;
  constructor(what: string, address: string, detail: string, cause?: unknown) {
    super(`Cannot serve ${what} on "${address}": ${detail}`, { cause });
    this.address = address;
  }
}

/**
 * The kernel's NBD device could not be attached or taken back: no nbd module,
 * no capability, the device busy or served by another process.
 */
export class KernelAttachError extends UnavailableError {
  override name = "KernelAttachError";
}

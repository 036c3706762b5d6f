/**
 * The data path's own request form: what an export hands the core and what
 * a worker forwards to the engine's thread, free of any wire format. An NBD
 * command, a ublk descriptor or a test turns into one of these; its answer is
 * a {@link DataResult} that the export frames as it must (the NBD export maps
 * `error.code` through `nbdErrnoOf`'s table).
 *
 * @module
 */

import type { IoErrorCode } from "../errors.ts";

/**
 * What a request does. "cache" is a hint that asks for nothing (there is no
 * cache here to warm); "trim" promises no contents afterwards.
 */
export type DataOp = "read" | "write" | "flush" | "trim" | "write-zeroes" | "cache";

/** Modifiers of a request. */
export interface DataFlags {
  /** Durable before the answer (write, trim, write-zeroes). */
  fua: boolean;
  /** write-zeroes may deallocate the range instead of writing zeros. */
  mayPunch: boolean;
  /** write-zeroes must fail at once (ENOTSUP) unless zeroing is faster than writing. */
  fastZero: boolean;
}

/** One request in neutral form; the range is checked by the export before it gets here. */
export interface DataRequest {
  op: DataOp;
  offsetBytes: number;
  lengthBytes: number;
  flags: DataFlags;
  /**
   * write: the bytes to write (`lengthBytes` of them). read: where to read
   * into, if the caller has a buffer; else the executor takes one.
   */
  data: Uint8Array | undefined;
}

/** Why a request failed, in the device layer's words. */
export interface DataError {
  code: IoErrorCode;
  /** For a structured error reply or a log line. */
  message: string;
}

/** The answer to a {@link DataRequest}. */
export interface DataResult {
  /** Undefined when the request succeeded. */
  error: DataError | undefined;
  /** A successful read's bytes. */
  data: Uint8Array | undefined;
}

/** The flags of a plain request: no FUA, no punching, no fast-zero demand. */
export const NO_FLAGS: Readonly<DataFlags> = Object.freeze({
  fua: false,
  mayPunch: false,
  fastZero: false,
});

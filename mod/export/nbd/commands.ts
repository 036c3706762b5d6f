/**
 * NBD commands in the data path's neutral form and their results back as
 * NBD replies: the one translation both NBD transports use (the event-loop
 * connections through {@link RequestExecutor}, the connection workers
 * directly). Error codes become NBD errors through `nbdErrnoOfCode`, the
 * table of `nbdErrnoOf`.
 *
 * @module
 */

import { assert, unreachable } from "../../assert.ts";
import type { DataError, DataFlags, DataOp, DataRequest } from "../../datapath/data_request.ts";
import {
  encodeErrorChunk,
  encodeNoneChunk,
  encodeSimpleReply,
  NBD_CMD,
  NBD_CMD_FLAG,
  nbdErrnoOfCode,
  type RequestHeader,
} from "./protocol.ts";

/** An NBD error to answer with. */
export interface NbdProblem {
  /** The `NBD_E*` value. */
  errno: number;
  /** Why, for the structured error chunk's message. */
  message: string;
}

/** The commands with a neutral form, and that form. */
const DATA_OPS: Readonly<Partial<Record<number, DataOp>>> = {
  [NBD_CMD.READ]: "read",
  [NBD_CMD.WRITE]: "write",
  [NBD_CMD.FLUSH]: "flush",
  [NBD_CMD.TRIM]: "trim",
  [NBD_CMD.WRITE_ZEROES]: "write-zeroes",
  [NBD_CMD.CACHE]: "cache",
};

/** The neutral operation of a validated command, or undefined for BLOCK_STATUS (answered by NBD code). */
export function dataOpOf(type: number): DataOp | undefined {
  return DATA_OPS[type];
}

/**
 * A validated command as a neutral request.
 *
 * @param header The command (validated; not BLOCK_STATUS or DISC).
 * @param data A write's payload, or where a read's data goes (optional).
 */
export function dataRequestOf(header: RequestHeader, data: Uint8Array | undefined): DataRequest {
  const op = dataOpOf(header.type) ?? unreachable(`command ${header.type} has a neutral form`);
  const offsetBytes = Number(header.offset);
  assert(Number.isSafeInteger(offsetBytes), "a validated offset is a safe integer");
  return {
    op,
    offsetBytes,
    lengthBytes: header.lengthBytes,
    flags: dataFlagsOf(header.flags),
    data,
  };
}

/** The neutral flags of every combination of FUA, NO_HOLE and FAST_ZERO, made once. */
const DATA_FLAGS: readonly Readonly<DataFlags>[] = Array.from(
  { length: 8 },
  (_, bits) =>
    Object.freeze({
      fua: (bits & 1) !== 0,
      mayPunch: (bits & 2) === 0,
      fastZero: (bits & 4) !== 0,
    }),
);

/**
 * The neutral flags of a command's NBD flags, without allocating (the
 * worker's hot path asks once per request).
 */
export function dataFlagsOf(nbdFlags: number): Readonly<DataFlags> {
  const bits = ((nbdFlags & NBD_CMD_FLAG.FUA) !== 0 ? 1 : 0) |
    ((nbdFlags & NBD_CMD_FLAG.NO_HOLE) !== 0 ? 2 : 0) |
    ((nbdFlags & NBD_CMD_FLAG.FAST_ZERO) !== 0 ? 4 : 0);
  return DATA_FLAGS[bits]!;
}

/** The NBD error of a failed neutral request. */
export function problemOf(error: DataError): NbdProblem {
  return { errno: nbdErrnoOfCode(error.code), message: error.message };
}

/** The reply to a request that succeeded without data, in the session's reply style. */
export function encodeOkReply(cookie: bigint, structuredReplies: boolean): Uint8Array {
  return structuredReplies ? encodeNoneChunk(cookie) : encodeSimpleReply(cookie, 0);
}

/** The reply to a request that failed, in the session's reply style. */
export function encodeErrorReply(
  cookie: bigint,
  options: { problem: NbdProblem; structuredReplies: boolean },
): Uint8Array {
  const { problem } = options;
  assert(problem.errno !== 0, "an error reply carries an error");
  return options.structuredReplies
    ? encodeErrorChunk(cookie, problem.errno, problem.message)
    : encodeSimpleReply(cookie, problem.errno);
}

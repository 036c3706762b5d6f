/**
 * NBD wire constants and the small encoders and decoders built on them.
 *
 * Every number the protocol defines lives here, named as in the NBD protocol
 * specification (NetworkBlockDevice/nbd `doc/proto.md`), so the handshake and
 * transmission code never carries a bare magic number. Integers on the wire are
 * big-endian ("network byte order"). Magics are given with their ASCII where
 * they have one.
 *
 * The one translation table from device errors to NBD error values is
 * {@link nbdErrnoOf}.
 *
 * @module
 */

import { assert } from "../../assert.ts";
import { NBD_REQUEST_BYTES_MAX, NBD_STRING_BYTES_MAX, SECTOR_BYTES } from "../../constants.ts";
import { DeviceIoError, type IoErrorCode } from "../../errors.ts";

// ---------------------------------------------------------------------------
// Handshake magics and flags.

/** First 8 bytes the server sends: ASCII "NBDMAGIC". */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** Second server magic and every client option's magic: ASCII "IHAVEOPT". */
export const NBD_OPTION_MAGIC = 0x49484156454f5054n;
/** Magic of every option reply in fixed newstyle negotiation. */
export const NBD_REPLY_MAGIC_OPTION = 0x3e889045565a9n;

/** Handshake flag: the server speaks fixed newstyle negotiation. */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
/** Handshake flag: the server can omit the 124 zero bytes after NBD_OPT_EXPORT_NAME. */
export const NBD_FLAG_NO_ZEROES = 1 << 1;
/** Client flag: the client speaks fixed newstyle negotiation. */
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
/** Client flag: the client does not want the 124 zero bytes. */
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// ---------------------------------------------------------------------------
// Transmission flags (16 bits, sent with the export size).

/** Always set. */
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
/** The export is read-only. */
export const NBD_FLAG_READ_ONLY = 1 << 1;
/** NBD_CMD_FLUSH is supported. */
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
/** NBD_CMD_FLAG_FUA is supported. */
export const NBD_FLAG_SEND_FUA = 1 << 3;
/** The export behaves like a rotating disk. */
export const NBD_FLAG_ROTATIONAL = 1 << 4;
/** NBD_CMD_TRIM is supported. */
export const NBD_FLAG_SEND_TRIM = 1 << 5;
/** NBD_CMD_WRITE_ZEROES and NBD_CMD_FLAG_NO_HOLE are supported. */
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
/** NBD_CMD_FLAG_DF on reads is supported (structured replies only). */
export const NBD_FLAG_SEND_DF = 1 << 7;
/** Flush and FUA are visible across all connections to the export. */
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
/** NBD_CMD_RESIZE (experimental; never set here). */
export const NBD_FLAG_SEND_RESIZE = 1 << 9;
/** NBD_CMD_CACHE is supported. */
export const NBD_FLAG_SEND_CACHE = 1 << 10;
/** NBD_CMD_FLAG_FAST_ZERO on write-zeroes is supported. */
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

// ---------------------------------------------------------------------------
// Options (client → server during the handshake).

/** Choose an export and enter transmission; cannot report errors. */
export const NBD_OPT_EXPORT_NAME = 1;
/** End the negotiation (soft disconnect). */
export const NBD_OPT_ABORT = 2;
/** List the exports. */
export const NBD_OPT_LIST = 3;
/** Withdrawn; answered with NBD_REP_ERR_UNSUP. */
export const NBD_OPT_PEEK_EXPORT = 4;
/** Upgrade to TLS; refused with NBD_REP_ERR_POLICY here. */
export const NBD_OPT_STARTTLS = 5;
/** Describe an export without entering transmission. */
export const NBD_OPT_INFO = 6;
/** Describe an export and enter transmission. */
export const NBD_OPT_GO = 7;
/** Use structured replies in transmission. */
export const NBD_OPT_STRUCTURED_REPLY = 8;
/** List metadata contexts. */
export const NBD_OPT_LIST_META_CONTEXT = 9;
/** Select metadata contexts for NBD_CMD_BLOCK_STATUS. */
export const NBD_OPT_SET_META_CONTEXT = 10;
/** 64-bit headers (experimental extension); answered with NBD_REP_ERR_UNSUP here. */
export const NBD_OPT_EXTENDED_HEADERS = 11;

// ---------------------------------------------------------------------------
// Option replies (server → client during the handshake).

/** Option accepted, or the end of a list. */
export const NBD_REP_ACK = 1;
/** One export in the answer to NBD_OPT_LIST. */
export const NBD_REP_SERVER = 2;
/** One piece of information in the answer to NBD_OPT_INFO or NBD_OPT_GO. */
export const NBD_REP_INFO = 3;
/** One metadata context with its id. */
export const NBD_REP_META_CONTEXT = 4;
/** Bit 31 marks every error reply. */
export const NBD_REP_FLAG_ERROR = 0x80000000;
/** The option is unknown to this server. */
export const NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR + 1;
/** The option is known but refused by policy. */
export const NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR + 2;
/** The option data is malformed or not allowed now. */
export const NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR + 3;
/** Not supported on this platform. */
export const NBD_REP_ERR_PLATFORM = NBD_REP_FLAG_ERROR + 4;
/** TLS is required first (never sent: we are a NOTLS server). */
export const NBD_REP_ERR_TLS_REQD = NBD_REP_FLAG_ERROR + 5;
/** The requested export does not exist. */
export const NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR + 6;
/** The server is shutting down. */
export const NBD_REP_ERR_SHUTDOWN = NBD_REP_FLAG_ERROR + 7;
/** The client must ask for NBD_INFO_BLOCK_SIZE first (never sent). */
export const NBD_REP_ERR_BLOCK_SIZE_REQD = NBD_REP_FLAG_ERROR + 8;
/** The request or reply is too large. */
export const NBD_REP_ERR_TOO_BIG = NBD_REP_FLAG_ERROR + 9;

// Information types inside NBD_REP_INFO (answers to NBD_OPT_INFO and NBD_OPT_GO).
/** Size and transmission flags. */
export const NBD_INFO_EXPORT = 0;
/** Canonical export name. */
export const NBD_INFO_NAME = 1;
/** Human-readable export description. */
export const NBD_INFO_DESCRIPTION = 2;
/** Minimum, preferred and maximum block sizes. */
export const NBD_INFO_BLOCK_SIZE = 3;

/** The one metadata context we serve. */
export const NBD_CONTEXT_BASE_ALLOCATION = "base:allocation";
/** The `base:` namespace wildcard, valid in NBD_OPT_LIST_META_CONTEXT only. */
export const NBD_CONTEXT_BASE_NAMESPACE = "base:";

// ---------------------------------------------------------------------------
// Transmission: requests.

/** Magic of every request (32 bits). */
export const NBD_REQUEST_MAGIC = 0x25609513;
/** Magic of a simple reply (32 bits). */
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
/** Magic of a structured reply chunk (32 bits). */
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Commands (16 bits), named as NBD_CMD_<NAME> in the protocol. */
export const NBD_CMD = {
  /** Read; data follows the reply. */
  READ: 0,
  /** Write; data follows the request. */
  WRITE: 1,
  /** Disconnect after the requests in flight; no reply. */
  DISC: 2,
  /** Make every completed write durable. */
  FLUSH: 3,
  /** Discard a range (a hint). */
  TRIM: 4,
  /** Prefetch a range (a hint). */
  CACHE: 5,
  /** Make a range read back as zeros. */
  WRITE_ZEROES: 6,
  /** Report allocation of a range for the selected metadata context. */
  BLOCK_STATUS: 7,
} as const;

/** Command flags (16 bits), named as NBD_CMD_FLAG_<NAME> in the protocol. */
export const NBD_CMD_FLAG = {
  /** Force unit access: durable before the reply. */
  FUA: 1 << 0,
  /** Write zeroes without deallocating. */
  NO_HOLE: 1 << 1,
  /** Do not fragment the read reply. */
  DF: 1 << 2,
  /** Block status: one extent only. */
  REQ_ONE: 1 << 3,
  /** Write zeroes only if faster than writing; else fail with NBD_ENOTSUP. */
  FAST_ZERO: 1 << 4,
  /** Only meaningful with extended headers, which we do not negotiate. */
  PAYLOAD_LEN: 1 << 5,
} as const;

/** Structured reply chunk flag: last chunk of the reply. */
export const NBD_REPLY_FLAG_DONE = 1 << 0;

// Structured reply chunk types.
/** Final chunk without payload. */
export const NBD_REPLY_TYPE_NONE = 0;
/** Read data at an offset. */
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
/** A range that reads as zeros (not sent). */
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
/** Extents for one metadata context. */
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
/** An error with a message. */
export const NBD_REPLY_TYPE_ERROR = (1 << 15) + 1;
/** An error at an offset (not sent). */
export const NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2;

// NBD error values: the only numbers allowed in a reply's error field.
/** Operation not permitted (read-only). */
export const NBD_EPERM = 1;
/** Input/output error. */
export const NBD_EIO = 5;
/** Out of memory (never sent). */
export const NBD_ENOMEM = 12;
/** Invalid request. */
export const NBD_EINVAL = 22;
/** No space: write beyond the end. */
export const NBD_ENOSPC = 28;
/** Value too large (not sent). */
export const NBD_EOVERFLOW = 75;
/** Not supported: fast zero refused. */
export const NBD_ENOTSUP = 95;
/** Server shutting down (not sent). */
export const NBD_ESHUTDOWN = 108;

// ---------------------------------------------------------------------------
// Sizes of the fixed parts of messages.

/** Option header: magic (8), option (4), length (4). */
export const OPTION_HEADER_BYTES = 16;
/** Option reply header: magic (8), option (4), reply type (4), length (4). */
export const OPTION_REPLY_HEADER_BYTES = 20;
/** Request header: magic (4), flags (2), type (2), cookie (8), offset (8), length (4). */
export const REQUEST_HEADER_BYTES = 28;
/** Simple reply: magic (4), error (4), cookie (8). */
export const SIMPLE_REPLY_BYTES = 16;
/** Structured chunk header: magic (4), flags (2), type (2), cookie (8), length (4). */
export const STRUCTURED_HEADER_BYTES = 20;
/** Zero padding after the NBD_OPT_EXPORT_NAME answer unless NO_ZEROES was agreed. */
export const EXPORT_NAME_PADDING_BYTES = 124;

/** The minimum block size we advertise and enforce: requests are sector aligned. */
export const NBD_BLOCK_BYTES_MIN = SECTOR_BYTES;

assert(NBD_BLOCK_BYTES_MIN <= 65536, "the spec caps the minimum block size at 64 KiB");
assert(NBD_REQUEST_BYTES_MAX <= 0xffffffff - 8, "one OFFSET_DATA chunk carries a whole read");
assert(NBD_STRING_BYTES_MAX <= 0xffff, "error message lengths fit 16 bits");

// ---------------------------------------------------------------------------
// Errors and the error table.

/**
 * The peer broke the protocol in a way that ends the connection (bad magic,
 * oversized option, unknown export on NBD_OPT_EXPORT_NAME, ...). Only that
 * connection ends; the server goes on.
 */
export class NbdProtocolError extends Error {
  /** Always "NbdProtocolError". */
  override name = "NbdProtocolError";
}

/**
 * The NBD error value for a failed device call: the one table at this boundary.
 *
 * @param error What the device threw.
 * @returns An `NBD_E*` value, never zero.
 * @throws {unknown} `error` itself when it is not a {@link DeviceIoError}: that
 * is a programmer error (an `AssertionError`, a `TypeError`) and must crash the
 * process instead of turning into an error reply.
 *
 * @example
 * ```ts
 * import { DeviceIoError } from "../../errors.ts";
 * import { NBD_EPERM, nbdErrnoOf } from "./protocol.ts";
 * const error = new DeviceIoError("write", { device: "d", offsetBytes: 0, lengthBytes: 512, code: "EROFS" });
 * console.assert(nbdErrnoOf(error) === NBD_EPERM);
 * ```
 */
export function nbdErrnoOf(error: unknown): number {
  if (!(error instanceof DeviceIoError)) throw error;
  return nbdErrnoOfCode(error.code);
}

/**
 * The NBD error value of a device error code: how the data path's neutral
 * errors ({@link DeviceIoError.code}) reach an NBD client, through the same
 * table as {@link nbdErrnoOf}.
 *
 * @example
 * ```ts
 * import { NBD_EPERM, nbdErrnoOfCode } from "./protocol.ts";
 * console.assert(nbdErrnoOfCode("EROFS") === NBD_EPERM);
 * ```
 */
export function nbdErrnoOfCode(code: IoErrorCode): number {
  const errno = NBD_ERRNO_OF_CODE[code];
  assert(errno !== undefined && errno !== 0, "every I/O error code maps to a nonzero NBD error");
  return errno;
}

/** Exhaustive over {@link IoErrorCode}, so a new code cannot be forgotten here. */
const NBD_ERRNO_OF_CODE: Readonly<Record<IoErrorCode, number>> = {
  EIO: NBD_EIO,
  ENODEV: NBD_EIO,
  ENOSPC: NBD_ENOSPC,
  EINVAL: NBD_EINVAL,
  ENOTSUP: NBD_ENOTSUP,
  EROFS: NBD_EPERM,
  EBADF: NBD_EIO,
  ENOENT: NBD_EIO,
  EACCES: NBD_EIO,
  EBUSY: NBD_EIO,
  EOTHER: NBD_EIO,
};

// ---------------------------------------------------------------------------
// Encoders and decoders.

const TEXT_ENCODER = new TextEncoder();
const TEXT_DECODER = new TextDecoder();

/** UTF-8 bytes of a string. */
export function encodeText(text: string): Uint8Array {
  return TEXT_ENCODER.encode(text);
}

/** A string from wire bytes; invalid UTF-8 becomes U+FFFD (for logs and comparisons only). */
export function decodeText(bytes: Uint8Array): string {
  return TEXT_DECODER.decode(bytes);
}

/** A DataView over exactly `bytes`. */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Concatenates byte arrays into one new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const part of parts) total += part.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  assert(at === total, "concatenation filled the buffer");
  return out;
}

export { bytesEqual } from "../../bytes_equal.ts";

/**
 * One option reply: header plus payload.
 *
 * @param option The option being answered.
 * @param replyType `NBD_REP_*`.
 * @param payload Reply data (may be empty).
 * @returns The encoded reply.
 */
export function encodeOptionReply(
  option: number,
  replyType: number,
  payload: Uint8Array,
): Uint8Array {
  assert(payload.length <= 0xffffffff, "option reply length fits 32 bits");
  const out = new Uint8Array(OPTION_REPLY_HEADER_BYTES + payload.length);
  const view = viewOf(out);
  view.setBigUint64(0, NBD_REPLY_MAGIC_OPTION);
  view.setUint32(8, option >>> 0);
  view.setUint32(12, replyType >>> 0);
  view.setUint32(16, payload.length);
  out.set(payload, OPTION_REPLY_HEADER_BYTES);
  return out;
}

/** The 12 bytes shared by NBD_INFO_EXPORT and the NBD_OPT_EXPORT_NAME answer: size then flags. */
export function encodeExportInfo(sizeBytes: number, transmissionFlags: number): Uint8Array {
  assert(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0, "export size is a safe integer");
  const out = new Uint8Array(12);
  const view = viewOf(out);
  view.setUint16(0, NBD_INFO_EXPORT);
  view.setBigUint64(2, BigInt(sizeBytes));
  view.setUint16(10, transmissionFlags);
  return out;
}

/** A decoded request header; `offset` stays 64-bit until it is checked against the export. */
export interface RequestHeader {
  /** Command flags (`NBD_CMD_FLAG_*`). */
  flags: number;
  /** Command (`NBD_CMD_*`). */
  type: number;
  /** The client's opaque cookie (handle), echoed in the reply. */
  cookie: bigint;
  /** Byte offset, unchecked. */
  offset: bigint;
  /** Length in bytes, unchecked. */
  lengthBytes: number;
}

/**
 * Decodes a request header.
 *
 * @param bytes Exactly {@link REQUEST_HEADER_BYTES} bytes.
 * @returns The header fields.
 * @throws {NbdProtocolError} When the magic is wrong: the stream cannot be resynchronised.
 */
export function decodeRequestHeader(bytes: Uint8Array): RequestHeader {
  assert(bytes.length === REQUEST_HEADER_BYTES, "a whole request header");
  return decodeRequestHeaderAt(viewOf(bytes), 0);
}

/**
 * Decodes the request header at byte `at` of a view, for readers that keep
 * one view over their input buffer.
 *
 * @throws {NbdProtocolError} When the magic is wrong.
 */
export function decodeRequestHeaderAt(view: DataView, at: number): RequestHeader {
  assert(at + REQUEST_HEADER_BYTES <= view.byteLength, "a whole request header");
  const magic = view.getUint32(at);
  if (magic !== NBD_REQUEST_MAGIC) {
    throw new NbdProtocolError(
      `Cannot read request: bad magic 0x${magic.toString(16).padStart(8, "0")}`,
    );
  }
  return {
    flags: view.getUint16(at + 4),
    type: view.getUint16(at + 6),
    cookie: view.getBigUint64(at + 8),
    offset: view.getBigUint64(at + 16),
    lengthBytes: view.getUint32(at + 24),
  };
}

/** Writes a simple reply header at the start of `target`. */
export function writeSimpleReply(target: Uint8Array, cookie: bigint, errno: number): void {
  assert(target.length >= SIMPLE_REPLY_BYTES, "room for a simple reply");
  const view = viewOf(target);
  view.setUint32(0, NBD_SIMPLE_REPLY_MAGIC);
  view.setUint32(4, errno);
  view.setBigUint64(8, cookie);
}

/** Field values of a structured reply chunk header. */
export interface ChunkHeader {
  flags: number;
  type: number;
  cookie: bigint;
  lengthBytes: number;
}

/** Writes a structured chunk header at the start of `target`. */
export function writeChunkHeader(target: Uint8Array, header: ChunkHeader): void {
  assert(target.length >= STRUCTURED_HEADER_BYTES, "room for a chunk header");
  assert(header.lengthBytes >= 0 && header.lengthBytes <= 0xffffffff, "chunk length fits 32 bits");
  const view = viewOf(target);
  view.setUint32(0, NBD_STRUCTURED_REPLY_MAGIC);
  view.setUint16(4, header.flags);
  view.setUint16(6, header.type);
  view.setBigUint64(8, header.cookie);
  view.setUint32(16, header.lengthBytes);
}

/** A simple reply without payload. */
export function encodeSimpleReply(cookie: bigint, errno: number): Uint8Array {
  const out = new Uint8Array(SIMPLE_REPLY_BYTES);
  writeSimpleReply(out, cookie, errno);
  return out;
}

/** The final NBD_REPLY_TYPE_NONE chunk: success without payload. */
export function encodeNoneChunk(cookie: bigint): Uint8Array {
  const out = new Uint8Array(STRUCTURED_HEADER_BYTES);
  writeChunkHeader(out, {
    flags: NBD_REPLY_FLAG_DONE,
    type: NBD_REPLY_TYPE_NONE,
    cookie,
    lengthBytes: 0,
  });
  return out;
}

/** A final NBD_REPLY_TYPE_ERROR chunk with a human-readable message (truncated to the string limit). */
export function encodeErrorChunk(cookie: bigint, errno: number, message: string): Uint8Array {
  assert(errno !== 0, "an error chunk carries a nonzero error");
  const text = encodeText(message).subarray(0, NBD_STRING_BYTES_MAX);
  const out = new Uint8Array(STRUCTURED_HEADER_BYTES + 6 + text.length);
  writeChunkHeader(out, {
    flags: NBD_REPLY_FLAG_DONE,
    type: NBD_REPLY_TYPE_ERROR,
    cookie,
    lengthBytes: 6 + text.length,
  });
  const view = viewOf(out);
  view.setUint32(STRUCTURED_HEADER_BYTES, errno);
  view.setUint16(STRUCTURED_HEADER_BYTES + 4, text.length);
  out.set(text, STRUCTURED_HEADER_BYTES + 6);
  return out;
}

/** One block status descriptor. */
export interface Extent {
  lengthBytes: number;
  flags: number;
}

/** A final NBD_REPLY_TYPE_BLOCK_STATUS chunk for one metadata context. */
export function encodeBlockStatusChunk(
  cookie: bigint,
  contextId: number,
  extents: readonly Extent[],
): Uint8Array {
  assert(extents.length > 0, "block status carries at least one extent");
  const payloadBytes = 4 + 8 * extents.length;
  const out = new Uint8Array(STRUCTURED_HEADER_BYTES + payloadBytes);
  writeChunkHeader(out, {
    flags: NBD_REPLY_FLAG_DONE,
    type: NBD_REPLY_TYPE_BLOCK_STATUS,
    cookie,
    lengthBytes: payloadBytes,
  });
  const view = viewOf(out);
  view.setUint32(STRUCTURED_HEADER_BYTES, contextId);
  extents.forEach((extent, index) => {
    assert(
      extent.lengthBytes > 0 && extent.lengthBytes <= 0xffffffff,
      "extent length is a nonzero 32-bit value",
    );
    view.setUint32(STRUCTURED_HEADER_BYTES + 4 + 8 * index, extent.lengthBytes);
    view.setUint32(STRUCTURED_HEADER_BYTES + 8 + 8 * index, extent.flags);
  });
  return out;
}

/** Bytes in front of read data in a successful read reply, so data is read straight into the reply. */
export function readReplyPrefixBytes(structuredReplies: boolean): number {
  // Structured: chunk header plus the 64-bit offset of NBD_REPLY_TYPE_OFFSET_DATA.
  return structuredReplies ? STRUCTURED_HEADER_BYTES + 8 : SIMPLE_REPLY_BYTES;
}

/**
 * Fills the prefix of a successful read reply whose data already sits after it.
 *
 * @param reply `readReplyPrefixBytes(structured)` bytes of prefix, then the data.
 * @param options Cookie, offset of the read and whether structured replies were agreed.
 */
export function writeReadReplyPrefix(
  reply: Uint8Array,
  options: { cookie: bigint; offsetBytes: number; structuredReplies: boolean },
): void {
  const prefixBytes = readReplyPrefixBytes(options.structuredReplies);
  const dataBytes = reply.length - prefixBytes;
  assert(dataBytes >= 0, "read reply holds its prefix");
  if (!options.structuredReplies) {
    writeSimpleReply(reply, options.cookie, 0);
    return;
  }
  assert(dataBytes > 0, "an OFFSET_DATA chunk carries at least one byte");
  writeChunkHeader(reply, {
    // The data was read completely before this header is built, so no error
    // can follow and the data chunk may itself be the final one.
    flags: NBD_REPLY_FLAG_DONE,
    type: NBD_REPLY_TYPE_OFFSET_DATA,
    cookie: options.cookie,
    lengthBytes: 8 + dataBytes,
  });
  viewOf(reply).setBigUint64(STRUCTURED_HEADER_BYTES, BigInt(options.offsetBytes));
}

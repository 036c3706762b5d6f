/**
 * The NBD fixed newstyle handshake, over a {@link ByteStream}.
 *
 * Server side of option haggling for one export:
 * - greeting with NBD_FLAG_FIXED_NEWSTYLE and NBD_FLAG_NO_ZEROES; unknown
 *   client flags end the connection, as the spec requires;
 * - NBD_OPT_EXPORT_NAME, NBD_OPT_GO, NBD_OPT_INFO (NBD_INFO_EXPORT, _NAME,
 *   _DESCRIPTION, _BLOCK_SIZE), NBD_OPT_LIST, NBD_OPT_ABORT,
 *   NBD_OPT_STRUCTURED_REPLY, NBD_OPT_LIST_META_CONTEXT and
 *   NBD_OPT_SET_META_CONTEXT for `base:allocation` (after structured replies);
 * - NBD_OPT_STARTTLS is refused with NBD_REP_ERR_POLICY (we serve without TLS,
 *   on loopback or a Unix socket); NBD_OPT_EXTENDED_HEADERS and every unknown
 *   option get NBD_REP_ERR_UNSUP and negotiation goes on.
 *
 * Everything a client sends is bounded: at most NBD_OPTIONS_MAX options, each
 * at most NBD_OPTION_BYTES_MAX bytes, names and queries at most
 * NBD_STRING_BYTES_MAX bytes. Breaking those bounds, a bad magic, or an
 * unknown name on NBD_OPT_EXPORT_NAME (which cannot report errors) ends the
 * connection with {@link NbdProtocolError}; malformed option data only earns
 * NBD_REP_ERR_INVALID.
 *
 * @module
 */

import { assert } from "../../assert.ts";
import {
  NBD_OPTION_BYTES_MAX,
  NBD_OPTIONS_MAX,
  NBD_REQUEST_BYTES_MAX,
  NBD_STRING_BYTES_MAX,
  SECTOR_BYTES,
} from "../../constants.ts";
import type { ByteStream } from "./byte_stream.ts";
import {
  bytesEqual,
  concatBytes,
  decodeText,
  encodeExportInfo,
  encodeOptionReply,
  encodeText,
  EXPORT_NAME_PADDING_BYTES,
  NBD_BLOCK_BYTES_MIN,
  NBD_CONTEXT_BASE_ALLOCATION,
  NBD_CONTEXT_BASE_NAMESPACE,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_NAME,
  NBD_MAGIC,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_OPTION_MAGIC,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  NbdProtocolError,
  OPTION_HEADER_BYTES,
  viewOf,
} from "./protocol.ts";

/** The one export a server offers. */
export interface NbdExport {
  /** The name clients ask for; the empty name selects it too (the default export). */
  name: string;
  /** Shown by clients (NBD_INFO_DESCRIPTION, NBD_OPT_LIST). @default no description */
  description?: string;
  /** Export size; a multiple of 512. */
  sizeBytes: number;
  /** Advertised preferred block size: a power of two from 512 to NBD_REQUEST_BYTES_MAX. */
  preferredBlockBytes: number;
}

/** What the handshake agreed on, for the transmission phase. */
export interface NbdSession {
  /** The canonical export name (the empty name resolves to it). */
  exportName: string;
  /** Whether NBD_OPT_STRUCTURED_REPLY was acknowledged. */
  structuredReplies: boolean;
  /** Context id of `base:allocation` when NBD_OPT_SET_META_CONTEXT selected it, else undefined. */
  baseAllocationId: number | undefined;
  /** The transmission flags sent to the client. */
  transmissionFlags: number;
}

/** How a handshake ended without an error. */
export type HandshakeResult =
  | { kind: "transmission"; session: NbdSession }
  | { kind: "aborted" };

/** Options for {@link runHandshake}. */
export interface HandshakeOptions {
  /** The export on offer. */
  export: NbdExport;
  /**
   * Awaited before the reply that ends the handshake: transmission starts
   * only once whatever serves it is ready. @default none
   */
  beforeTransmission?: () => Promise<void>;
}

/** The context id we hand out for `base:allocation` (any value works; clients treat it as opaque). */
export const BASE_ALLOCATION_CONTEXT_ID = 1;

const CLIENT_FLAGS_KNOWN = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

/**
 * The transmission flags we advertise: everything implemented, nothing else.
 *
 * NBD_FLAG_CAN_MULTI_CONN holds because every connection shares one `Device`
 * whose flush covers all completed writes. NBD_FLAG_SEND_FAST_ZERO is honest
 * because we always answer fast-zero requests quickly (with NBD_ENOTSUP).
 * NBD_FLAG_SEND_DF only with structured replies, as the spec requires: we
 * always send a read as one chunk, so "don't fragment" costs nothing.
 *
 * @param structuredReplies Whether structured replies were negotiated.
 * @returns The 16-bit flags field.
 */
export function transmissionFlagsOf(structuredReplies: boolean): number {
  return NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
    NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE |
    NBD_FLAG_SEND_FAST_ZERO |
    (structuredReplies ? NBD_FLAG_SEND_DF : 0);
}

/**
 * Whether an export description is servable; the server checks this at start.
 *
 * @param exported The export.
 * @returns A reason it is not, or undefined when it is.
 */
export function exportProblem(exported: NbdExport): string | undefined {
  const { sizeBytes, preferredBlockBytes } = exported;
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || sizeBytes % SECTOR_BYTES !== 0) {
    return `export size ${sizeBytes} is not a multiple of ${SECTOR_BYTES}`;
  }
  const isPowerOfTwo = Number.isSafeInteger(preferredBlockBytes) && preferredBlockBytes > 0 &&
    (preferredBlockBytes & (preferredBlockBytes - 1)) === 0;
  if (
    !isPowerOfTwo || preferredBlockBytes < NBD_BLOCK_BYTES_MIN ||
    preferredBlockBytes > NBD_REQUEST_BYTES_MAX
  ) {
    return `preferred block size ${preferredBlockBytes} is not a power of two from ${NBD_BLOCK_BYTES_MIN} to ${NBD_REQUEST_BYTES_MAX}`;
  }
  if (encodeText(exported.name).length > NBD_STRING_BYTES_MAX) return "export name is too long";
  if (encodeText(exported.description ?? "").length > NBD_STRING_BYTES_MAX) {
    return "export description is too long";
  }
  return undefined;
}

/**
 * Runs the server side of the fixed newstyle handshake.
 *
 * @param stream The connection; the caller closes it.
 * @param options The export on offer.
 * @returns The agreed session, or `aborted` after NBD_OPT_ABORT.
 * @throws {NbdProtocolError} When the client breaks the protocol or the bounds.
 * @throws {StreamEndedError} When the client goes away mid-handshake.
 *
 * @example
 * ```ts ignore
 * import { runHandshake } from "./handshake.ts";
 * const result = await runHandshake(stream, {
 *   export: { name: "disk0", sizeBytes: 1 << 30, preferredBlockBytes: 4096 },
 * });
 * if (result.kind === "transmission") console.log(result.session.structuredReplies);
 * ```
 */
export async function runHandshake(
  stream: ByteStream,
  options: HandshakeOptions,
): Promise<HandshakeResult> {
  const exported = options.export;
  assert(exportProblem(exported) === undefined, "the server checked the export");
  await stream.write(encodeGreeting());
  const clientFlags = viewOf(await stream.readExact(4)).getUint32(0);
  if ((clientFlags & ~CLIENT_FLAGS_KNOWN) !== 0) {
    throw new NbdProtocolError(
      `Cannot negotiate: unknown client flags 0x${clientFlags.toString(16)}`,
    );
  }
  const state: Negotiation = {
    noZeroes: (clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0,
    structuredReplies: false,
    baseAllocationId: undefined,
  };
  for (let optionIndex = 0; optionIndex < NBD_OPTIONS_MAX; optionIndex++) {
    const option = await readOption(stream);
    const outcome = answerOption(option, state, exported);
    if (outcome.end === "abort") {
      // The client may hang up without waiting for this ACK (the spec allows
      // both), so a failed write here is not an error.
      await stream.write(concatBytes(outcome.replies)).catch(() => {});
      return { kind: "aborted" };
    }
    if (outcome.end === "transmission") await options.beforeTransmission?.();
    await stream.write(concatBytes(outcome.replies));
    if (outcome.end === "transmission") {
      return {
        kind: "transmission",
        session: {
          exportName: exported.name,
          structuredReplies: state.structuredReplies,
          baseAllocationId: state.baseAllocationId,
          transmissionFlags: transmissionFlagsOf(state.structuredReplies),
        },
      };
    }
  }
  throw new NbdProtocolError(
    `Cannot negotiate: the client sent more than ${NBD_OPTIONS_MAX} options`,
  );
}

/** Negotiation state that options change. */
interface Negotiation {
  noZeroes: boolean;
  structuredReplies: boolean;
  baseAllocationId: number | undefined;
}

/** One option as received. */
export interface ClientOption {
  code: number;
  data: Uint8Array;
}

/** Replies to send for one option, and whether negotiation ends with it. */
interface OptionOutcome {
  replies: Uint8Array[];
  end?: "transmission" | "abort";
}

function encodeGreeting(): Uint8Array {
  const out = new Uint8Array(18);
  const view = viewOf(out);
  view.setBigUint64(0, NBD_MAGIC);
  view.setBigUint64(8, NBD_OPTION_MAGIC);
  view.setUint16(16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  return out;
}

async function readOption(stream: ByteStream): Promise<ClientOption> {
  const header = viewOf(await stream.readExact(OPTION_HEADER_BYTES));
  const magic = header.getBigUint64(0);
  if (magic !== NBD_OPTION_MAGIC) {
    throw new NbdProtocolError(`Cannot read option: bad magic 0x${magic.toString(16)}`);
  }
  const code = header.getUint32(8);
  const lengthBytes = header.getUint32(12);
  if (lengthBytes > NBD_OPTION_BYTES_MAX) {
    throw new NbdProtocolError(
      `Cannot read option ${code}: length ${lengthBytes} exceeds ${NBD_OPTION_BYTES_MAX} bytes`,
    );
  }
  return { code, data: await stream.readExact(lengthBytes) };
}

/** Answers one option; pure apart from updating `state`. */
function answerOption(
  option: ClientOption,
  state: Negotiation,
  exported: NbdExport,
): OptionOutcome {
  try {
    switch (option.code) {
      case NBD_OPT_EXPORT_NAME:
        return answerExportName(option, state, exported);
      case NBD_OPT_ABORT:
        // Any data is ignored, as the spec asks.
        return {
          replies: [encodeOptionReply(option.code, NBD_REP_ACK, new Uint8Array())],
          end: "abort",
        };
      case NBD_OPT_LIST:
        return answerList(option, exported);
      case NBD_OPT_STARTTLS:
        if (option.data.length !== 0) {
          throw new InvalidOptionError("NBD_OPT_STARTTLS carries no data");
        }
        return refuse(option, NBD_REP_ERR_POLICY, "TLS is not supported by this server");
      case NBD_OPT_INFO:
      case NBD_OPT_GO:
        return answerInfo(option, state, exported);
      case NBD_OPT_STRUCTURED_REPLY:
        if (option.data.length !== 0) {
          throw new InvalidOptionError("NBD_OPT_STRUCTURED_REPLY carries no data");
        }
        state.structuredReplies = true;
        return { replies: [encodeOptionReply(option.code, NBD_REP_ACK, new Uint8Array())] };
      case NBD_OPT_LIST_META_CONTEXT:
      case NBD_OPT_SET_META_CONTEXT:
        return answerMetaContext(option, state, exported);
      default:
        // Includes NBD_OPT_EXTENDED_HEADERS (qemu asks for it): we keep the
        // 32-bit headers, and the client falls back.
        return refuse(option, NBD_REP_ERR_UNSUP, `Option ${option.code} is not supported`);
    }
  } catch (error) {
    if (!(error instanceof InvalidOptionError)) throw error;
    return refuse(option, NBD_REP_ERR_INVALID, error.message);
  }
}

function answerExportName(
  option: ClientOption,
  state: Negotiation,
  exported: NbdExport,
): OptionOutcome {
  // This option cannot answer with an error: a bad name ends the connection.
  if (option.data.length > NBD_STRING_BYTES_MAX) {
    throw new NbdProtocolError(
      `Cannot select export: name of ${option.data.length} bytes is too long`,
    );
  }
  if (!namesExport(option.data, exported)) {
    throw new NbdProtocolError(`Cannot select export "${decodeText(option.data)}": no such export`);
  }
  const info = encodeExportInfo(exported.sizeBytes, transmissionFlagsOf(state.structuredReplies));
  const padding = new Uint8Array(state.noZeroes ? 0 : EXPORT_NAME_PADDING_BYTES);
  // NBD_INFO_EXPORT without its 2-byte type is exactly size then flags.
  return { replies: [info.subarray(2), padding], end: "transmission" };
}

function answerList(option: ClientOption, exported: NbdExport): OptionOutcome {
  if (option.data.length !== 0) throw new InvalidOptionError("NBD_OPT_LIST carries no data");
  const name = encodeText(exported.name);
  const description = encodeText(exported.description ?? "");
  const server = new Uint8Array(4 + name.length + description.length);
  viewOf(server).setUint32(0, name.length);
  server.set(name, 4);
  server.set(description, 4 + name.length);
  return {
    replies: [
      encodeOptionReply(option.code, NBD_REP_SERVER, server),
      encodeOptionReply(option.code, NBD_REP_ACK, new Uint8Array()),
    ],
  };
}

function answerInfo(option: ClientOption, state: Negotiation, exported: NbdExport): OptionOutcome {
  const cursor = new OptionCursor(option.data);
  const name = cursor.string();
  const requestCount = cursor.u16();
  const requests = new Set<number>();
  for (let index = 0; index < requestCount; index++) requests.add(cursor.u16());
  cursor.expectEnd();
  if (!namesExport(name, exported)) {
    return refuse(option, NBD_REP_ERR_UNKNOWN, `Export "${decodeText(name)}" does not exist`);
  }
  const info = (payload: Uint8Array) => encodeOptionReply(option.code, NBD_REP_INFO, payload);
  const replies = [
    info(encodeExportInfo(exported.sizeBytes, transmissionFlagsOf(state.structuredReplies))),
  ];
  if (requests.has(NBD_INFO_NAME)) replies.push(info(typedText(NBD_INFO_NAME, exported.name)));
  if (requests.has(NBD_INFO_DESCRIPTION) && exported.description !== undefined) {
    replies.push(info(typedText(NBD_INFO_DESCRIPTION, exported.description)));
  }
  // Sent even when not asked: we enforce 512-byte alignment, and clients that
  // do not understand it ignore it.
  replies.push(info(encodeBlockSizeInfo(exported.preferredBlockBytes)));
  replies.push(encodeOptionReply(option.code, NBD_REP_ACK, new Uint8Array()));
  return option.code === NBD_OPT_GO ? { replies, end: "transmission" } : { replies };
}

function answerMetaContext(
  option: ClientOption,
  state: Negotiation,
  exported: NbdExport,
): OptionOutcome {
  const selecting = option.code === NBD_OPT_SET_META_CONTEXT;
  // NBD_OPT_SET_META_CONTEXT replaces the selection even when it fails.
  if (selecting) state.baseAllocationId = undefined;
  if (!state.structuredReplies) throw new InvalidOptionError("Negotiate structured replies first");
  const cursor = new OptionCursor(option.data);
  const name = cursor.string();
  const queryCount = cursor.u32();
  const queries: string[] = [];
  // Each query takes at least 4 bytes, so the option length bounds this loop.
  for (let index = 0; index < queryCount; index++) queries.push(decodeText(cursor.string()));
  cursor.expectEnd();
  if (!namesExport(name, exported)) {
    return refuse(option, NBD_REP_ERR_UNKNOWN, `Export "${decodeText(name)}" does not exist`);
  }
  const matches = selecting
    ? queries.includes(NBD_CONTEXT_BASE_ALLOCATION)
    : queries.length === 0 || queries.some((query) =>
      query === NBD_CONTEXT_BASE_ALLOCATION || query === NBD_CONTEXT_BASE_NAMESPACE
    );
  const replies: Uint8Array[] = [];
  if (matches) {
    // Listing reports id 0, as the spec reserves it there.
    const contextId = selecting ? BASE_ALLOCATION_CONTEXT_ID : 0;
    const name = encodeText(NBD_CONTEXT_BASE_ALLOCATION);
    const payload = new Uint8Array(4 + name.length);
    viewOf(payload).setUint32(0, contextId);
    payload.set(name, 4);
    replies.push(encodeOptionReply(option.code, NBD_REP_META_CONTEXT, payload));
    if (selecting) state.baseAllocationId = BASE_ALLOCATION_CONTEXT_ID;
  }
  replies.push(encodeOptionReply(option.code, NBD_REP_ACK, new Uint8Array()));
  return { replies };
}

/** An error reply with a human-readable message. */
function refuse(option: ClientOption, replyType: number, message: string): OptionOutcome {
  return { replies: [encodeOptionReply(option.code, replyType, encodeText(message))] };
}

/** Whether a requested name selects our export: its own name, or the empty default name. */
function namesExport(name: Uint8Array, exported: NbdExport): boolean {
  return name.length === 0 || bytesEqual(name, encodeText(exported.name));
}

function typedText(infoType: number, text: string): Uint8Array {
  const bytes = encodeText(text);
  const out = new Uint8Array(2 + bytes.length);
  viewOf(out).setUint16(0, infoType);
  out.set(bytes, 2);
  return out;
}

function encodeBlockSizeInfo(preferredBlockBytes: number): Uint8Array {
  const out = new Uint8Array(14);
  const view = viewOf(out);
  view.setUint16(0, NBD_INFO_BLOCK_SIZE);
  view.setUint32(2, NBD_BLOCK_BYTES_MIN);
  view.setUint32(6, preferredBlockBytes);
  view.setUint32(10, NBD_REQUEST_BYTES_MAX);
  return out;
}

/** Option data is malformed: answered with NBD_REP_ERR_INVALID, the connection goes on. */
class InvalidOptionError extends Error {
  override name = "InvalidOptionError";
}

/** Reads fields of option data, rejecting anything that overruns it. */
class OptionCursor {
  #data: Uint8Array;
  #at = 0;
  constructor(data: Uint8Array) {
    this.#data = data;
  }

  u16(): number {
    this.#need(2);
    const value = viewOf(this.#data).getUint16(this.#at);
    this.#at += 2;
    return value;
  }

  u32(): number {
    this.#need(4);
    const value = viewOf(this.#data).getUint32(this.#at);
    this.#at += 4;
    return value;
  }

  /** A 32-bit length, then that many bytes of string. */
  string(): Uint8Array {
    const lengthBytes = this.u32();
    if (lengthBytes > NBD_STRING_BYTES_MAX) {
      throw new InvalidOptionError(
        `String of ${lengthBytes} bytes exceeds ${NBD_STRING_BYTES_MAX}`,
      );
    }
    this.#need(lengthBytes);
    const value = this.#data.subarray(this.#at, this.#at + lengthBytes);
    this.#at += lengthBytes;
    return value;
  }

  expectEnd(): void {
    if (this.#at !== this.#data.length) {
      throw new InvalidOptionError(
        `Option data has ${this.#data.length - this.#at} trailing bytes`,
      );
    }
  }

  #need(lengthBytes: number): void {
    if (this.#at + lengthBytes > this.#data.length) {
      throw new InvalidOptionError(`Option data of ${this.#data.length} bytes is too short`);
    }
  }
}

/**
 * The NBD transmission phase: the request loop of one connection.
 *
 * Requests are pipelined. One reader takes requests off the stream
 * continuously and starts each at once; they run concurrently against the
 * device and complete in any order. At most NBD_INFLIGHT_MAX requests and
 * {@link NBD_INFLIGHT_BYTES_MAX} bytes of payload are in flight per connection;
 * beyond that the reader stops reading, which back-pressures the client through
 * the socket. A request stays in flight until its reply is written, so the
 * reply queue is bounded by the same limits.
 *
 * Every request is checked at this edge before the device sees it
 * ({@link validateRequest}); a bad request gets an error reply and the
 * connection goes on. A bad magic cannot be resynchronised and ends the
 * connection with {@link NbdProtocolError}. Device failures become NBD errors
 * through the one table in {@link nbdErrnoOf}; anything that is not a
 * `DeviceIoError` is a programmer error: the loop stops and rethrows it so the
 * process dies.
 *
 * Commands: READ, WRITE (FUA), DISC (after the requests in flight), FLUSH,
 * TRIM (FUA), CACHE (validated, then a no-op: there is no cache here to warm),
 * WRITE_ZEROES (FUA; NO_HOLE forbids punching; FAST_ZERO fails at once with
 * NBD_ENOTSUP because a `Device` cannot promise that zeroing beats writing),
 * BLOCK_STATUS for `base:allocation` (the whole range as one data extent: we do
 * not track holes, and status 0 is always honest).
 *
 * @module
 */

import { assert } from "../../assert.ts";
import { NBD_INFLIGHT_MAX, NBD_REQUEST_BYTES_MAX, SECTOR_BYTES } from "../../constants.ts";
import type { Device } from "../../device/device.ts";
import type { ByteStream } from "./byte_stream.ts";
import { StreamEndedError } from "./byte_stream.ts";
import type { NbdSession } from "./handshake.ts";
import {
  decodeRequestHeader,
  encodeBlockStatusChunk,
  NBD_CMD,
  NBD_CMD_FLAG,
  NBD_EINVAL,
  NBD_ENOSPC,
  readReplyPrefixBytes,
  REQUEST_HEADER_BYTES,
  type RequestHeader,
  writeReadReplyPrefix,
} from "./protocol.ts";
import { ReplyQueue } from "./reply_queue.ts";
import {
  dataRequestOf,
  encodeErrorReply,
  encodeOkReply,
  type NbdProblem,
  problemOf,
} from "./commands.ts";
import { DataExecutor } from "../../datapath/data_executor.ts";
import { NBD_INFLIGHT_BYTES_MAX, SKIP_CHUNK_BYTES } from "../../constants.ts";
import { ShapedBufferPools } from "../../aligned_bytes.ts";
export { NBD_INFLIGHT_BYTES_MAX, SKIP_CHUNK_BYTES };

assert(
  NBD_INFLIGHT_BYTES_MAX >= NBD_REQUEST_BYTES_MAX,
  "the largest request fits in flight on its own",
);
assert(NBD_INFLIGHT_MAX >= 1, "at least one request in flight");

/** Options for {@link serveTransmission}. */
export interface TransmissionOptions {
  /** The device every request goes to; shared by all connections. */
  device: Device;
  /** What the handshake agreed on. */
  session: NbdSession;
  /** Aborting it stops reading requests; those in flight finish and are answered. @default never */
  stopSignal?: AbortSignal;
  /** Called after each reply is written, for the status counters. @default none */
  onReply?: () => void;
}

/** How a transmission phase ended without an error. */
export type TransmissionEnd =
  /** The client sent NBD_CMD_DISC. */
  | "disconnect"
  /** The client closed the stream between requests. */
  | "eof"
  /** The stop signal fired (server shutdown). */
  | "stopped";

/** Why a request is refused before it reaches the device: the `NBD_E*` value and why. */
export type RequestProblem = NbdProblem;

/** What request validation needs to know. */
export interface RequestContext {
  /** Export size in bytes. */
  sizeBytes: number;
  /** What the handshake agreed on (structured replies, metadata context). */
  session: NbdSession;
}

/**
 * Serves requests until the client disconnects or the stop signal fires.
 * In every case the requests in flight finish first and their replies are sent.
 *
 * @param stream The connection after the handshake; the caller closes it.
 * @param options Device, session and stop signal.
 * @returns How the phase ended.
 * @throws {NbdProtocolError} On a bad request magic.
 * @throws {StreamEndedError} When the stream ends inside a request.
 * @throws {unknown} A write error of the stream (the client went away), or a
 * programmer error from the device (e.g. `AssertionError`), which must crash the process.
 *
 * @example
 * ```ts ignore
 * import { runHandshake } from "./handshake.ts";
 * import { serveTransmission } from "./transmission.ts";
 * const result = await runHandshake(stream, { export: exported });
 * if (result.kind === "transmission") {
 *   const end = await serveTransmission(stream, { device, session: result.session });
 *   console.log(`connection ended: ${end}`);
 * }
 * ```
 */
export function serveTransmission(
  stream: ByteStream,
  options: TransmissionOptions,
): Promise<TransmissionEnd> {
  return new TransmissionLoop(stream, options).run();
}

/**
 * Checks a request against the protocol and the export, like nbdkit's `validate_request`.
 *
 * @param header The decoded request header (not NBD_CMD_DISC).
 * @param context Export size and session.
 * @returns The error to answer with, or undefined when the request may go to the device.
 */
export function validateRequest(
  header: RequestHeader,
  context: RequestContext,
): RequestProblem | undefined {
  const { type, flags, offset, lengthBytes } = header;
  const allowed = allowedFlagsOf(type, context.session);
  if (allowed === undefined) return { errno: NBD_EINVAL, message: `Unknown command ${type}` };
  if ((flags & ~allowed) !== 0) {
    return {
      errno: NBD_EINVAL,
      message: `Flags 0x${flags.toString(16)} are not valid for command ${type}`,
    };
  }
  if (type === NBD_CMD.FLUSH) {
    if (offset !== 0n || lengthBytes !== 0) {
      return { errno: NBD_EINVAL, message: "Flush takes no range" };
    }
    return undefined;
  }
  if ((type === NBD_CMD.READ || type === NBD_CMD.WRITE) && lengthBytes > NBD_REQUEST_BYTES_MAX) {
    return {
      errno: NBD_EINVAL,
      message: `Length ${lengthBytes} exceeds ${NBD_REQUEST_BYTES_MAX} bytes`,
    };
  }
  if (offset % BigInt(SECTOR_BYTES) !== 0n || lengthBytes % SECTOR_BYTES !== 0) {
    return {
      errno: NBD_EINVAL,
      message: `Offset ${offset} and length ${lengthBytes} are not ${SECTOR_BYTES}-aligned`,
    };
  }
  if (offset + BigInt(lengthBytes) > BigInt(context.sizeBytes)) {
    // The spec asks for ENOSPC on writes past the end, EINVAL for the rest.
    const writes = type === NBD_CMD.WRITE || type === NBD_CMD.WRITE_ZEROES;
    return {
      errno: writes ? NBD_ENOSPC : NBD_EINVAL,
      message:
        `Offset ${offset} and length ${lengthBytes} go past the end (${context.sizeBytes} bytes)`,
    };
  }
  if (type === NBD_CMD.BLOCK_STATUS) {
    if (context.session.baseAllocationId === undefined) {
      return { errno: NBD_EINVAL, message: "No metadata context was selected" };
    }
    if (lengthBytes === 0) return { errno: NBD_EINVAL, message: "Block status of an empty range" };
  }
  return undefined;
}

/** Flags valid per command; undefined for unknown commands. FUA is valid on every command. */
function allowedFlagsOf(type: number, session: NbdSession): number | undefined {
  switch (type) {
    case NBD_CMD.READ:
      return NBD_CMD_FLAG.FUA | (session.structuredReplies ? NBD_CMD_FLAG.DF : 0);
    case NBD_CMD.WRITE:
    case NBD_CMD.DISC:
    case NBD_CMD.FLUSH:
    case NBD_CMD.TRIM:
    case NBD_CMD.CACHE:
      return NBD_CMD_FLAG.FUA;
    case NBD_CMD.WRITE_ZEROES:
      return NBD_CMD_FLAG.FUA | NBD_CMD_FLAG.NO_HOLE | NBD_CMD_FLAG.FAST_ZERO;
    case NBD_CMD.BLOCK_STATUS:
      return NBD_CMD_FLAG.FUA | NBD_CMD_FLAG.REQ_ONE;
    default:
      return undefined;
  }
}

/** Thrown inside the loop when it must stop reading (stop signal, fatal error, dead stream). */
class HaltedError extends Error {
  override name = "HaltedError";
}

class TransmissionLoop {
  #stream: ByteStream;
  #session: NbdSession;
  #stopSignal: AbortSignal | undefined;
  #onReply: (() => void) | undefined;
  #replies: ReplyQueue;
  #halt = new AbortController();
  #fatal: { error: unknown } | undefined;
  #inflight = new Set<Promise<void>>();
  #inflightBytes = 0;
  #replyBuffers = new ShapedBufferPools();
  #executor: RequestExecutor;
  #wakeReader: (() => void) | undefined;

  constructor(stream: ByteStream, options: TransmissionOptions) {
    this.#stream = stream;
    this.#session = options.session;
    this.#stopSignal = options.stopSignal;
    this.#onReply = options.onReply;
    this.#replies = new ReplyQueue(stream);
    this.#executor = new RequestExecutor(options.device, options.session, this.#replyBuffers);
    this.#halt.signal.addEventListener("abort", () => this.#wake(), { once: true });
  }

  async run(): Promise<TransmissionEnd> {
    const stop = () => this.#halt.abort();
    if (this.#stopSignal?.aborted) stop();
    this.#stopSignal?.addEventListener("abort", stop, { once: true });
    let end: TransmissionEnd = "stopped";
    let readFailure: { error: unknown } | undefined;
    try {
      end = await this.#readRequests();
    } catch (error) {
      if (!(error instanceof HaltedError)) readFailure = { error };
    } finally {
      this.#stopSignal?.removeEventListener("abort", stop);
    }
    // Whatever ended reading, requests already started finish and are answered.
    await this.#drain();
    if (this.#fatal) throw this.#fatal.error;
    if (this.#replies.failed) throw this.#replies.failure;
    if (readFailure) throw readFailure.error;
    return end;
  }

  async #readRequests(): Promise<TransmissionEnd> {
    while (true) {
      await this.#waitUntil(() => this.#inflight.size < NBD_INFLIGHT_MAX);
      let headerBytes: Uint8Array;
      try {
        headerBytes = await this.#read(REQUEST_HEADER_BYTES);
      } catch (error) {
        if (error instanceof StreamEndedError && error.receivedBytes === 0) return "eof";
        throw error;
      }
      const header = decodeRequestHeader(headerBytes);
      if (header.type === NBD_CMD.DISC) return "disconnect";
      const costBytes = payloadBytesOf(header);
      await this.#waitUntil(() =>
        this.#inflightBytes === 0 || this.#inflightBytes + costBytes <= NBD_INFLIGHT_BYTES_MAX
      );
      const payload = header.type === NBD_CMD.WRITE
        ? await this.#readPayload(header.lengthBytes)
        : undefined;
      this.#start(header, payload, costBytes);
    }
  }

  /** Reads a write payload; an oversized one is skipped (the request will be refused) to stay in sync. */
  async #readPayload(lengthBytes: number): Promise<Uint8Array | undefined> {
    if (lengthBytes <= NBD_REQUEST_BYTES_MAX) {
      return await this.#read(lengthBytes, { aligned: true });
    }
    for (let skipped = 0; skipped < lengthBytes; skipped += SKIP_CHUNK_BYTES) {
      await this.#read(Math.min(SKIP_CHUNK_BYTES, lengthBytes - skipped));
    }
    return undefined;
  }

  #start(header: RequestHeader, payload: Uint8Array | undefined, costBytes: number): void {
    this.#inflightBytes += costBytes;
    const task = this.#serve(header, payload);
    this.#inflight.add(task);
    void task.then(() => {
      this.#inflight.delete(task);
      this.#inflightBytes -= costBytes;
      assert(this.#inflightBytes >= 0, "in-flight bytes never go negative");
      this.#wake();
    });
  }

  /** Runs one request and writes its reply; never rejects (failures stop the loop instead). */
  async #serve(header: RequestHeader, payload: Uint8Array | undefined): Promise<void> {
    try {
      const reply = await this.#executor.execute(header, payload);
      const written = await this.#replies.send(reply);
      // Written means copied to the socket: the buffer is free for the next read.
      this.#replyBuffers.give(reply, readReplyPrefixBytes(this.#session.structuredReplies));
      if (written) this.#onReply?.();
      else this.#halt.abort();
    } catch (error) {
      // Not a device I/O error: a broken invariant. Stop, and let run() rethrow it.
      this.#fatal ??= { error };
      this.#halt.abort();
    }
  }

  /** Reads from the stream unless the loop is halted; a halt abandons the read. */
  #read(lengthBytes: number, options: { aligned?: boolean } = {}): Promise<Uint8Array> {
    const signal = this.#halt.signal;
    if (signal.aborted) return Promise.reject(new HaltedError());
    return new Promise((resolve, reject) => {
      const onHalt = () => reject(new HaltedError());
      signal.addEventListener("abort", onHalt, { once: true });
      this.#stream.readExact(lengthBytes, options).then(
        (bytes) => {
          signal.removeEventListener("abort", onHalt);
          resolve(bytes);
        },
        (error) => {
          signal.removeEventListener("abort", onHalt);
          reject(error);
        },
      );
    });
  }

  async #waitUntil(ready: () => boolean): Promise<void> {
    while (!ready()) {
      if (this.#halt.signal.aborted) throw new HaltedError();
      await new Promise<void>((resolve) => this.#wakeReader = resolve);
    }
    if (this.#halt.signal.aborted) throw new HaltedError();
  }

  #wake(): void {
    const wake = this.#wakeReader;
    this.#wakeReader = undefined;
    wake?.();
  }

  async #drain(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.all(this.#inflight);
    assert(this.#inflightBytes === 0, "nothing in flight after draining");
  }
}

/**
 * Validates one request, carries it out against a device and encodes its
 * reply: the part of an event-loop connection that neither reads nor writes
 * the socket. What each command does is the data path's
 * {@link DataExecutor}, the same code that answers the requests connection
 * workers forward; only validation and framing are NBD's.
 */
export class RequestExecutor {
  #executor: DataExecutor;
  #session: NbdSession;
  #sizeBytes: number;
  #replyBuffers: ShapedBufferPools;

  /**
   * @param device Where requests go.
   * @param session What the handshake agreed on (reply style, metadata context).
   * @param replyBuffers Where read replies get their buffers.
   */
  constructor(device: Device, session: NbdSession, replyBuffers: ShapedBufferPools) {
    this.#executor = new DataExecutor(device, replyBuffers);
    this.#session = session;
    this.#sizeBytes = device.sizeBytes;
    this.#replyBuffers = replyBuffers;
  }

  /**
   * The reply to one request: validated here, then run; device I/O errors
   * become NBD error replies.
   *
   * @throws {unknown} Anything that is not a `DeviceIoError` (a programmer error).
   */
  async execute(header: RequestHeader, payload: Uint8Array | undefined): Promise<Uint8Array> {
    const structuredReplies = this.#session.structuredReplies;
    const problem = validateRequest(header, { sizeBytes: this.#sizeBytes, session: this.#session });
    if (problem) return encodeErrorReply(header.cookie, { problem, structuredReplies });
    if (header.type === NBD_CMD.BLOCK_STATUS) return blockStatusReply(header, this.#session);
    // Read straight into the reply buffer behind room for its header: no copy,
    // and the data starts on an O_DIRECT boundary, so the disk needs no bounce copy.
    const prefixBytes = readReplyPrefixBytes(structuredReplies);
    const reply = header.type === NBD_CMD.READ && header.lengthBytes > 0
      ? this.#replyBuffers.take(prefixBytes, header.lengthBytes)
      : undefined;
    const request = dataRequestOf(header, reply ? reply.subarray(prefixBytes) : payload);
    const result = await this.#executor.execute(request);
    if (result.error) {
      if (reply) this.#replyBuffers.give(reply, prefixBytes);
      return encodeErrorReply(header.cookie, {
        problem: problemOf(result.error),
        structuredReplies,
      });
    }
    if (reply === undefined) return encodeOkReply(header.cookie, structuredReplies);
    writeReadReplyPrefix(reply, {
      cookie: header.cookie,
      offsetBytes: request.offsetBytes,
      structuredReplies,
    });
    return reply;
  }
}

/**
 * BLOCK_STATUS for `base:allocation`: one extent, flags 0 (allocated data).
 * Never wrong, since we do not track holes; REQ_ONE is honoured too, as this
 * is exactly one extent. No device is asked, so a connection worker answers
 * it itself.
 *
 * @param header A validated BLOCK_STATUS request.
 * @param session The session, with the metadata context the client selected.
 */
export function blockStatusReply(header: RequestHeader, session: NbdSession): Uint8Array {
  assert(session.baseAllocationId !== undefined, "block status was validated");
  return encodeBlockStatusChunk(header.cookie, session.baseAllocationId, [
    { lengthBytes: header.lengthBytes, flags: 0 },
  ]);
}

/** Payload memory a request holds while in flight. */
function payloadBytesOf(header: RequestHeader): number {
  const carriesPayload = header.type === NBD_CMD.READ || header.type === NBD_CMD.WRITE;
  // Oversized requests are refused without a buffer (writes are skipped piecewise).
  return carriesPayload && header.lengthBytes <= NBD_REQUEST_BYTES_MAX ? header.lengthBytes : 0;
}

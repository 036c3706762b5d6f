/**
 * One NBD connection served on a worker thread, from the end of its
 * handshake (done on the engine's thread, see `negotiator.ts`): a
 * transmission loop that frames NBD over its own socket and hands every
 * request to the transport-neutral data path (`datapath/data_path.ts`),
 * which does the disk I/O or forwards the request to the engine's thread.
 *
 * Why a thread per connection: on the event loop every request paid for
 * promises, a runtime op per socket read and write and a thread hop or a
 * synchronous copy per disk request, all on one thread. Here the worker
 * blocks in poll() (or in recv() when nothing else can happen), reads every
 * request the socket holds, submits all their disk I/O with one io_submit,
 * and sends the replies together with one send. A large write's payload is
 * written in parts while the rest arrives, as nbdkit's threads overlap one
 * request's receive with another's write.
 *
 * What is NBD's here: request headers and their validation, payload
 * receive, BLOCK_STATUS (answered here: one allocated extent, no device
 * involved), reply framing (simple or structured, per session) and
 * batching, the in-flight limits, and the poll loop with its liveness
 * invariant ({@link NbdTransmission}'s `#assertMaySleep`). Results come back
 * from the data path in neutral form; their errors become NBD errors through
 * `nbdErrnoOf`'s table (`commands.ts`).
 *
 * @module
 */

import { assert } from "../../assert.ts";
import {
  CONN_READ_BUFFER_BYTES,
  DIRECT_ALIGN_BYTES,
  NBD_INFLIGHT_BYTES_MAX,
  NBD_INFLIGHT_MAX,
  NBD_REQUEST_BYTES_MAX,
} from "../../constants.ts";
import { ShapedBufferPools } from "../../aligned_bytes.ts";
import { ERRNO } from "../../sys/libc.ts";
import { DataPath, type MessageQueue, type PathRequest } from "../../datapath/data_path.ts";
import type { DataError } from "../../datapath/data_request.ts";
import { COUNTERS, type FromWorker, MAILBOX, type WorkerSetup } from "../../datapath/messages.ts";
import { runConnectionWorker } from "../../datapath/worker_main.ts";
import { isConnectionFailure } from "./connection.ts";
import type { NbdSession } from "./handshake.ts";
import type { NegotiatedConnection } from "./negotiator.ts";
import { blockStatusReply, validateRequest } from "./transmission.ts";
import { dataFlagsOf, dataOpOf, encodeErrorReply, encodeOkReply, problemOf } from "./commands.ts";
import {
  decodeRequestHeaderAt,
  NBD_CMD,
  NbdProtocolError,
  readReplyPrefixBytes,
  REQUEST_HEADER_BYTES,
  type RequestHeader,
  writeReadReplyPrefix,
} from "./protocol.ts";
import {
  drainEventFd,
  growSendBuffer,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  pollDescriptors,
  POLLIN,
  POLLOUT,
  receive,
  sendBytes,
  SHUT_RDWR,
  shutdownSocket,
} from "../../sys/syscalls.ts";

/** Starts a worker that serves one NBD connection: what an NBD worker module calls. */
export function runNbdConnectionWorker(): void {
  runConnectionWorker(serveWorkerConnection);
}

/**
 * Replies up to this size are copied together into one send buffer: a copy
 * of a few KiB costs less than asking the runtime for each buffer's address
 * for a sendmsg iovec. Larger ones are sent from their own buffer.
 */
const SEND_COPY_BYTES_MAX = 64 * 1024;
const SEND_BUFFER_BYTES = 256 * 1024;
/**
 * The connection's socket send buffer (Linux doubles it). With the default
 * 208 KiB, sending a 1 MiB reply waited for the client to drain the socket
 * five times, and the worker read the next request's data only after that;
 * with room for whole replies it reads the next while the client drains the
 * last (1 MiB QD8 reads: about 3800 to 5000 MiB/s in a development run,
 * docs/protocol.md). Only performance depends on getting it.
 */
const SOCKET_SEND_BUFFER_BYTES = 4 * 1024 * 1024;
/**
 * How long an idle worker keeps polling its socket before it sleeps in recv.
 * At queue depth 1 the next request comes back within tens of microseconds;
 * sleeping costs a context switch here and a cross-CPU wakeup on both sides,
 * which the profile showed as half of the worker's time (docs/protocol.md
 * has the numbers and where they come from). The poll stops as soon as one wait was longer than this
 * and resumes when requests arrive close together again.
 */
const IDLE_POLL_MICROS = 100;
/**
 * A write whose payload is still arriving has its arrived part written once
 * this much is there. Receiving a payload and writing it then overlap with the
 * client sending the rest, as nbdkit's threads overlap one request's receive
 * with another's write; receiving all of it first left the worker waiting on
 * the client for a third of the time in 1 MiB writes (docs/protocol.md).
 */
const STREAM_PART_BYTES_MIN = 128 * 1024;

/**
 * Readies an accepted socket for a worker (its send buffer). Called before
 * the handshake's last reply: once the client has it, the connection is as
 * it will stay.
 */
export function prepareWorkerSocket(fd: number): void {
  growSendBuffer(fd, SOCKET_SEND_BUFFER_BYTES);
}

/**
 * Serves the connection in `setup`, past its handshake, until it ends; posts
 * "ended" at the end. The caller closes nothing: the socket belongs to the
 * engine's thread, which closes it after "ended".
 */
export async function serveWorkerConnection(
  setup: WorkerSetup,
  messages: MessageQueue,
  post: (message: FromWorker) => void,
): Promise<void> {
  const negotiated = setup.transport as NegotiatedConnection;
  let loop: NbdTransmission;
  try {
    loop = new NbdTransmission(setup, negotiated.session, negotiated.received, messages, post);
  } catch (error) {
    // No eventfd or AIO context (fs.aio-max-nr reached): this connection ends, the server goes on.
    shutdownSocket(setup.connectionFd, SHUT_RDWR);
    const { name, message } = error as Error;
    return post({ type: "ended", end: "failed", error: { name, message } });
  }
  let ended: FromWorker;
  try {
    ended = { type: "ended", end: await loop.run() };
  } catch (error) {
    ended = endedWith(error);
  }
  // The client learns at once that the connection is over (the engine's
  // thread closes the socket): io_destroy in close() waits for an RCU grace
  // period, tens of milliseconds that no client should wait for.
  shutdownSocket(setup.connectionFd, SHUT_RDWR);
  loop.close();
  post(ended);
}

/** The end of a connection that failed; anything but a client or socket failure is a bug and rethrown. */
function endedWith(error: unknown): FromWorker {
  if (!isConnectionFailure(error)) throw error;
  return { type: "ended", end: "failed", error: { name: error.name, message: error.message } };
}

function connectionError(what: string, errno: number): Error {
  return new Deno.errors.ConnectionReset(`Cannot ${what} on the connection: errno ${errno}`);
}

/** A request from the time it is read until its reply is queued. */
interface Request extends PathRequest {
  header: RequestHeader;
  /** Read reply: prefix, then the data the disk reads into (`data`). */
  reply: Uint8Array | undefined;
  costBytes: number;
  /** Payload bytes of a write received so far. */
  receivedBytes: number;
}

/** One queued reply. */
interface Outgoing {
  bytes: Uint8Array;
  /** Whether the buffer goes back to the reply pool once sent. */
  pooled: boolean;
}

/** The transmission phase of one connection on its worker (see the module doc). */
class NbdTransmission {
  readonly #setup: WorkerSetup;
  readonly #fd: number;
  readonly #session: NbdSession;
  readonly #path: DataPath<Request>;
  readonly #replyBuffers = new ShapedBufferPools();
  readonly #payloads = new ShapedBufferPools();
  readonly #prefixBytes: number;
  readonly #in = new Uint8Array(CONN_READ_BUFFER_BYTES);
  readonly #inView = new DataView(this.#in.buffer);
  #inStart = 0;
  #inEnd = 0;
  #reading = true;
  /**
   * The client shut its side of the socket: nothing more arrives, but the
   * complete requests it sent before are still served (the in-flight limits
   * may have parked some in the input buffer).
   */
  #inputEnded = false;
  #end: "disconnect" | "eof" | "stopped" = "eof";
  #failure: Error | undefined;
  /** Requests read and not yet answered. */
  #inflight = 0;
  #inflightBytes = 0;
  /** The write whose payload is arriving: socket bytes go straight into its payload. */
  #incoming: Request | undefined;
  /** Whether the incoming write starts parts before all of it arrived. */
  #incomingStreams = false;
  /** Parts of a streamed write start and end on this: a block and an O_DIRECT boundary. */
  readonly #streamAlignBytes: number;
  #out: Outgoing[] = [];
  #outSent = 0;
  readonly #sendBuffer = new Uint8Array(SEND_BUFFER_BYTES);
  /** Whether the last request was a write larger than SEND_COPY_BYTES_MAX. */
  #largeWrites = false;
  /** Whether polling before sleeping found the next request last time (see IDLE_POLL_MICROS). */
  #idlePollPays = true;
  readonly #pollFds = new Uint8Array(3 * 8);
  readonly #pollView = new DataView(this.#pollFds.buffer);

  constructor(
    setup: WorkerSetup,
    session: NbdSession,
    leftover: Uint8Array,
    messages: MessageQueue,
    post: (message: FromWorker) => void,
  ) {
    this.#setup = setup;
    this.#fd = setup.connectionFd;
    this.#session = session;
    this.#prefixBytes = readReplyPrefixBytes(session.structuredReplies);
    this.#streamAlignBytes = Math.max(setup.blockBytes, DIRECT_ALIGN_BYTES);
    this.#in.set(leftover);
    this.#inEnd = leftover.length;
    this.#path = new DataPath<Request>({ setup, messages, post, onDone: this.#done });
  }

  async run(): Promise<"disconnect" | "eof" | "stopped"> {
    for (;;) {
      await this.#path.beginTurn();
      if (this.#reading) this.#parseRequests();
      this.#path.endTurn();
      this.#send();
      if (this.#failure && this.#path.diskInflight === 0) throw this.#failure;
      if (!this.#reading && this.#inflight === 0 && this.#out.length === 0) return this.#end;
      this.#wait();
    }
  }

  close(): void {
    this.#path.close();
  }

  // ------------------------------------------------------------ reading

  #parseRequests(): void {
    if (this.#incoming && !this.#continueIncoming(this.#incoming)) return this.#endInputIfDrained();
    while (this.#nextRequestAdmitted()) {
      const type = this.#inView.getUint16(this.#inStart + 6);
      const lengthBytes = this.#inView.getUint32(this.#inStart + 24);
      const carriesPayload = type === NBD_CMD.WRITE && lengthBytes <= NBD_REQUEST_BYTES_MAX;
      const costBytes = this.#costOfBufferedRequest();
      let header: RequestHeader;
      try {
        header = decodeRequestHeaderAt(this.#inView, this.#inStart);
      } catch (error) {
        // A bad magic cannot be resynchronised: answer what is in flight, then end.
        if (!(error instanceof NbdProtocolError)) throw error;
        this.#failure ??= error;
        this.#stopReading("eof");
        break;
      }
      this.#inStart += REQUEST_HEADER_BYTES;
      if (header.type === NBD_CMD.DISC) {
        this.#stopReading("disconnect");
        break;
      }
      this.#largeWrites = header.type === NBD_CMD.WRITE && lengthBytes > SEND_COPY_BYTES_MAX;
      const request: Request = {
        // Commands without a neutral form never reach the data path: they are
        // refused or answered here (#route).
        op: dataOpOf(header.type) ?? "cache",
        offsetBytes: Number(header.offset),
        lengthBytes,
        flags: dataFlagsOf(header.flags),
        data: undefined,
        arriving: false,
        piecesLeft: 0,
        toEngine: false,
        gateEntries: 0,
        startedBytes: 0,
        header,
        reply: undefined,
        costBytes,
        receivedBytes: 0,
      };
      this.#inflight++;
      this.#inflightBytes += costBytes;
      this.#setup.counters[COUNTERS.REQUESTS_RECEIVED]!++;
      if (carriesPayload && !this.#takePayload(request)) {
        this.#incoming = request;
        request.arriving = true;
        this.#incomingStreams = lengthBytes > STREAM_PART_BYTES_MIN &&
          Number(header.offset) % this.#streamAlignBytes === 0 &&
          this.#problemWith(header) === undefined;
        break;
      }
      if (header.type === NBD_CMD.WRITE && !carriesPayload) this.#skipPayload(lengthBytes);
      this.#route(request);
    }
    if (this.#inStart === this.#inEnd) this.#inStart = this.#inEnd = 0;
    this.#endInputIfDrained();
  }

  /**
   * Whether the input buffer holds the header of a request that the in-flight
   * limits let start now. The limits park requests in the buffer; whenever
   * this turns true again, the next turn must parse them, since the client
   * may have sent everything and be waiting for replies (see #wait).
   */
  #nextRequestAdmitted(): boolean {
    if (!this.#reading || this.#incoming !== undefined) return false;
    if (this.#inflight >= NBD_INFLIGHT_MAX) return false;
    if (this.#inEnd - this.#inStart < REQUEST_HEADER_BYTES) return false;
    const costBytes = this.#costOfBufferedRequest();
    return this.#inflightBytes === 0 || this.#inflightBytes + costBytes <= NBD_INFLIGHT_BYTES_MAX;
  }

  /** Payload bytes the buffered header at the input's start would hold in flight. */
  #costOfBufferedRequest(): number {
    const type = this.#inView.getUint16(this.#inStart + 6);
    const lengthBytes = this.#inView.getUint32(this.#inStart + 24);
    const dataCommand = type === NBD_CMD.WRITE || type === NBD_CMD.READ;
    return dataCommand && lengthBytes <= NBD_REQUEST_BYTES_MAX ? lengthBytes : 0;
  }

  /**
   * Gives a write its payload buffer and copies in what the input buffer
   * holds of it; true when that was all of it. The rest is received straight
   * into the payload as it arrives (see continueIncoming).
   */
  #takePayload(request: Request): boolean {
    const lengthBytes = request.header.lengthBytes;
    const payload = this.#payloads.take(0, lengthBytes);
    const buffered = Math.min(lengthBytes, this.#inEnd - this.#inStart);
    payload.set(this.#in.subarray(this.#inStart, this.#inStart + buffered));
    this.#inStart += buffered;
    request.data = payload;
    request.receivedBytes = buffered;
    return buffered === lengthBytes;
  }

  /** Skips an oversized payload (the request is refused) to stay in step with the stream. */
  #skipPayload(lengthBytes: number): void {
    for (let skipped = 0; skipped < lengthBytes;) {
      if (this.#inStart === this.#inEnd) {
        // A request's I/O holds it inside the engine's gate, and a remap
        // commit waits for the gate to empty: a client that stalls in the
        // middle of a payload must not stall every other client's remaps.
        this.#path.settle();
        if (!this.#receiveBlocking()) return;
      }
      const count = Math.min(lengthBytes - skipped, this.#inEnd - this.#inStart);
      this.#inStart += count;
      skipped += count;
    }
  }

  /**
   * Starts the part of the incoming write that arrived, if it is worth a
   * part of its own; once the whole payload is there, starts the rest.
   * True when the payload is complete.
   */
  #continueIncoming(request: Request): boolean {
    const lengthBytes = request.header.lengthBytes;
    if (request.receivedBytes < lengthBytes) {
      const arrived = request.receivedBytes - request.receivedBytes % this.#streamAlignBytes;
      if (this.#incomingStreams && arrived - request.startedBytes >= STREAM_PART_BYTES_MIN) {
        this.#path.startPart(request, arrived);
      }
      return false;
    }
    this.#incoming = undefined;
    // A streamed write was valid before its parts started: #route starts the rest.
    this.#route(request);
    return true;
  }

  /** Blocks until more bytes arrive; false when the stream ended. */
  #receiveBlocking(): boolean {
    const count = receive(this.#fd, this.#receiveRoom(), 0);
    return this.#received(count);
  }

  /** Takes bytes already there without blocking; true when some came. */
  #receiveAvailable(): boolean {
    const count = receive(this.#fd, this.#receiveRoom(), MSG_DONTWAIT);
    return count !== -ERRNO.EAGAIN && this.#received(count);
  }

  /**
   * Where the next receive goes: the rest of the incoming write's payload,
   * or the input buffer. While large writes arrive, only the next header is
   * taken into the input buffer, so each payload is received straight into
   * its own aligned buffer instead of partly copied from ours.
   */
  #receiveRoom(): Uint8Array {
    const incoming = this.#incoming;
    if (incoming) return incoming.data!.subarray(incoming.receivedBytes);
    this.#compactInput();
    const room = this.#largeWrites ? REQUEST_HEADER_BYTES : this.#in.length - this.#inEnd;
    return this.#in.subarray(this.#inEnd, this.#inEnd + room);
  }

  #received(count: number): boolean {
    if (count > 0) {
      this.#setup.counters[COUNTERS.BYTES_RECEIVED]! += count;
      if (this.#incoming) this.#incoming.receivedBytes += count;
      else this.#inEnd += count;
      return true;
    }
    if (count < 0) this.#failure ??= connectionError("receive", -count);
    else if (this.#incoming) {
      // Its reply can never be sent: the connection ends once its pieces are done.
      this.#failure ??= new Deno.errors.UnexpectedEof("The stream ended inside a write");
    } else if (!this.#stopRequested()) {
      this.#inputEnded = true;
      this.#endInputIfDrained();
      return true;
    }
    this.#stopReading(this.#stopRequested() ? "stopped" : "eof");
    return false;
  }

  /**
   * After the client shut its side: stops reading once no complete request
   * header is left, or at once when a write's payload can never arrive.
   */
  #endInputIfDrained(): void {
    if (!this.#inputEnded) return;
    if (this.#incoming) {
      // Its reply can never be sent: the connection ends once its pieces are done.
      this.#failure ??= new Deno.errors.UnexpectedEof("The stream ended inside a write");
      return this.#stopReading("eof");
    }
    if (this.#inEnd - this.#inStart >= REQUEST_HEADER_BYTES) return;
    if (this.#inEnd > this.#inStart) {
      this.#failure ??= new Deno.errors.UnexpectedEof("The stream ended inside a request");
    }
    this.#stopReading("eof");
  }

  /** How many bytes the next receive may take: never zero while the socket is read. */
  #inputRoomBytes(): number {
    const incoming = this.#incoming;
    if (incoming) return incoming.header.lengthBytes - incoming.receivedBytes;
    return this.#in.length - (this.#inEnd - this.#inStart);
  }

  #compactInput(): void {
    if (this.#inStart === 0) return;
    this.#in.copyWithin(0, this.#inStart, this.#inEnd);
    this.#inEnd -= this.#inStart;
    this.#inStart = 0;
  }

  #stopReading(end: "disconnect" | "eof" | "stopped"): void {
    if (!this.#reading) return;
    this.#reading = false;
    this.#end = end;
  }

  #stopRequested(): boolean {
    return Atomics.load(this.#setup.mailbox, MAILBOX.STOP) !== 0;
  }

  // ------------------------------------------------------------ requests

  #problemWith(header: RequestHeader) {
    return validateRequest(header, {
      sizeBytes: (this.#setup.transport as NegotiatedConnection).export.sizeBytes,
      session: this.#session,
    });
  }

  /** Answers a request the protocol refuses or BLOCK_STATUS, or hands it to the data path. */
  #route(request: Request): void {
    const { header } = request;
    const problem = this.#problemWith(header);
    const structuredReplies = this.#session.structuredReplies;
    if (problem) {
      this.#answer(request, encodeErrorReply(header.cookie, { problem, structuredReplies }), false);
      return;
    }
    if (header.type === NBD_CMD.BLOCK_STATUS) {
      return this.#answer(request, blockStatusReply(header, this.#session), false);
    }
    if (request.op === "read" && request.lengthBytes > 0 && request.reply === undefined) {
      // The disk (or the engine's result) fills the reply behind room for its header.
      const reply = this.#replyBuffers.take(this.#prefixBytes, request.lengthBytes);
      request.reply = reply;
      request.data = reply.subarray(this.#prefixBytes);
    }
    this.#path.start(request);
  }

  /** The data path is done with a request: queue its reply. */
  #done = (request: Request, error: DataError | undefined): void => {
    const { header } = request;
    const structuredReplies = this.#session.structuredReplies;
    const reply = request.reply;
    request.reply = undefined;
    if (error) {
      if (reply) this.#replyBuffers.give(reply, this.#prefixBytes);
      const problem = problemOf(error);
      this.#answer(request, encodeErrorReply(header.cookie, { problem, structuredReplies }), false);
      return;
    }
    if (reply === undefined) {
      return this.#answer(request, encodeOkReply(header.cookie, structuredReplies), false);
    }
    writeReadReplyPrefix(reply, {
      cookie: header.cookie,
      offsetBytes: request.offsetBytes,
      structuredReplies,
    });
    this.#answer(request, reply, true);
  };

  #answer(request: Request, reply: Uint8Array, pooled: boolean): void {
    // A write's data is its payload buffer; a read's is a view of its reply.
    if (request.op === "write" && request.data) this.#payloads.give(request.data, 0);
    request.data = undefined;
    this.#inflight--;
    this.#inflightBytes -= request.costBytes;
    assert(this.#inflight >= 0 && this.#inflightBytes >= 0, "in-flight counts never go negative");
    this.#out.push({ bytes: reply, pooled });
  }

  // ------------------------------------------------------------ replies and waiting

  /** Sends queued replies with as few send calls as the socket allows, without blocking. */
  #send(): void {
    while (this.#out.length > 0 && this.#failure === undefined) {
      const head = this.#out[0]!.bytes;
      const large = head.length - this.#outSent > SEND_COPY_BYTES_MAX;
      const chunk = large ? head.subarray(this.#outSent) : this.#gatherSmallReplies();
      // A large reply is sent whole, blocking, as an nbdkit thread does: the
      // kernel then copies it in one call instead of one call and one poll per
      // socket buffer full. Only with no disk I/O in flight, though: requests
      // inside the engine's gate must not wait for this client to read (see
      // settleDiskIo). A client that stops reading is cut off at stop.
      const blocking = large && this.#path.diskInflight === 0;
      const sent = sendBytes(
        this.#fd,
        chunk,
        blocking ? MSG_NOSIGNAL : MSG_DONTWAIT | MSG_NOSIGNAL,
      );
      if (sent === -ERRNO.EAGAIN) return;
      if (sent < 0) {
        // The client is gone: nothing more can be answered.
        this.#failure = connectionError("send", -sent);
        this.#stopReading("eof");
        return;
      }
      this.#consumeSent(sent);
      if (sent < chunk.length) return;
    }
  }

  /** Copies the unsent head and the small replies after it into the send buffer. */
  #gatherSmallReplies(): Uint8Array {
    let filled = 0;
    for (let i = 0; i < this.#out.length; i++) {
      const bytes = i === 0 ? this.#out[0]!.bytes.subarray(this.#outSent) : this.#out[i]!.bytes;
      if (bytes.length > SEND_COPY_BYTES_MAX || filled + bytes.length > SEND_BUFFER_BYTES) break;
      this.#sendBuffer.set(bytes, filled);
      filled += bytes.length;
    }
    return this.#sendBuffer.subarray(0, filled);
  }

  #consumeSent(sentBytes: number): void {
    let left = sentBytes;
    let answered = 0;
    while (left > 0) {
      const head = this.#out[0]!;
      const rest = head.bytes.length - this.#outSent;
      if (left < rest) {
        this.#outSent += left;
        break;
      }
      left -= rest;
      this.#outSent = 0;
      this.#out.shift();
      if (head.pooled) this.#replyBuffers.give(head.bytes, this.#prefixBytes);
      answered++;
    }
    if (answered > 0) Atomics.add(this.#setup.mailbox, MAILBOX.ANSWERED, answered);
  }

  /** Blocks until something can happen: bytes to read, room to send, disk I/O done, a message. */
  #wait(): void {
    // Nothing in flight means every slot is free again: retry at once.
    if (this.#path.retriesNow) return;
    // A request that the in-flight limits parked in the input buffer and now
    // admit: the client may have sent all it will send and be waiting for its
    // reply, so the next turn parses it before anything waits on the socket.
    if (this.#nextRequestAdmitted()) return;
    const canRead = this.#reading && !this.#inputEnded && (
      this.#incoming !== undefined ||
      (this.#inflight < NBD_INFLIGHT_MAX && this.#inputRoomBytes() > 0)
    );
    const idle = this.#path.diskInflight === 0 && this.#out.length === 0 &&
      !this.#path.awaitsEngine;
    if (canRead && idle) {
      if (this.#idlePollPays && this.#pollBeforeSleeping()) return;
      // Only the client can start anything: wait in recv itself (shutdown() ends it at stop).
      this.#assertMaySleep({ replies: false, wake: false, disk: false });
      const sleptAt = performance.now();
      this.#receiveBlocking();
      this.#idlePollPays = (performance.now() - sleptAt) * 1000 < IDLE_POLL_MICROS;
      return;
    }
    if (canRead && (this.#receiveAvailable() || !this.#reading)) return;
    const view = this.#pollView;
    let count = 0;
    const canSend = this.#out.length > 0 && this.#failure === undefined;
    const socketEvents = (canRead ? POLLIN : 0) | (canSend ? POLLOUT : 0);
    count = this.#pollEntry(view, count, this.#fd, socketEvents);
    const disk = this.#path.diskInflight > 0;
    if (disk) count = this.#pollEntry(view, count, this.#path.eventFd, POLLIN);
    count = this.#pollEntry(view, count, this.#setup.wakeFd, POLLIN);
    this.#assertMaySleep({ replies: canSend, wake: true, disk });
    const ready = pollDescriptors(this.#pollFds, count, -1);
    if (ready <= 0) return;
    for (let i = 0; i < count; i++) {
      const fd = view.getInt32(i * 8, true);
      const revents = view.getInt16(i * 8 + 6, true);
      if (revents === 0) continue;
      if (fd === this.#fd) {
        if (canRead && (revents & ~POLLOUT) !== 0) this.#receiveAvailable();
      } else drainEventFd(fd);
    }
  }

  /**
   * The liveness invariant, checked before every sleep: whatever this worker
   * could do now is done, or the sleep wakes for it. No request the limits
   * admit waits in the input buffer; queued replies are waited on with
   * POLLOUT; forwarded requests' replies and the gate's reopening are waited
   * on through the wake eventfd; disk I/O in flight through its eventfd.
   */
  #assertMaySleep(watched: { replies: boolean; wake: boolean; disk: boolean }): void {
    assert(!this.#nextRequestAdmitted(), "no admitted request waits in the input buffer");
    if (this.#out.length > 0 && this.#failure === undefined) {
      assert(watched.replies, "a sleep with replies queued wakes when the socket takes them");
    }
    if (this.#path.awaitsEngine) {
      assert(watched.wake, "a sleep with requests on the engine or the gate wakes for them");
    }
    if (this.#path.diskInflight > 0) {
      assert(watched.disk, "a sleep with disk I/O in flight wakes for it");
    }
    if (this.#reading && this.#inputEnded) {
      assert(this.#inflight > 0, "after the client's end, only requests in flight park the rest");
    }
  }

  /** Polls the socket without sleeping for up to IDLE_POLL_MICROS; true when bytes came (or it ended). */
  #pollBeforeSleeping(): boolean {
    const until = performance.now() + IDLE_POLL_MICROS / 1000;
    do {
      if (this.#receiveAvailable() || !this.#reading) return true;
    } while (performance.now() < until);
    this.#idlePollPays = false;
    return false;
  }

  #pollEntry(view: DataView, index: number, fd: number, events: number): number {
    view.setInt32(index * 8, fd, true);
    view.setInt16(index * 8 + 4, events, true);
    view.setInt16(index * 8 + 6, 0, true);
    return index + 1;
  }
}

/**
 * One NBD connection served on a worker thread: the handshake, then a
 * transmission loop that does its own socket and disk I/O.
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
 * What the worker serves itself: READ and WRITE (FUA too) of blocks that are
 * on the main disk or already remapped (slot I/O on the spare), and FLUSH.
 * Everything else goes to the engine's thread as is ({@link FromWorker}
 * "forward"): every I/O error, writes touching pending blocks, TRIM,
 * WRITE_ZEROES, CACHE, BLOCK_STATUS, and requests whose pieces would break
 * O_DIRECT alignment. The engine then applies the data rules exactly as for
 * any other request, so there is one implementation of them.
 *
 * Consistency with remaps: a request enters the engine's cross-thread gate
 * before its lookups and leaves once its I/O completed; the engine changes
 * the table only while nobody is inside (see `remap/shared_state.ts`).
 * Requests that find the gate closed wait here and are retried when the
 * engine reopens it.
 *
 * @module
 */

import { assert } from "../assert.ts";
import {
  AIO_SLOTS_MAX,
  CONN_READ_BUFFER_BYTES,
  DIRECT_ALIGN_BYTES,
  NBD_INFLIGHT_BYTES_MAX,
  NBD_INFLIGHT_MAX,
  NBD_REQUEST_BYTES_MAX,
} from "../constants.ts";
import { ShapedBufferPools } from "../aligned_bytes.ts";
import { AIO_OPCODE } from "../sys/aio.ts";
import { ERRNO, RWF_DSYNC } from "../sys/libc.ts";
import { ConnByteStream } from "../export/nbd/byte_stream.ts";
import { isConnectionFailure } from "../export/nbd/connection.ts";
import { type NbdSession, runHandshake } from "../export/nbd/handshake.ts";
import {
  decodeRequestHeaderAt,
  encodeErrorChunk,
  encodeNoneChunk,
  encodeSimpleReply,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NbdProtocolError,
  readReplyPrefixBytes,
  REQUEST_HEADER_BYTES,
  type RequestHeader,
  writeReadReplyPrefix,
} from "../export/nbd/protocol.ts";
import { validateRequest } from "../export/nbd/transmission.ts";
import { EngineStateReader } from "../remap/shared_state.ts";
import { SUMMARY_EXTENT_BLOCKS } from "../remap/remap_table.ts";
import { SharedBlockListReader } from "../shared_block_list.ts";
import { AioBatch, VECTOR_SEGMENTS_MAX } from "./aio_batch.ts";
import {
  closeDescriptor,
  createEventFd,
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
  syncData,
} from "../sys/syscalls.ts";
import {
  COUNTERS,
  type ForwardedRequest,
  type FromWorker,
  MAILBOX,
  type ToWorker,
  type WorkerSetup,
} from "./messages.ts";

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

/** Takes the messages the engine's thread posts, in order. */
export class MessageQueue {
  #queued: ToWorker[] = [];
  #waiting: ((message: ToWorker) => void) | undefined;

  /** Hands over a message that arrived. */
  push(message: ToWorker): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting) waiting(message);
    else this.#queued.push(message);
  }

  /** The next message; waits in the event loop until it arrives. */
  next(): Promise<ToWorker> {
    const queued = this.#queued.shift();
    if (queued) return Promise.resolve(queued);
    assert(this.#waiting === undefined, "one reader takes messages");
    return new Promise((resolve) => this.#waiting = resolve);
  }
}

/**
 * Serves the connection in `setup` until it ends; posts "transmission" after
 * the handshake and "ended" at the end. The caller closes nothing: the socket
 * belongs to the engine's thread, which closes it after "ended".
 */
export async function serveWorkerConnection(
  setup: WorkerSetup,
  messages: MessageQueue,
  post: (message: FromWorker) => void,
): Promise<void> {
  // Before the handshake: once the client has its reply, the connection is as it will stay.
  growSendBuffer(setup.connectionFd, SOCKET_SEND_BUFFER_BYTES);
  const socket = new BlockingSocket(setup.connectionFd, setup.counters);
  const stream = new ConnByteStream(socket);
  let result;
  try {
    result = await runHandshake(stream, { export: setup.export });
  } catch (error) {
    post(endedWith(error));
    return;
  }
  if (result.kind === "aborted") return post({ type: "ended", end: "aborted" });
  post({ type: "transmission", session: result.session });
  let loop: DirectTransmission;
  try {
    loop = new DirectTransmission(setup, result.session, stream.takeBuffered(), messages, post);
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

/** Blocking recv/send on the worker's own thread, for the handshake. */
class BlockingSocket {
  readonly #fd: number;
  readonly #counters: Float64Array;

  constructor(fd: number, counters: Float64Array) {
    this.#fd = fd;
    this.#counters = counters;
  }

  read(buffer: Uint8Array): Promise<number | null> {
    const count = receive(this.#fd, buffer, 0);
    if (count < 0) return Promise.reject(connectionError("receive", -count));
    this.#counters[COUNTERS.BYTES_RECEIVED]! += count;
    return Promise.resolve(count === 0 ? null : count);
  }

  write(data: Uint8Array): Promise<number> {
    const count = sendBytes(this.#fd, data, MSG_NOSIGNAL);
    if (count < 0) return Promise.reject(connectionError("send", -count));
    return Promise.resolve(count);
  }
}

function connectionError(what: string, errno: number): Error {
  return new Deno.errors.ConnectionReset(`Cannot ${what} on the connection: errno ${errno}`);
}

/** A request from the time it is read until its reply is queued. */
interface Request {
  header: RequestHeader;
  /** Write data, aligned. */
  payload: Uint8Array | undefined;
  /** Read reply: prefix, then the data the disk reads into. */
  reply: Uint8Array | undefined;
  costBytes: number;
  piecesLeft: number;
  /**
   * Whether it goes to the engine's thread whole once none of its own pieces
   * is in flight: a piece failed, or a part of it cannot be served here.
   */
  toEngine: boolean;
  /** How many times it counted itself into the engine's gate: once per part started. */
  gateEntries: number;
  /** Bytes of the request whose disk I/O is prepared; a large write starts parts while its payload arrives. */
  startedBytes: number;
  /** Payload bytes of a write received so far. */
  receivedBytes: number;
}

/** One disk I/O of a request. */
interface Piece {
  request: Request;
  lengthBytes: number;
  /** For flush pieces: the descriptor, to repeat the sync without AIO if AIO refuses it. */
  syncFd: number;
}

/** One queued reply. */
interface Outgoing {
  bytes: Uint8Array;
  /** Whether the buffer goes back to the reply pool once sent. */
  pooled: boolean;
}

/** A planned piece of a read or write: one range of one disk. */
interface Run {
  fd: number;
  direct: boolean;
  deviceOffset: number;
  /** Where its memory starts in the request (the first segment's, for a vectored run). */
  bufferOffset: number;
  lengthBytes: number;
  /**
   * For a run whose memory is in pieces (remapped blocks in consecutive slots,
   * main-disk blocks between them): offset and length in the request of each
   * piece, in disk order. Undefined for one piece of memory.
   */
  segments: number[] | undefined;
}

class DirectTransmission {
  readonly #setup: WorkerSetup;
  readonly #fd: number;
  readonly #session: NbdSession;
  readonly #messages: MessageQueue;
  readonly #post: (message: FromWorker) => void;
  readonly #state: EngineStateReader;
  readonly #leftToDevice:
    | { reads: SharedBlockListReader; writes: SharedBlockListReader }
    | undefined;
  readonly #aioEventFd: number;
  readonly #aio: AioBatch<Piece>;
  readonly #replyBuffers = new ShapedBufferPools();
  readonly #payloads = new ShapedBufferPools();
  readonly #prefixBytes: number;
  readonly #blockBytes: number;
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
  /** Waiting for the gate to reopen or for free AIO slots. */
  #waiting: Request[] = [];
  /** Whether a request found too few free AIO slots in this turn. */
  #waitingForRoom = false;
  /** The write whose payload is arriving: socket bytes go straight into its payload. */
  #incoming: Request | undefined;
  /** Whether the incoming write starts parts before all of it arrived. */
  #incomingStreams = false;
  /** Parts of a streamed write start and end on this: a block and an O_DIRECT boundary. */
  readonly #streamAlignBytes: number;
  #forwarded = new Map<number, Request>();
  #toForward: ForwardedRequest[] = [];
  #nextId = 1;
  #messagesTaken = 0;
  #out: Outgoing[] = [];
  #outSent = 0;
  readonly #runs: Run[] = [];
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
    this.#messages = messages;
    this.#post = post;
    this.#state = new EngineStateReader(setup.state);
    this.#leftToDevice = setup.leftToDevice && {
      reads: new SharedBlockListReader(setup.leftToDevice.reads),
      writes: new SharedBlockListReader(setup.leftToDevice.writes),
    };
    this.#prefixBytes = readReplyPrefixBytes(session.structuredReplies);
    this.#blockBytes = setup.blockBytes;
    this.#streamAlignBytes = Math.max(setup.blockBytes, DIRECT_ALIGN_BYTES);
    this.#in.set(leftover);
    this.#inEnd = leftover.length;
    const eventFd = createEventFd();
    if (eventFd < 0) throw new Error(`Cannot create an eventfd: errno ${-eventFd}`);
    this.#aioEventFd = eventFd;
    const aio = AioBatch.open<Piece>(eventFd);
    if (typeof aio === "number") {
      closeDescriptor(eventFd);
      throw new Error(`Cannot set up Linux AIO (fs.aio-max-nr?): errno ${-aio}`);
    }
    this.#aio = aio;
  }

  async run(): Promise<"disconnect" | "eof" | "stopped"> {
    for (;;) {
      await this.#takeMessages();
      this.#retryWaiting();
      if (this.#reading) this.#parseRequests();
      this.#aio.submit();
      this.#aio.reap(this.#complete);
      this.#postForwarded();
      this.#send();
      if (this.#failure && this.#aio.inflight === 0) throw this.#failure;
      if (!this.#reading && this.#inflight === 0 && this.#out.length === 0) return this.#end;
      this.#wait();
    }
  }

  close(): void {
    assert(this.#aio.inflight === 0, "no disk I/O outlives the connection");
    this.#aio.close();
    closeDescriptor(this.#aioEventFd);
  }

  // ------------------------------------------------------------ reading

  #parseRequests(): void {
    if (this.#incoming && !this.#continueIncoming(this.#incoming)) return this.#endInputIfDrained();
    while (this.#nextRequestAdmitted()) {
      const type = this.#inView.getUint16(this.#inStart + 6);
      const lengthBytes = this.#inView.getUint32(this.#inStart + 24);
      const carriesPayload = type === NBD_CMD_WRITE && lengthBytes <= NBD_REQUEST_BYTES_MAX;
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
      if (header.type === NBD_CMD_DISC) {
        this.#stopReading("disconnect");
        break;
      }
      this.#largeWrites = header.type === NBD_CMD_WRITE && lengthBytes > SEND_COPY_BYTES_MAX;
      const request: Request = {
        header,
        payload: undefined,
        reply: undefined,
        costBytes,
        piecesLeft: 0,
        toEngine: false,
        gateEntries: 0,
        startedBytes: 0,
        receivedBytes: 0,
      };
      this.#inflight++;
      this.#inflightBytes += costBytes;
      this.#setup.counters[COUNTERS.REQUESTS_RECEIVED]!++;
      if (carriesPayload && !this.#takePayload(request)) {
        this.#incoming = request;
        this.#incomingStreams = lengthBytes > STREAM_PART_BYTES_MIN &&
          Number(header.offset) % this.#streamAlignBytes === 0 &&
          this.#problemWith(header) === undefined;
        break;
      }
      if (header.type === NBD_CMD_WRITE && !carriesPayload) this.#skipPayload(lengthBytes);
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
    const dataCommand = type === NBD_CMD_WRITE || type === NBD_CMD_READ;
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
    request.payload = payload;
    request.receivedBytes = buffered;
    return buffered === lengthBytes;
  }

  /** Skips an oversized payload (the request is refused) to stay in step with the stream. */
  #skipPayload(lengthBytes: number): void {
    for (let skipped = 0; skipped < lengthBytes;) {
      if (this.#inStart === this.#inEnd) {
        this.#settleDiskIo();
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
      if (this.#incomingStreams && !request.toEngine && this.#waiting.length === 0) {
        const arrived = request.receivedBytes - request.receivedBytes % this.#streamAlignBytes;
        if (
          arrived - request.startedBytes >= STREAM_PART_BYTES_MIN &&
          this.#startRange(request, arrived) === "engine"
        ) request.toEngine = true;
      }
      return false;
    }
    this.#incoming = undefined;
    if (request.startedBytes === 0 && !request.toEngine) this.#route(request);
    else if (!request.toEngine) this.#startData(request);
    else if (request.piecesLeft === 0) this.#finish(request);
    return true;
  }

  /**
   * Submits what is prepared and waits for all disk I/O in flight, before
   * this worker blocks on its client. A request's I/O holds it inside the
   * engine's gate, and a remap commit waits for the gate to empty: a client
   * that stalls in the middle of a payload must not stall every other
   * client's remaps with it.
   */
  #settleDiskIo(): void {
    this.#aio.submit();
    this.#aio.reapAll(this.#complete);
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
    if (incoming) return incoming.payload!.subarray(incoming.receivedBytes);
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
      sizeBytes: this.#setup.export.sizeBytes,
      session: this.#session,
    });
  }

  /** Answers a request the protocol refuses, or starts it here or on the engine's thread. */
  #route(request: Request): void {
    const { header } = request;
    const problem = this.#problemWith(header);
    if (problem) {
      this.#answer(
        request,
        this.#session.structuredReplies
          ? encodeErrorChunk(header.cookie, problem.errno, problem.message)
          : encodeSimpleReply(header.cookie, problem.errno),
        false,
      );
      return;
    }
    const dataCommand = header.type === NBD_CMD_READ || header.type === NBD_CMD_WRITE;
    if (dataCommand && header.lengthBytes > 0) this.#startData(request);
    else if (header.type === NBD_CMD_FLUSH) this.#startFlush(request);
    else this.#forward(request);
  }

  #retryWaiting(): void {
    this.#waitingForRoom = false;
    if (this.#waiting.length === 0) return;
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const request of waiting) this.#startData(request);
  }

  /** Starts what is left of a read or write here, or queues it for the gate, or sends it to the engine. */
  #startData(request: Request): void {
    const outcome = this.#waiting.length > 0
      ? "wait"
      : this.#startRange(request, request.header.lengthBytes);
    if (outcome === "wait") this.#waiting.push(request);
    else if (outcome === "engine") {
      request.toEngine = true;
      if (request.piecesLeft === 0) this.#finish(request);
    }
  }

  /**
   * Plans the request's bytes from `startedBytes` to `endBytes` into runs on
   * the main disk and on slots, and prepares their I/O inside the gate.
   * "wait": the gate is closed or AIO is full; "engine": this part must go
   * through the engine's thread.
   */
  #startRange(request: Request, endBytes: number): "started" | "wait" | "engine" {
    const { header } = request;
    const isWrite = header.type === NBD_CMD_WRITE;
    const startBytes = request.startedBytes;
    const offsetBytes = Number(header.offset) + startBytes;
    const lengthBytes = endBytes - startBytes;
    if (this.#isLeftToDevice(header.type, offsetBytes, lengthBytes)) return "engine";
    if (!this.#state.tryEnter()) return "wait";
    const blockBytes = this.#blockBytes;
    const firstBlock = Math.floor(offsetBytes / blockBytes);
    const lastBlock = Math.floor((offsetBytes + lengthBytes - 1) / blockBytes);
    if (isWrite && this.#state.anyPending(firstBlock, lastBlock)) {
      this.#state.leave();
      return "engine";
    }
    const runs = this.#plan(offsetBytes, lengthBytes, firstBlock, lastBlock);
    // Payloads and reply data start on an O_DIRECT boundary (ShapedBufferPools),
    // so a piece is aligned exactly when its offset in the request is. The
    // engine's device layer bounces unaligned pieces.
    if (runs.some((run) => run.direct && !this.#aligned(run, startBytes))) {
      this.#state.leave();
      return "engine";
    }
    if (runs.length > this.#aio.free) {
      this.#state.leave();
      if (runs.length > AIO_SLOTS_MAX) return "engine"; // it can never fit
      // Slots are held by I/O in flight or prepared in this turn (submitted
      // before the wait): the wait wakes when that I/O completes, at once when
      // none is in flight.
      this.#waitingForRoom = true;
      return "wait";
    }
    let buffer: Uint8Array;
    if (isWrite) buffer = request.payload!;
    else {
      const reply = request.reply ?? this.#replyBuffers.take(this.#prefixBytes, header.lengthBytes);
      request.reply = reply;
      buffer = reply.subarray(this.#prefixBytes);
    }
    request.gateEntries++;
    request.piecesLeft += runs.length;
    request.startedBytes = endBytes;
    const rwFlags = isWrite && (header.flags & NBD_CMD_FLAG_FUA) !== 0 ? RWF_DSYNC : 0;
    for (const run of runs) {
      const from = startBytes + run.bufferOffset;
      const segments = run.segments && this.#segmentsOf(buffer, startBytes, run.segments);
      this.#aio.prepare({
        opcode: isWrite ? AIO_OPCODE.PWRITE : AIO_OPCODE.PREAD,
        fd: run.fd,
        buffer: segments ? segments[0]! : buffer.subarray(from, from + run.lengthBytes),
        segments,
        offsetBytes: run.deviceOffset,
        rwFlags,
      }, { request, lengthBytes: run.lengthBytes, syncFd: -1 });
    }
    return "started";
  }

  /** Whether every piece of a run's memory starts on an O_DIRECT boundary. */
  #aligned(run: Run, startBytes: number): boolean {
    const segments = run.segments;
    if (segments === undefined) return (startBytes + run.bufferOffset) % DIRECT_ALIGN_BYTES === 0;
    for (let i = 0; i < segments.length; i += 2) {
      if ((startBytes + segments[i]!) % DIRECT_ALIGN_BYTES !== 0) return false;
    }
    return true;
  }

  #segmentsOf(buffer: Uint8Array, startBytes: number, segments: number[]): Uint8Array[] {
    const views: Uint8Array[] = [];
    for (let i = 0; i < segments.length; i += 2) {
      const from = startBytes + segments[i]!;
      views.push(buffer.subarray(from, from + segments[i + 1]!));
    }
    return views;
  }

  /** Whether the main disk's device must see this request itself: then it goes through the engine. */
  #isLeftToDevice(type: number, offsetBytes: number, lengthBytes: number): boolean {
    if (this.#leftToDevice === undefined) return false;
    const listBytes = this.#setup.leftToDevice!.blockBytes;
    const list = type === NBD_CMD_WRITE ? this.#leftToDevice.writes : this.#leftToDevice.reads;
    return list.anyBetween(
      Math.floor(offsetBytes / listBytes),
      Math.floor((offsetBytes + lengthBytes - 1) / listBytes),
    );
  }

  /**
   * Splits a request at remapped blocks. Pieces that follow each other on one
   * disk stay one run: consecutive main-disk blocks, remapped neighbours whose
   * slots are neighbours too (a bad patch remapped in order), and remapped
   * blocks in consecutive slots with main-disk blocks between them, which
   * become one vectored I/O (every 4th block remapped in order: 65 I/Os for
   * 1 MiB instead of 128).
   */
  #plan(offsetBytes: number, lengthBytes: number, firstBlock: number, lastBlock: number): Run[] {
    const runs = this.#runs;
    runs.length = 0;
    const main = this.#setup.main;
    if (this.#state.remapCount === 0) {
      runs.push({
        fd: main.fd,
        direct: main.direct,
        deviceOffset: offsetBytes,
        bufferOffset: 0,
        lengthBytes,
        segments: undefined,
      });
      return runs;
    }
    const table = this.#state.table;
    const blockBytes = this.#blockBytes;
    const end = offsetBytes + lengthBytes;
    let last: Run | undefined;
    let lastOnSpare: Run | undefined;
    for (let block = firstBlock, next; block <= lastBlock; block = next) {
      // An extent without remaps is one piece on the main disk, with no lookups.
      let bucket = -1;
      if (table.extentIsClear(block)) {
        next = Math.min(
          lastBlock + 1,
          (Math.floor(block / SUMMARY_EXTENT_BLOCKS) + 1) * SUMMARY_EXTENT_BLOCKS,
        );
      } else {
        next = block + 1;
        bucket = table.bucketOf(block);
      }
      const start = Math.max(offsetBytes, block * blockBytes);
      const pieceBytes = Math.min(end, next * blockBytes) - start;
      const bufferOffset = start - offsetBytes;
      let disk: { fd: number; direct: boolean } = main;
      let deviceOffset = start;
      if (bucket >= 0) {
        const spare = this.#setup.spares[table.spareAt(bucket)];
        assert(spare !== undefined, "a slot lives on a known spare");
        disk = spare;
        deviceOffset = spare.dataOffsetBytes + table.slotAt(bucket) * blockBytes +
          (start - block * blockBytes);
      }
      const before = bucket >= 0 ? lastOnSpare : last;
      if (
        before !== undefined && before.fd === disk.fd &&
        before.deviceOffset + before.lengthBytes === deviceOffset &&
        this.#extend(before, before === last, bufferOffset, pieceBytes)
      ) {
        last = before;
        continue;
      }
      last = {
        fd: disk.fd,
        direct: disk.direct,
        deviceOffset,
        bufferOffset,
        lengthBytes: pieceBytes,
        segments: undefined,
      };
      if (bucket >= 0) lastOnSpare = last;
      runs.push(last);
    }
    return runs;
  }

  /**
   * Adds the next piece on `run`'s disk to it: at the end of its memory when
   * `adjacent` (the piece just before in the request is its last), else as
   * one more segment. False when the run has all the segments one I/O takes.
   */
  #extend(run: Run, adjacent: boolean, bufferOffset: number, pieceBytes: number): boolean {
    const segments = run.segments;
    if (adjacent) {
      if (segments) segments[segments.length - 1]! += pieceBytes;
    } else if (segments === undefined) {
      run.segments = [run.bufferOffset, run.lengthBytes, bufferOffset, pieceBytes];
    } else if (segments.length < 2 * VECTOR_SEGMENTS_MAX) segments.push(bufferOffset, pieceBytes);
    else return false;
    run.lengthBytes += pieceBytes;
    return true;
  }

  /** FLUSH: fdatasync of the main disk and every spare, through AIO. */
  #startFlush(request: Request): void {
    const fds = [this.#setup.main.fd, ...this.#setup.spares.map((spare) => spare.fd)];
    if (fds.length > this.#aio.free || this.#leftToDevice?.writes.everything) {
      return this.#forward(request);
    }
    request.piecesLeft = fds.length;
    for (const fd of fds) {
      this.#aio.prepare(
        { opcode: AIO_OPCODE.FDSYNC, fd, buffer: new Uint8Array(0), offsetBytes: 0, rwFlags: 0 },
        { request, lengthBytes: 0, syncFd: fd },
      );
    }
  }

  /** One disk I/O finished: `result` is bytes done or `-errno`. */
  #complete = (piece: Piece, result: number): void => {
    let outcome = result;
    if (outcome === -ERRNO.EINVAL && piece.syncFd >= 0) outcome = syncData(piece.syncFd);
    const request = piece.request;
    if (outcome !== piece.lengthBytes) request.toEngine = true;
    if (--request.piecesLeft > 0) return;
    for (; request.gateEntries > 0; request.gateEntries--) this.#state.leave();
    if (request === this.#incoming) return; // the rest of its payload is still arriving
    // The rest waits for the gate.
    if (!request.toEngine && request.startedBytes < request.header.lengthBytes) return;
    this.#finish(request);
  };

  /** Everything the request started here is done: answer it, or hand it to the engine. */
  #finish(request: Request): void {
    if (request.toEngine) return this.#forward(request);
    const { header } = request;
    const counters = this.#setup.counters;
    if (header.type === NBD_CMD_READ) {
      const reply = request.reply!;
      request.reply = undefined;
      writeReadReplyPrefix(reply, {
        cookie: header.cookie,
        offsetBytes: Number(header.offset),
        structuredReplies: this.#session.structuredReplies,
      });
      counters[COUNTERS.READS]!++;
      counters[COUNTERS.BYTES_READ]! += header.lengthBytes;
      return this.#answer(request, reply, true);
    }
    if (header.type === NBD_CMD_WRITE) {
      counters[COUNTERS.WRITES]!++;
      counters[COUNTERS.BYTES_WRITTEN]! += header.lengthBytes;
    } else counters[COUNTERS.FLUSHES]!++;
    this.#answer(request, this.#okReply(header), false);
  }

  /** Hands a request to the engine's thread, which answers with the reply bytes. */
  #forward(request: Request): void {
    if (request.reply) {
      this.#replyBuffers.give(request.reply, this.#prefixBytes);
      request.reply = undefined;
    }
    const id = this.#nextId++;
    this.#forwarded.set(id, request);
    this.#toForward.push({ id, header: request.header, payload: request.payload });
  }

  /**
   * Posts the requests forwarded in this turn as one message: the engine then
   * starts them in one task, so failing writes of one burst share one group
   * commit (and one closing of the gate) instead of one each.
   */
  #postForwarded(): void {
    if (this.#toForward.length === 0) return;
    this.#post({ type: "forward", requests: this.#toForward });
    this.#toForward = [];
  }

  #answer(request: Request, reply: Uint8Array, pooled: boolean): void {
    if (request.payload) {
      this.#giveBackPayload(request.payload);
      request.payload = undefined;
    }
    this.#inflight--;
    this.#inflightBytes -= request.costBytes;
    assert(this.#inflight >= 0 && this.#inflightBytes >= 0, "in-flight counts never go negative");
    this.#out.push({ bytes: reply, pooled });
  }

  #okReply(header: RequestHeader): Uint8Array {
    return this.#session.structuredReplies
      ? encodeNoneChunk(header.cookie)
      : encodeSimpleReply(header.cookie, 0);
  }

  #giveBackPayload(payload: Uint8Array): void {
    this.#payloads.give(payload, 0);
  }

  // ------------------------------------------------------------ engine messages

  /** Takes every message posted so far (the mailbox counts them). */
  async #takeMessages(): Promise<void> {
    const posted = Atomics.load(this.#setup.mailbox, MAILBOX.POSTED);
    while (this.#messagesTaken < posted) {
      const message = await this.#messages.next();
      this.#messagesTaken++;
      switch (message.type) {
        case "reply": {
          const request = this.#forwarded.get(message.id);
          assert(request !== undefined, "a reply answers a forwarded request");
          this.#forwarded.delete(message.id);
          this.#answer(request, message.reply, false);
          break;
        }
        case "gate-open":
          this.#state.adopt(message.state);
          break;
        case "setup":
          assert(false, "a worker is set up once");
      }
    }
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
      const blocking = large && this.#aio.inflight === 0;
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
    if (this.#waitingForRoom && this.#aio.inflight === 0) return;
    // A request that the in-flight limits parked in the input buffer and now
    // admit: the client may have sent all it will send and be waiting for its
    // reply, so the next turn parses it before anything waits on the socket.
    if (this.#nextRequestAdmitted()) return;
    const canRead = this.#reading && !this.#inputEnded && (
      this.#incoming !== undefined ||
      (this.#inflight < NBD_INFLIGHT_MAX && this.#inputRoomBytes() > 0)
    );
    const idle = this.#aio.inflight === 0 && this.#out.length === 0 &&
      this.#forwarded.size === 0 && this.#waiting.length === 0;
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
    if (this.#aio.inflight > 0) count = this.#pollEntry(view, count, this.#aioEventFd, POLLIN);
    count = this.#pollEntry(view, count, this.#setup.wakeFd, POLLIN);
    this.#assertMaySleep({ replies: canSend, wake: true, disk: this.#aio.inflight > 0 });
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
    if (this.#forwarded.size > 0 || this.#waiting.length > 0) {
      assert(watched.wake, "a sleep with requests on the engine or the gate wakes for them");
    }
    if (this.#aio.inflight > 0) {
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

/**
 * The transport-neutral data path of one connection worker: an export (the
 * NBD worker in `export/nbd/connection_worker.ts`, later a ublk queue) hands
 * it requests in neutral form ({@link PathRequest}) and hears of each one's
 * completion; it never sees a socket or a wire format.
 *
 * What it serves itself: reads and writes (FUA too) of blocks that are on the
 * main disk or already remapped (slot I/O on the spare), and flushes, through
 * an {@link IoQueue} (Linux AIO by default). Everything else goes to the
 * engine's thread as a {@link DataRequest} ("forward"): every I/O error,
 * every request once the setup has failed (its main disk is gone: no disk is
 * touched here then, and the engine answers EIO), writes touching pending blocks, trim, write-zeroes, cache, and requests
 * whose pieces would break O_DIRECT alignment. The engine then applies the
 * data rules exactly as for any other request, so there is one
 * implementation of them (`data_executor.ts`).
 *
 * Consistency with remaps: a request enters the engine's cross-thread gate
 * before its lookups and leaves once its I/O completed; the engine changes
 * the table only while nobody is inside (see `remap/shared_state.ts`).
 * Requests that find the gate closed wait here and are retried when the
 * engine reopens it. Requests are split over the table by the one planner,
 * `remap/plan.ts`.
 *
 * A turn of the worker's loop: {@link DataPath.beginTurn} (messages from the
 * engine, retries), the export starts requests, {@link DataPath.endTurn}
 * (submit, reap, post forwards); then the export sleeps in poll() on its
 * own descriptors, {@link DataPath.eventFd} and the setup's wake eventfd.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { AIO_SLOTS_MAX, DIRECT_ALIGN_BYTES } from "../constants.ts";
import { RequestPlanner, type Run } from "../remap/plan.ts";
import { EngineStateReader } from "../remap/shared_state.ts";
import { SharedBlockListReader } from "../shared_block_list.ts";
import { AIO_OPCODE } from "../sys/aio.ts";
import { ERRNO, RWF_DSYNC } from "../sys/libc.ts";
import { closeDescriptor, createEventFd, syncData } from "../sys/syscalls.ts";
import { AioBatch } from "./aio_batch.ts";
import { VECTOR_SEGMENTS_MAX } from "./io_addresses.ts";
import type { DataError, DataFlags, DataOp, DataResult } from "./data_request.ts";
import type { IoQueue, IoQueueOpener } from "./io_queue.ts";
import {
  COUNTERS,
  type DiskHandle,
  type ForwardedRequest,
  type FromWorker,
  MAILBOX,
  type SpareHandle,
  type ToWorker,
  type WorkerSetup,
} from "./messages.ts";

/** A planned run on a spare whose descriptor this connection does not hold. */
class SpareNotHeld extends Error {
  override name = "SpareNotHeld";
}

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
 * A request as the export hands it over. The export fills the first block
 * of fields; the data path owns the rest (the export creates them as zero,
 * false and `arriving` as it stands, and may read `startedBytes`).
 */
export interface PathRequest {
  op: DataOp;
  offsetBytes: number;
  lengthBytes: number;
  flags: DataFlags;
  /**
   * A write's payload; a read's destination (aligned, `lengthBytes` long).
   * Both start on an O_DIRECT boundary (ShapedBufferPools).
   */
  data: Uint8Array | undefined;
  /**
   * Whether a write's payload is still arriving: parts may be started
   * ({@link DataPath.startPart}); it completes only after {@link DataPath.start}.
   */
  arriving: boolean;
  /** Disk I/Os in flight. */
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
}

/** Options of {@link DataPath}. */
export interface DataPathOptions<R extends PathRequest> {
  setup: WorkerSetup;
  /** Where the engine's messages arrive. */
  messages: MessageQueue;
  /** Posts to the engine's thread. */
  post: (message: FromWorker) => void;
  /**
   * Called once per request when it is done: `error` undefined when it
   * succeeded (a read's data is in `request.data` then).
   */
  onDone: (request: R, error: DataError | undefined) => void;
  /**
   * Opens the disk I/O queue: the seam for a simulated disk.
   * @default Linux AIO ({@link AioBatch.open})
   */
  openIoQueue?: IoQueueOpener;
}

/** One disk I/O of a request. */
interface Piece<R> {
  request: R;
  lengthBytes: number;
  /** For flush pieces: the descriptor, to repeat the sync without AIO if AIO refuses it. */
  syncFd: number;
}

/** Serves neutral requests of one worker (see the module doc). */
export class DataPath<R extends PathRequest> {
  readonly #setup: WorkerSetup;
  readonly #messages: MessageQueue;
  readonly #post: (message: FromWorker) => void;
  readonly #onDone: (request: R, error: DataError | undefined) => void;
  readonly #state: EngineStateReader;
  readonly #leftToDevice:
    | { reads: SharedBlockListReader; writes: SharedBlockListReader }
    | undefined;
  readonly #eventFd: number;
  readonly #io: IoQueue<Piece<R>>;
  readonly #planner: RequestPlanner;
  /** Waiting for the gate to reopen or for free I/O slots. */
  #waiting: R[] = [];
  /** Whether a request found too few free I/O slots in this turn. */
  #waitingForRoom = false;
  #forwarded = new Map<number, R>();
  #toForward: ForwardedRequest[] = [];
  #nextId = 1;
  #messagesTaken = 0;

  /** @throws {Error} When no eventfd or I/O queue can be had (fs.aio-max-nr reached). */
  constructor(options: DataPathOptions<R>) {
    const setup = options.setup;
    this.#setup = setup;
    this.#messages = options.messages;
    this.#post = options.post;
    this.#onDone = options.onDone;
    this.#state = new EngineStateReader(setup.state);
    this.#leftToDevice = setup.leftToDevice && {
      reads: new SharedBlockListReader(setup.leftToDevice.reads),
      writes: new SharedBlockListReader(setup.leftToDevice.writes),
    };
    this.#planner = new RequestPlanner({
      blockBytes: setup.blockBytes,
      layoutOf: (spareIndex) => {
        // A spare that joined after this connection started: its runs go to the engine.
        const spare = this.#setup.spares[spareIndex];
        if (spare === undefined) throw new SpareNotHeld();
        return spare.layout;
      },
      segmentsMax: VECTOR_SEGMENTS_MAX,
    });
    const eventFd = createEventFd();
    if (eventFd < 0) throw new Error(`Cannot create an eventfd: errno ${-eventFd}`);
    this.#eventFd = eventFd;
    const io = (options.openIoQueue ?? AioBatch.open)<Piece<R>>(eventFd);
    if (typeof io === "number") {
      closeDescriptor(eventFd);
      throw new Error(`Cannot set up Linux AIO (fs.aio-max-nr?): errno ${-io}`);
    }
    this.#io = io;
  }

  /** Signalled when disk I/O completes after submit: poll it while {@link diskInflight} > 0. */
  get eventFd(): number {
    return this.#eventFd;
  }

  /** Disk I/Os submitted and not yet reaped. */
  get diskInflight(): number {
    return this.#io.inflight;
  }

  /** Whether requests wait on the engine (forwarded) or its gate: the wake eventfd brings news. */
  get awaitsEngine(): boolean {
    return this.#forwarded.size > 0 || this.#waiting.length > 0;
  }

  /** Whether a request waits for I/O slots that are all free again: the next turn retries at once. */
  get retriesNow(): boolean {
    return this.#waitingForRoom && this.#io.inflight === 0;
  }

  /** Takes the engine's messages (results, gate reopened) and retries waiting requests. */
  async beginTurn(): Promise<void> {
    await this.#takeMessages();
    this.#retryWaiting();
  }

  /** Submits what the turn prepared, completes what finished, posts the turn's forwards. */
  endTurn(): void {
    this.#io.submit();
    this.#io.reap(this.#complete);
    this.#postForwarded();
  }

  /**
   * Submits what is prepared and waits for all disk I/O in flight, before
   * the export blocks on its client. A request's I/O holds it inside the
   * engine's gate, and a remap commit waits for the gate to empty: a client
   * that stalls in the middle of a payload must not stall every other
   * client's remaps with it.
   */
  settle(): void {
    this.#io.submit();
    this.#io.reapAll(this.#complete);
  }

  /**
   * Starts a request whose payload (if any) is all there, or the rest of one
   * whose parts started while it arrived. Its range was checked by the export.
   */
  start(request: R): void {
    request.arriving = false;
    if (request.toEngine) {
      if (request.piecesLeft === 0) this.#finish(request);
      return;
    }
    if (request.startedBytes > 0) return this.#startData(request);
    const dataOp = request.op === "read" || request.op === "write";
    if (dataOp && request.lengthBytes > 0) this.#startData(request);
    else if (request.op === "flush") this.#startFlush(request);
    else this.#forward(request);
  }

  /**
   * Starts the bytes of an arriving write up to `endBytes` (a block and
   * O_DIRECT boundary), unless earlier requests wait or it goes to the engine.
   */
  startPart(request: R, endBytes: number): void {
    assert(request.arriving && request.op === "write", "parts are of arriving writes");
    if (request.toEngine || this.#waiting.length > 0) return;
    if (this.#startRange(request, endBytes) === "engine") request.toEngine = true;
  }

  /** Releases the I/O queue; no disk I/O may be in flight. */
  close(): void {
    assert(this.#io.inflight === 0, "no disk I/O outlives the connection");
    this.#io.close();
    closeDescriptor(this.#eventFd);
  }

  #retryWaiting(): void {
    this.#waitingForRoom = false;
    if (this.#waiting.length === 0) return;
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const request of waiting) this.#startData(request);
  }

  /** Starts what is left of a read or write here, or queues it for the gate, or sends it to the engine. */
  #startData(request: R): void {
    const outcome = this.#waiting.length > 0
      ? "wait"
      : this.#startRange(request, request.lengthBytes);
    if (outcome === "wait") this.#waiting.push(request);
    else if (outcome === "engine") {
      request.toEngine = true;
      if (request.piecesLeft === 0) this.#finish(request);
    }
  }

  /**
   * Plans the request's bytes from `startedBytes` to `endBytes` into runs on
   * the main disk and on slots, and prepares their I/O inside the gate.
   * "wait": the gate is closed or the queue is full; "engine": this part must
   * go through the engine's thread.
   */
  #startRange(request: R, endBytes: number): "started" | "wait" | "engine" {
    const isWrite = request.op === "write";
    const startBytes = request.startedBytes;
    const offsetBytes = request.offsetBytes + startBytes;
    const lengthBytes = endBytes - startBytes;
    if (this.#state.failed || this.#isLeftToDevice(request.op, offsetBytes, lengthBytes)) {
      return "engine";
    }
    if (!this.#state.tryEnter()) return "wait";
    const blockBytes = this.#setup.blockBytes;
    const firstBlock = Math.floor(offsetBytes / blockBytes);
    const lastBlock = Math.floor((offsetBytes + lengthBytes - 1) / blockBytes);
    if (isWrite && this.#state.anyPending(firstBlock, lastBlock)) {
      this.#state.leave();
      return "engine";
    }
    let runs: Run[];
    try {
      runs = this.#planner.plan({ offsetBytes, lengthBytes }, this.#state);
    } catch (error) {
      if (!(error instanceof SpareNotHeld)) throw error;
      this.#state.leave();
      return "engine";
    }
    // Payloads and read buffers start on an O_DIRECT boundary, so a piece is
    // aligned exactly when its offset in the request is. The engine's device
    // layer bounces unaligned pieces.
    if (runs.some((run) => this.#diskOf(run).direct && !aligned(run, startBytes))) {
      this.#state.leave();
      return "engine";
    }
    if (runs.length > this.#io.free) {
      this.#state.leave();
      if (runs.length > AIO_SLOTS_MAX) return "engine"; // it can never fit
      // Slots are held by I/O in flight or prepared in this turn (submitted
      // before the wait): the wait wakes when that I/O completes, at once when
      // none is in flight.
      this.#waitingForRoom = true;
      return "wait";
    }
    const buffer = request.data;
    assert(buffer !== undefined && buffer.length === request.lengthBytes, "data for the range");
    request.gateEntries++;
    request.piecesLeft += runs.length;
    request.startedBytes = endBytes;
    const rwFlags = isWrite && request.flags.fua ? RWF_DSYNC : 0;
    for (const run of runs) {
      const from = startBytes + run.bufferOffset;
      const segments = run.segments && segmentsOf(buffer, startBytes, run.segments);
      this.#io.prepare({
        opcode: isWrite ? AIO_OPCODE.PWRITE : AIO_OPCODE.PREAD,
        fd: this.#diskOf(run).fd,
        buffer: segments ? segments[0]! : buffer.subarray(from, from + run.lengthBytes),
        segments,
        offsetBytes: run.offsetBytes,
        rwFlags,
      }, { request, lengthBytes: run.lengthBytes, syncFd: -1 });
    }
    return "started";
  }

  /** The disk a planned run is on. */
  #diskOf(run: Run): DiskHandle {
    return run.kind === "slot" ? this.#spareAt(run.spareIndex) : this.#setup.main;
  }

  #spareAt(spareIndex: number): SpareHandle {
    const spare = this.#setup.spares[spareIndex];
    assert(spare !== undefined, "a slot lives on a known spare");
    return spare;
  }

  /**
   * Whether the main disk's device must see this request itself (for a
   * flush: whether it lists every write): then it goes through the engine.
   */
  #isLeftToDevice(op: DataOp, offsetBytes: number, lengthBytes: number): boolean {
    if (this.#leftToDevice === undefined) return false;
    if (op === "flush") return this.#leftToDevice.writes.everything;
    const listBytes = this.#setup.leftToDevice!.blockBytes;
    const list = op === "write" ? this.#leftToDevice.writes : this.#leftToDevice.reads;
    return list.anyBetween(
      Math.floor(offsetBytes / listBytes),
      Math.floor((offsetBytes + lengthBytes - 1) / listBytes),
    );
  }

  /** Flush: fdatasync of the main disk and every spare, through the queue. */
  #startFlush(request: R): void {
    // Spares by index: a removed one leaves a hole, which flatMap skips.
    const fds = [this.#setup.main.fd, ...this.#setup.spares.flatMap((spare) => [spare.fd])];
    if (
      this.#state.failed || fds.length > this.#io.free || this.#isLeftToDevice("flush", 0, 0) ||
      // A spare joined since this connection started: only the engine holds its descriptor.
      this.#state.spareCount > this.#setup.spares.length
    ) {
      return this.#forward(request);
    }
    request.piecesLeft = fds.length;
    for (const fd of fds) {
      this.#io.prepare(
        { opcode: AIO_OPCODE.FDSYNC, fd, buffer: new Uint8Array(0), offsetBytes: 0, rwFlags: 0 },
        { request, lengthBytes: 0, syncFd: fd },
      );
    }
  }

  /** One disk I/O finished: `result` is bytes done or `-errno`. */
  #complete = (piece: Piece<R>, result: number): void => {
    let outcome = result;
    if (outcome === -ERRNO.EINVAL && piece.syncFd >= 0) outcome = syncData(piece.syncFd);
    const request = piece.request;
    if (outcome !== piece.lengthBytes) request.toEngine = true;
    if (--request.piecesLeft > 0) return;
    for (; request.gateEntries > 0; request.gateEntries--) this.#state.leave();
    if (request.arriving) return; // the rest of its payload is still arriving
    // The rest waits for the gate.
    if (!request.toEngine && request.startedBytes < request.lengthBytes) return;
    this.#finish(request);
  };

  /** Everything the request started here is done: complete it, or hand it to the engine. */
  #finish(request: R): void {
    if (request.toEngine) return this.#forward(request);
    const counters = this.#setup.counters;
    if (request.op === "read") {
      counters[COUNTERS.READS]!++;
      counters[COUNTERS.BYTES_READ]! += request.lengthBytes;
    } else if (request.op === "write") {
      counters[COUNTERS.WRITES]!++;
      counters[COUNTERS.BYTES_WRITTEN]! += request.lengthBytes;
    } else counters[COUNTERS.FLUSHES]!++;
    this.#onDone(request, undefined);
  }

  /** Hands a request to the engine's thread, which answers with its result. */
  #forward(request: R): void {
    const id = this.#nextId++;
    this.#forwarded.set(id, request);
    this.#toForward.push({
      id,
      request: {
        op: request.op,
        offsetBytes: request.offsetBytes,
        lengthBytes: request.lengthBytes,
        flags: request.flags,
        // A read's data comes back in the result, into the request's buffer.
        data: request.op === "read" ? undefined : request.data,
      },
    });
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

  /** Takes every message posted so far (the mailbox counts them). */
  async #takeMessages(): Promise<void> {
    const posted = Atomics.load(this.#setup.mailbox, MAILBOX.POSTED);
    while (this.#messagesTaken < posted) {
      const message = await this.#messages.next();
      this.#messagesTaken++;
      switch (message.type) {
        case "result": {
          const request = this.#forwarded.get(message.id);
          assert(request !== undefined, "a result answers a forwarded request");
          this.#forwarded.delete(message.id);
          this.#completeForwarded(request, message.result);
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

  #completeForwarded(request: R, result: DataResult): void {
    if (result.data !== undefined) {
      assert(request.op === "read" && request.data !== undefined, "only reads return data");
      request.data.set(result.data);
    }
    this.#onDone(request, result.error);
  }
}

/** Whether every piece of a run's memory starts on an O_DIRECT boundary. */
function aligned(run: Run, startBytes: number): boolean {
  const segments = run.segments;
  if (segments === undefined) return (startBytes + run.bufferOffset) % DIRECT_ALIGN_BYTES === 0;
  for (let i = 0; i < segments.length; i += 2) {
    if ((startBytes + segments[i]!) % DIRECT_ALIGN_BYTES !== 0) return false;
  }
  return true;
}

function segmentsOf(buffer: Uint8Array, startBytes: number, segments: number[]): Uint8Array[] {
  const views: Uint8Array[] = [];
  for (let i = 0; i < segments.length; i += 2) {
    const from = startBytes + segments[i]!;
    views.push(buffer.subarray(from, from + segments[i + 1]!));
  }
  return views;
}

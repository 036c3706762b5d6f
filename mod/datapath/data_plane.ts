/**
 * The data plane, engine side: serves each accepted socket on a worker
 * thread of its own, answers the requests workers forward (in the neutral
 * form of `data_request.ts`) with the {@link DataExecutor} over the engine,
 * and tells workers when the remap gate reopens.
 *
 * It is transport-neutral: the worker module (an export's worker entry, e.g.
 * `export/nbd/connection_worker.ts`) and what that export needs on the worker
 * (NBD: the export on offer) are opaque to it; it only moves neutral requests
 * and results, the gate's reopening and the stop signal.
 *
 * It applies to setups whose disks are files or block devices
 * ({@link DiskHandle}): a worker does I/O on their descriptors itself. The
 * main disk's device stays in charge of the ranges it leaves to itself
 * ({@link LeftToDevice}): requests that touch them are forwarded through it.
 *
 * @module
 */

import { assert } from "../assert.ts";
import type { Device, LeftToDevice } from "../device/device.ts";
import { DataExecutor } from "./data_executor.ts";
import type { DataRequest } from "./data_request.ts";
import type { EngineStatePublisher } from "../remap/shared_state.ts";
import {
  closeDescriptor,
  createEventFd,
  SHUT_RD,
  SHUT_RDWR,
  shutdownSocket,
  signalEventFd,
  unconsumedSentBytes,
  unreadBytes,
} from "../sys/syscalls.ts";
import { COUNTERS, MAILBOX } from "./messages.ts";
import type { DiskHandle, FromWorker, SpareHandle, ToWorker, WorkerSetup } from "./messages.ts";

/** How a connection on a worker ended. */
export type ConnectionOutcome =
  /** The client gave up before serving began (NBD_OPT_ABORT). */
  | { end: "aborted" }
  /** The client said goodbye, hung up between requests, or the server stopped. */
  | { end: "disconnect" | "eof" | "stopped" }
  /** The client broke its protocol or the connection failed; `error` says how. */
  | { end: "failed"; error: Error };

/** What the data plane serves. */
export interface DataPlaneOptions {
  /** The engine: forwarded requests go to it; its shared state routes the workers. */
  engine: Device & { readonly sharedState: EngineStatePublisher; readonly blockBytes: number };
  main: DiskHandle;
  /** By spare index. */
  spares: SpareHandle[];
  /**
   * The module a worker starts: an export's worker entry (NBD: one that calls
   * `runNbdConnectionWorker()`). The data plane knows nothing of its protocol.
   */
  workerUrl: URL;
  /**
   * The workers' name, for a module that starts more than one kind of worker
   * (main.ts tells a ublk queue worker from an NBD one by it). @default none
   */
  workerName?: string;
  /** Ranges of the main disk its device must see itself. @default none */
  leftToDevice?: LeftToDevice;
}

/** Request counters over all workers, for the status API. */
export interface DataPlaneCounters {
  reads: number;
  writes: number;
  bytesRead: number;
  bytesWritten: number;
  flushes: number;
}

/** One connection on its worker. */
export interface DataPlaneConnection {
  /** Resolves when the connection is over and its worker gone. */
  readonly done: Promise<ConnectionOutcome>;
  /** Ends reading requests; those in flight are answered, then the connection ends. */
  stop(): void;
  /** Cuts the connection now (handshake timeout, shutdown grace period over). */
  abort(): void;
}

/** Options of {@link DataPlane.serve}. */
export interface ServeOptions {
  /**
   * What the export's worker needs beyond the data path (NBD: the export,
   * the negotiated session, the bytes received behind the last option);
   * structured-cloneable, passed through unread.
   */
  transport: unknown;
  /** Bytes the connection received before it came here (its handshake), for the counters. @default 0 */
  receivedBytes?: number;
  /** One from {@link DataPlane.claimWorker}. @default the spare one, or a new one */
  worker?: Worker;
}

/** Pause after a handshake before the next worker starts, so a burst of connects (nbd-client -C 2) is served first. */
const WORKER_PREPARE_DELAY_MS = 200;

/** Serves connections on workers for one engine. */
export class DataPlane {
  readonly #options: DataPlaneOptions;
  readonly #connections = new Set<WorkerConnection>();
  /** Counters of connections that ended, so totals never go down. */
  readonly #retired: DataPlaneCounters = {
    reads: 0,
    writes: 0,
    bytesRead: 0,
    bytesWritten: 0,
    flushes: 0,
  };
  #retiredAnswered = 0;
  readonly #stopListening: () => void;
  /**
   * A worker started ahead of the next connection: starting one when a
   * handshake ends holds up the client's first request (qemu-img and
   * nbd-client connect per command). It is started only once the connections
   * before it are serving, so its start never competes with their first
   * requests (under emulation, compiling a worker takes seconds).
   */
  #ready: SpareWorker | undefined;
  #readyTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: DataPlaneOptions) {
    this.#options = options;
    this.#stopListening = options.engine.sharedState.onOpen(() => {
      for (const connection of this.#connections) connection.gateOpened();
    });
    this.#ready = this.#startWorker();
  }

  /** Requests answered by workers, ended connections included. */
  get answered(): number {
    let total = this.#retiredAnswered;
    for (const connection of this.#connections) total += connection.answered;
    return total;
  }

  /** Request counters over all workers, ended connections included. */
  counters(): DataPlaneCounters {
    const total = { ...this.#retired };
    for (const connection of this.#connections) addCounters(total, connection.counters);
    return total;
  }

  /**
   * Resolves once a started worker waits for the next connection: from then
   * on, a client's handshake does not wait for a worker's start.
   */
  async spareReady(): Promise<void> {
    this.#ready ??= this.#startWorker();
    await this.#ready.started;
  }

  /**
   * Takes a worker for a connection whose handshake is about to end, once it
   * has started: the client's first request then finds it serving, as when
   * the worker ran the handshake itself (a start takes seconds on a loaded
   * machine). Give it to {@link serve}, or terminate it.
   *
   * @throws {Error} When the worker cannot start (its module fails to load).
   */
  async claimWorker(): Promise<Worker> {
    const spare = this.#ready ?? this.#startWorker();
    this.#ready = undefined;
    try {
      await spare.started;
    } catch (error) {
      spare.worker.terminate();
      throw error;
    }
    return spare.worker;
  }

  /**
   * Serves a socket past its setup (for NBD, the handshake) on a worker: the
   * pre-negotiated entry. The socket may come from the server's own handshake
   * or from anywhere else that negotiated on it (a connection the kernel's NBD
   * client was given, say); it must block, and it is closed when the
   * connection is over.
   */
  serve(fd: number, options: ServeOptions): DataPlaneConnection {
    let spare: SpareWorker;
    if (options.worker === undefined) {
      spare = this.#ready ?? this.#startWorker();
      this.#ready = undefined;
    } else {
      spare = { worker: options.worker, started: Promise.resolve() };
    }
    const connection = new WorkerConnection(spare, fd, options, this.#options);
    this.#prepareNextWorker();
    this.#connections.add(connection);
    void connection.done.finally(() => {
      this.#connections.delete(connection);
      addCounters(this.#retired, connection.counters);
      this.#retiredAnswered += connection.answered;
    });
    return connection;
  }

  /**
   * One line per open connection: its phase, what its worker received and
   * answered, and what its socket holds unread. For a stall report: a request
   * the client counts as sent shows here as received, unread, or neither.
   */
  describeConnections(): string[] {
    return [...this.#connections].map((connection, index) => connection.describe(index + 1));
  }

  /**
   * Gives connections from now on the descriptor of a spare that joined the
   * setup while serving. Connections already running go without it: their
   * requests touching its slots, and their flushes, go to the engine.
   */
  addSpare(spare: SpareHandle): void {
    assert(this.#options.spares[spare.index] === undefined, "a spare joins once");
    this.#options.spares[spare.index] = spare;
  }

  /** Stops following the engine's gate; every connection must be over. */
  close(): void {
    assert(this.#connections.size === 0, "the data plane closes after its connections");
    this.#stopListening();
    clearTimeout(this.#readyTimer);
    this.#ready?.worker.terminate();
    this.#ready = undefined;
  }

  /** Starts the next connection's worker shortly, unless one is ready or coming. */
  #prepareNextWorker(): void {
    if (this.#ready !== undefined || this.#readyTimer !== undefined) return;
    this.#readyTimer = setTimeout(() => {
      this.#readyTimer = undefined;
      this.#ready ??= this.#startWorker();
    }, WORKER_PREPARE_DELAY_MS);
  }

  #startWorker(): SpareWorker {
    const worker = new Worker(this.#options.workerUrl, {
      type: "module",
      name: this.#options.workerName,
    });
    const started = new Promise<void>((resolve, reject) => {
      worker.onmessage = (event: MessageEvent<FromWorker>) => {
        if (event.data.type === "started") resolve();
      };
      worker.onerror = (event) => {
        event.preventDefault();
        reject(new Error(`A connection worker failed to start: ${event.message}`));
      };
    });
    // Only a claim waits for the start; a spare that fails is a failure when claimed.
    started.catch(() => {});
    return { worker, started };
  }
}

/** A worker for the next connection, and when it is running. */
interface SpareWorker {
  worker: Worker;
  started: Promise<void>;
}

function addCounters(total: DataPlaneCounters, counters: Float64Array): void {
  total.reads += counters[COUNTERS.READS]!;
  total.writes += counters[COUNTERS.WRITES]!;
  total.bytesRead += counters[COUNTERS.BYTES_READ]!;
  total.bytesWritten += counters[COUNTERS.BYTES_WRITTEN]!;
  total.flushes += counters[COUNTERS.FLUSHES]!;
}

class WorkerConnection implements DataPlaneConnection {
  readonly done: Promise<ConnectionOutcome>;
  readonly counters = new Float64Array(new SharedArrayBuffer(COUNTERS.WORDS * 8));
  readonly #fd: number;
  readonly #wakeFd: number;
  readonly #mailbox = new Int32Array(new SharedArrayBuffer(MAILBOX.WORDS * 4));
  readonly #worker: Worker;
  readonly #options: DataPlaneOptions;
  readonly #executor: DataExecutor;
  #ended = false;
  /** Whether the worker has started: an error before that fails this connection only. */
  #running = false;
  #finish!: (outcome: ConnectionOutcome) => void;
  #crash!: (error: Error) => void;

  constructor(spare: SpareWorker, fd: number, serve: ServeOptions, options: DataPlaneOptions) {
    this.#fd = fd;
    this.#options = options;
    this.#executor = new DataExecutor(options.engine);
    this.counters[COUNTERS.BYTES_RECEIVED] = serve.receivedBytes ?? 0;
    const wakeFd = createEventFd();
    if (wakeFd < 0) throw new Error(`Cannot create an eventfd: errno ${-wakeFd}`);
    this.#wakeFd = wakeFd;
    this.done = new Promise<ConnectionOutcome>((resolve, reject) => {
      this.#finish = resolve;
      this.#crash = reject;
    }).finally(() => this.#release());
    this.#worker = spare.worker;
    // A worker that cannot start (its module fails to load, say) is an operating condition,
    // not a bug: the connection fails, and whoever gave it (the kernel's attachment) goes on.
    // Before this connection took the worker over, its start was the spare's to report.
    spare.started.then(() => this.#running = true, (error: Error) => this.#failToStart(error));
    this.#worker.onmessage = (event: MessageEvent<FromWorker>) => {
      const message = event.data;
      switch (message.type) {
        case "started":
          this.#running = true;
          return;
        case "forward":
          for (const { id, request } of message.requests) void this.#answerForwarded(id, request);
          return;
        case "ended":
          this.#ended = true;
          return this.#finish(outcomeOf(message));
        case "crashed": {
          this.#ended = true;
          const error = new Error(`A connection worker failed: ${message.message}`);
          error.stack = message.stack;
          return this.#crash(error);
        }
      }
    };
    this.#worker.onerror = (event) => {
      event.preventDefault();
      if (!this.#running) {
        return this.#failToStart(
          new Error(`A connection worker failed to start: ${event.message}`),
        );
      }
      this.#ended = true;
      this.#crash(new Error(`A connection worker failed: ${event.message}`));
    };
    const setup: WorkerSetup = {
      connectionFd: fd,
      wakeFd,
      mailbox: this.#mailbox,
      counters: this.counters,
      transport: serve.transport,
      blockBytes: options.engine.blockBytes,
      main: options.main,
      spares: options.spares,
      state: options.engine.sharedState.buffers,
      leftToDevice: options.leftToDevice,
    };
    this.#worker.postMessage({ type: "setup", setup } satisfies ToWorker);
  }

  get answered(): number {
    return Atomics.load(this.#mailbox, MAILBOX.ANSWERED);
  }

  describe(serial: number): string {
    const counters = this.counters;
    return `worker connection ${serial} (fd ${this.#fd}): ` +
      `${counters[COUNTERS.BYTES_RECEIVED]} bytes and ` +
      `${counters[COUNTERS.REQUESTS_RECEIVED]} requests received, ${this.answered} answered, ` +
      `${unreadBytes(this.#fd)} bytes unread in the socket, ` +
      `${
        unconsumedSentBytes(this.#fd)
      } bytes of socket memory hold replies the client has not read, ` +
      `${Atomics.load(this.#mailbox, MAILBOX.POSTED)} messages posted to the worker`;
  }

  stop(): void {
    Atomics.store(this.#mailbox, MAILBOX.STOP, 1);
    shutdownSocket(this.#fd, SHUT_RD);
    // A worker that waits on no socket (a ublk queue) learns of the stop here.
    signalEventFd(this.#wakeFd);
  }

  abort(): void {
    shutdownSocket(this.#fd, SHUT_RDWR);
  }

  gateOpened(): void {
    this.#send({ type: "gate-open", state: this.#options.engine.sharedState.buffers });
  }

  async #answerForwarded(id: number, request: DataRequest): Promise<void> {
    const result = await this.#executor.execute(request).catch((error) => {
      this.#crash(error);
      return undefined;
    });
    if (result) this.#send({ type: "result", id, result });
  }

  #failToStart(error: Error): void {
    this.#ended = true;
    this.#finish({ end: "failed", error });
  }

  #send(message: ToWorker): void {
    if (this.#ended) return;
    this.#worker.postMessage(message);
    Atomics.add(this.#mailbox, MAILBOX.POSTED, 1);
    signalEventFd(this.#wakeFd);
  }

  #release(): void {
    this.#ended = true;
    closeDescriptor(this.#fd);
    closeDescriptor(this.#wakeFd);
    this.#worker.terminate();
  }
}

function outcomeOf(message: Extract<FromWorker, { type: "ended" }>): ConnectionOutcome {
  if (message.error) {
    const error = new Error(message.error.message);
    error.name = message.error.name;
    return { end: "failed", error };
  }
  return { end: message.end } as ConnectionOutcome;
}

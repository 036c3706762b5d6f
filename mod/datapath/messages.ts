/**
 * What the engine's thread and a connection worker say to each other.
 *
 * Every message to a worker is followed by a count in its mailbox and a
 * signal on its eventfd: the worker waits in poll(), not in its event loop,
 * so the count tells it how many messages to take before going on.
 *
 * The messages are transport-neutral: requests travel to the engine as
 * {@link DataRequest}s and come back as {@link DataResult}s; what an export
 * needs on its worker (NBD: the export on offer) rides along opaquely in
 * {@link WorkerSetup.transport}.
 *
 * @module
 */

import type { DataRequest, DataResult } from "./data_request.ts";
import type { SpareLayout } from "../metadata/spare_layout.ts";
import type { SharedEngineBuffers } from "../remap/shared_state.ts";
import type { LeftToDevice } from "../device/device.ts";

/** A disk as the worker reaches it: an open descriptor of this process. */
export interface DiskHandle {
  fd: number;
  /** Opened with O_DIRECT: buffers must be aligned (else the request goes to the engine). */
  direct: boolean;
}

/** A spare's descriptor and where its regions are (its slots among them). */
export interface SpareHandle extends DiskHandle {
  /** The spare's index in the setup. */
  index: number;
  layout: SpareLayout;
}

/** Words of a worker's mailbox (an `Int32Array` over shared memory). */
export const MAILBOX = {
  /** Messages posted to the worker so far. */
  POSTED: 0,
  /** Set when the server shuts down: end after the requests in flight. */
  STOP: 1,
  /** Replies the worker has sent (for the status counters). */
  ANSWERED: 2,
  WORDS: 4,
} as const;

/** Words of a worker's counters (a `Float64Array` over shared memory, written only by the worker). */
export const COUNTERS = {
  READS: 0,
  WRITES: 1,
  BYTES_READ: 2,
  BYTES_WRITTEN: 3,
  FLUSHES: 4,
  /** Bytes received from the client, handshake included. */
  BYTES_RECEIVED: 5,
  /** Request headers taken from the input (the client's requests as the worker saw them). */
  REQUESTS_RECEIVED: 6,
  WORDS: 7,
} as const;

/** Everything a worker needs to serve one connection. */
export interface WorkerSetup {
  /** The socket, past its handshake; it blocks. */
  connectionFd: number;
  /** Signalled after each message to the worker. */
  wakeFd: number;
  mailbox: Int32Array;
  counters: Float64Array;
  /**
   * What the export's worker needs beyond the data path (NBD: the export on
   * offer); the data plane passes it through without looking.
   */
  transport: unknown;
  blockBytes: number;
  main: DiskHandle;
  /** By spare index. */
  spares: SpareHandle[];
  state: SharedEngineBuffers;
  /** What the main disk's device must see itself: requests touching it are forwarded. */
  leftToDevice: LeftToDevice | undefined;
}

/** From the engine's thread to a worker. */
export type ToWorker =
  | { type: "setup"; setup: WorkerSetup }
  /** The result of a forwarded request. */
  | { type: "result"; id: number; result: DataResult }
  /** The gate reopened; the table arrays may be new. */
  | { type: "gate-open"; state: SharedEngineBuffers };

/** A request handed to the engine; `id` pairs it with its result. */
export interface ForwardedRequest {
  id: number;
  request: DataRequest;
}

/** From a worker to the engine's thread. */
export type FromWorker =
  /** The worker runs and waits for its setup. */
  | { type: "started" }
  /** Requests the worker does not serve itself (an error, a pending block, a trim, ...). */
  | { type: "forward"; requests: ForwardedRequest[] }
  /** The connection is over; `error` when it failed. */
  | { type: "ended"; end: string; error?: { name: string; message: string } }
  /** A programmer error: the process must die. */
  | { type: "crashed"; message: string; stack: string };

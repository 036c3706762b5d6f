/**
 * NBD server for dm-remap: exports one `Device` to NBD clients (qemu, libnbd
 * tools, fio, the kernel's nbd-client) over a Unix socket and/or TCP.
 *
 * - {@link serveNbd} listens and serves; most callers need nothing else.
 * - {@link serveConnection} serves one connection over an abstract
 *   {@link ByteStream}; {@link runHandshake} and {@link serveTransmission} are
 *   its two phases. Tests and fuzzers drive these with in-memory bytes.
 * - `protocol.ts` holds the wire constants and the error table
 *   ({@link nbdErrnoOf}).
 * - `commands.ts` turns NBD commands into the data path's neutral requests
 *   (`datapath/data_request.ts`) and their results into NBD replies; the
 *   event-loop connections run them through `RequestExecutor`
 *   (`transmission.ts`), which is the data path's `DataExecutor` plus NBD
 *   validation and framing.
 * - `connection_worker.ts` is the NBD side of a connection on a worker
 *   thread (the data plane, `datapath/data_plane.ts`): the handshake entry
 *   (`serveWorkerConnection`), request parsing, payload receive, reply
 *   framing and the socket poll loop; the disk I/O, the remap gate and
 *   forwarding to the engine are the transport-neutral `datapath/data_path.ts`.
 *   `worker_entry.ts` is the worker module tests start.
 *
 * What is implemented, the limits and the error mapping are described in
 * `docs/protocol.md`.
 *
 * @example Export a memory device and stop again
 * ```ts
 * import { MemoryDevice } from "../../device/memory_device.ts";
 * import { serveNbd } from "./mod.ts";
 * const server = await serveNbd({
 *   device: new MemoryDevice("mem0", 64 * 1024 * 1024),
 *   exportName: "mem0",
 *   preferredBlockBytes: 4096,
 *   tcp: { hostname: "127.0.0.1", port: 0 },
 * });
 * console.log(`nbd://127.0.0.1:${server.tcpPort}/mem0`);
 * await server.close();
 * ```
 *
 * @module
 */

export { type NbdServer, type NbdServerOptions, serveNbd } from "./server.ts";
export {
  type ConnectionOptions,
  type ConnectionOutcome,
  isConnectionFailure,
  serveConnection,
} from "./connection.ts";
export {
  BASE_ALLOCATION_CONTEXT_ID,
  exportProblem,
  type HandshakeOptions,
  type HandshakeResult,
  type NbdExport,
  type NbdSession,
  runHandshake,
  transmissionFlagsOf,
} from "./handshake.ts";
export {
  NBD_INFLIGHT_BYTES_MAX,
  type RequestContext,
  type RequestProblem,
  serveTransmission,
  type TransmissionEnd,
  type TransmissionOptions,
  validateRequest,
} from "./transmission.ts";
export {
  type ByteReader,
  type ByteStream,
  type ByteWriter,
  ConnByteStream,
  StreamEndedError,
} from "./byte_stream.ts";
export { nbdErrnoOf, NbdProtocolError, type RequestHeader } from "./protocol.ts";
// The interface every export is served from, so the types above are complete for readers of this module.
export type { ByteRange, Device, WriteOptions, WriteZeroesOptions } from "../../device/device.ts";

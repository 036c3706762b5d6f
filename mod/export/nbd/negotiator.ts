/**
 * NBD handshakes on raw sockets, on the event loop, before a connection is
 * given a worker.
 *
 * Why: a worker per accepted socket let any client that connects and then
 * hangs up, stalls or sends garbage cost the process a thread start (under
 * load, seconds of CPU for a burst), and honest clients queued behind them.
 * Here a handshake costs a few non-blocking calls and a place in one shared
 * poll ({@link socketReady}); only a connection that chose an export goes on
 * to a worker, through the data plane's pre-negotiated entry, with the
 * {@link NegotiatedConnection} this returns. nbdkit answers at once too.
 *
 * The protocol itself is {@link runHandshake}, the same code the event-loop
 * server runs, over a {@link ConnByteStream} on a {@link PolledSocket}.
 *
 * @module
 */

import { PolledSocket } from "../../sys/polled_socket.ts";
import { ConnByteStream } from "./byte_stream.ts";
import {
  type HandshakeOptions,
  type NbdExport,
  type NbdSession,
  runHandshake,
} from "./handshake.ts";

/** A connection past its handshake, ready for transmission. */
export interface NegotiatedConnection {
  /** The export it serves. */
  export: NbdExport;
  /** What the handshake agreed on. */
  session: NbdSession;
  /**
   * Bytes the client sent behind its last option, read together with it:
   * transmission starts from these before reading the socket.
   */
  received: Uint8Array;
  /** Bytes received from the client so far, `received` included (for the counters). */
  receivedBytes: number;
}

/**
 * Runs the server side of the handshake on a socket.
 *
 * @param fd An accepted socket; the caller closes it when this fails or the client aborts.
 *   To give up on a client (a deadline, shutdown), shut the socket down: this then fails.
 * @param options The export on offer; what to await before the last reply.
 * @returns The connection past its handshake, or "aborted" after NBD_OPT_ABORT.
 * @throws {NbdProtocolError} When the client breaks the protocol.
 * @throws {StreamEndedError} When the client goes away (or the socket was shut down).
 *
 * @example
 * ```ts ignore
 * const negotiated = await negotiateSocket(fd, { export: exported });
 * if (negotiated !== "aborted") {
 *   dataPlane.serve(fd, { transport: negotiated, receivedBytes: negotiated.receivedBytes });
 * }
 * ```
 */
export async function negotiateSocket(
  fd: number,
  options: HandshakeOptions,
): Promise<NegotiatedConnection | "aborted"> {
  const socket = new PolledSocket(fd);
  const stream = new ConnByteStream(socket);
  const result = await runHandshake(stream, options);
  if (result.kind === "aborted") return "aborted";
  return {
    export: options.export,
    session: result.session,
    received: stream.takeBuffered(),
    receivedBytes: socket.receivedBytes,
  };
}

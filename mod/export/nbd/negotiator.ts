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

import { ERRNO } from "../../sys/libc.ts";
import { socketReady } from "../../sys/socket_poller.ts";
import {
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  POLLIN,
  POLLOUT,
  receive,
  sendBytes,
} from "../../sys/syscalls.ts";
import { ConnByteStream, type ConnLike } from "./byte_stream.ts";
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
 * A socket (an open descriptor) read and written without blocking: calls
 * that would block wait in the shared poll instead, so the event loop goes on.
 *
 * The socket stays blocking for whoever takes it over: every call here asks
 * for MSG_DONTWAIT itself.
 */
export class PolledSocket implements ConnLike {
  readonly #fd: number;
  #receivedBytes = 0;

  /**
   * Wraps a socket.
   *
   * @param fd The socket; the caller keeps it and closes it, never while a call here waits.
   */
  constructor(fd: number) {
    this.#fd = fd;
  }

  /** Bytes received so far. */
  get receivedBytes(): number {
    return this.#receivedBytes;
  }

  /**
   * Reads what the socket holds, waiting for something if it holds nothing.
   *
   * @returns The count read, or null at the end of the stream.
   * @throws {Deno.errors.ConnectionReset} When the socket failed.
   */
  async read(buffer: Uint8Array): Promise<number | null> {
    for (;;) {
      const count = receive(this.#fd, buffer, MSG_DONTWAIT);
      if (count >= 0) {
        this.#receivedBytes += count;
        return count === 0 ? null : count;
      }
      if (count !== -ERRNO.EAGAIN) throw connectionError("receive on", -count);
      await socketReady(this.#fd, POLLIN);
    }
  }

  /**
   * Writes what the socket takes, waiting for room if it takes nothing.
   *
   * @returns The count written (at least 1).
   * @throws {Deno.errors.ConnectionReset} When the peer is gone.
   */
  async write(data: Uint8Array): Promise<number> {
    for (;;) {
      const count = sendBytes(this.#fd, data, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (count > 0 || data.length === 0) return count;
      if (count !== -ERRNO.EAGAIN) throw connectionError("send on", -count);
      await socketReady(this.#fd, POLLOUT);
    }
  }
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

function connectionError(what: string, errno: number): Error {
  return new Deno.errors.ConnectionReset(`Cannot ${what} the connection: errno ${errno}`);
}

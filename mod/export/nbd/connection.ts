/**
 * One NBD connection from greeting to close, over a {@link ByteStream}.
 *
 * This is what the server runs per accepted socket, kept off sockets so a
 * fuzzer can drive exactly the same path with in-memory bytes. It sorts every
 * way a connection can end into an outcome, and lets only programmer errors
 * escape: a hostile or broken client can end its own connection, never the
 * server.
 *
 * @module
 */

import type { Device } from "../../device/device.ts";
import { type ByteStream, StreamEndedError } from "./byte_stream.ts";
import { type NbdExport, runHandshake } from "./handshake.ts";
import { NbdProtocolError } from "./protocol.ts";
import { serveTransmission, type TransmissionEnd } from "./transmission.ts";

/** Options for {@link serveConnection}. */
export interface ConnectionOptions {
  /** The export on offer. */
  export: NbdExport;
  /** The device behind it; shared by all connections. */
  device: Device;
  /** Aborting it ends the connection after the requests in flight. @default never */
  stopSignal?: AbortSignal;
  /** Called once the handshake is over and transmission starts. @default none */
  onTransmission?: () => void;
  /** Called after each reply is written. @default none */
  onReply?: () => void;
}

/** How a connection ended. */
export type ConnectionOutcome =
  /** The client sent NBD_OPT_ABORT during the handshake. */
  | { end: "aborted" }
  /** Transmission ended normally (NBD_CMD_DISC, hang-up between requests, or shutdown). */
  | { end: TransmissionEnd }
  /** The client broke the protocol or the connection failed; `error` says how. */
  | { end: "failed"; error: Error };

/**
 * Serves one connection: handshake, then transmission.
 *
 * @param stream The connection; the caller closes it afterwards.
 * @param options Export, device and stop signal.
 * @returns How it ended; client and connection failures are outcomes, not exceptions.
 * @throws {unknown} Programmer errors only (e.g. `AssertionError` from the device).
 *
 * @example
 * ```ts ignore
 * const outcome = await serveConnection(new ConnByteStream(conn), { export: exported, device });
 * if (outcome.end === "failed") console.error(outcome.error.message);
 * conn.close();
 * ```
 */
export async function serveConnection(
  stream: ByteStream,
  options: ConnectionOptions,
): Promise<ConnectionOutcome> {
  try {
    const result = await runHandshake(stream, { export: options.export });
    if (result.kind === "aborted") return { end: "aborted" };
    if (options.stopSignal?.aborted) return { end: "stopped" };
    options.onTransmission?.();
    const end = await serveTransmission(stream, {
      device: options.device,
      session: result.session,
      stopSignal: options.stopSignal,
      onReply: options.onReply,
    });
    return { end };
  } catch (error) {
    if (!isConnectionFailure(error)) throw error;
    return { end: "failed", error };
  }
}

/**
 * Whether an error only means this connection is over: the client broke the
 * protocol, hung up, or the socket failed. Everything else is a bug.
 *
 * @param error What was thrown.
 * @returns True for client and connection failures.
 */
export function isConnectionFailure(error: unknown): error is Error {
  return error instanceof NbdProtocolError || error instanceof StreamEndedError ||
    error instanceof Deno.errors.BrokenPipe || error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted || error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted || error instanceof Deno.errors.UnexpectedEof ||
    error instanceof Deno.errors.TimedOut || error instanceof Deno.errors.NotConnected;
}

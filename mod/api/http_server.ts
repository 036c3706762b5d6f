/**
 * Serves the status API on a Unix socket, a TCP address, or both.
 *
 * Its single job is listening: the routes are in `app.ts`. Config keys:
 * `unixPath` (a socket file, replaced if stale, removed on close) and
 * `tcp.hostname`/`tcp.port` (loopback unless told otherwise; port 0 picks a
 * free port and {@link ApiServer.addresses} reports it).
 *
 * A socket file is only replaced when nothing answers on it: a live socket
 * means another `dm-remap serve` owns it, and a path that is not a socket is
 * someone's file. Both are refused with {@link ApiListenError}.
 *
 * @module
 */

import type { Hono } from "hono";
import { ListenError, UsageError } from "../errors.ts";
import { listenProblemOf, removeStaleSocket } from "../sys/unix_socket.ts";
import type { ApiEnv } from "./_env.ts";

/** Where to listen; at least one of the two. */
export interface ServeApiOptions {
  /** A Unix socket path. @default undefined (no socket) */
  unixPath?: string;
  /** A TCP address. @default undefined (no TCP) */
  tcp?: {
    /** The interface to bind. @default "127.0.0.1" */
    hostname?: string;
    /** The port; 0 lets the system pick one. */
    port: number;
  };
}

/** An address the API listens on. */
export type ApiAddress =
  | { transport: "unix"; path: string }
  | { transport: "tcp"; hostname: string; port: number; url: string };

/** A running API server. */
export interface ApiServer {
  /** The bound addresses: the socket first, then TCP with the real port. */
  addresses: ApiAddress[];
  /** Stops listening, waits for answers in progress, and removes the socket file. */
  close(): Promise<void>;
}

/** Listening on an address failed: in use, no permission, or not ours to replace. */
export class ApiListenError extends ListenError {
  override name = "ApiListenError";
  constructor(address: string, detail: string, cause?: unknown) {
    super("the status API", address, detail, cause);
  }
}

/** The default TCP interface: loopback, since the API has no authentication. */
export const API_TCP_HOSTNAME_DEFAULT = "127.0.0.1";

/**
 * Serves `app` on the given addresses.
 *
 * @param app The API, from `createApp()`.
 * @param options Where to listen.
 * @returns The bound addresses and `close()`.
 * @throws {UsageError} When neither `unixPath` nor `tcp` is given.
 * @throws {ApiListenError} When an address cannot be bound; nothing is left listening.
 *
 * @example Serving on a free loopback port
 * ```ts
 * import { createApp, serveApi } from "./mod.ts";
 * import type { StatusSource } from "./mod.ts";
 *
 * const source: StatusSource = {
 *   status() {
 *     throw new Error("this example only lists remaps");
 *   },
 *   remaps() {
 *     return { total: 0, entries: [] };
 *   },
 *   events: () => [],
 * };
 * const server = await serveApi(createApp(source), { tcp: { port: 0 } });
 * try {
 *   const address = server.addresses[0]!;
 *   if (address.transport === "tcp") {
 *     const response = await fetch(`${address.url}/api/v1/remaps`);
 *     console.log(await response.json()); // { total: 0, entries: [] }
 *   }
 * } finally {
 *   await server.close();
 * }
 * ```
 */
export async function serveApi(app: Hono<ApiEnv>, options: ServeApiOptions): Promise<ApiServer> {
  if (options.unixPath === undefined && options.tcp === undefined) {
    throw new UsageError(
      "Cannot serve the status API: give a Unix socket path, a TCP address, or both",
    );
  }
  const servers: Deno.HttpServer[] = [];
  const addresses: ApiAddress[] = [];
  // Set once our server owns the socket file, so a refused path is never removed.
  let socketPath: string | undefined;
  try {
    if (options.unixPath !== undefined) {
      const path = options.unixPath;
      await removeStaleSocket(path).catch((error) => {
        throw new ApiListenError(path, listenProblemOf(error), error);
      });
      servers.push(
        listen(path, () => Deno.serve({ transport: "unix", path, onListen: quiet }, app.fetch)),
      );
      socketPath = path;
      addresses.push({ transport: "unix", path });
    }
    if (options.tcp !== undefined) {
      const hostname = options.tcp.hostname ?? API_TCP_HOSTNAME_DEFAULT;
      const port = options.tcp.port;
      const server = listen(
        `${hostname}:${port}`,
        () => Deno.serve({ hostname, port, onListen: quiet }, app.fetch),
      );
      servers.push(server);
      addresses.push(tcpAddress(server.addr as Deno.NetAddr));
    }
  } catch (error) {
    await closeAll(servers, socketPath);
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    addresses,
    close(): Promise<void> {
      closing ??= closeAll(servers, socketPath);
      return closing;
    },
  };
}

/** Deno.serve logs "Listening on …" by default; only the CLI prints. */
function quiet(): void {}

function listen(address: string, start: () => Deno.HttpServer): Deno.HttpServer {
  try {
    return start();
  } catch (error) {
    throw new ApiListenError(address, listenProblemOf(error), error);
  }
}

function tcpAddress(addr: Deno.NetAddr): ApiAddress {
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return {
    transport: "tcp",
    hostname: addr.hostname,
    port: addr.port,
    url: `http://${host}:${addr.port}`,
  };
}

async function closeAll(
  servers: readonly Deno.HttpServer[],
  socketPath: string | undefined,
): Promise<void> {
  await Promise.all(servers.map((server) => server.shutdown()));
  if (socketPath === undefined) return;
  // Deno 2.9 removes the socket on shutdown; removing it here keeps the promise if that changes.
  try {
    await Deno.remove(socketPath);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

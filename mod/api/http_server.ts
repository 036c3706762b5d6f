/**
 * Serves the status API on a Unix socket, a TCP address, or both.
 *
 * Its single job is listening: the routes are in `app.ts`. Config keys:
 * `unixPath` (a socket file, replaced if stale, removed on close, mode 0660,
 * group `socketGid`), served by `unix_http_server.ts` so the app learns the
 * peer's credentials; and `tcp.hostname`/`tcp.port` (loopback unless told
 * otherwise; port 0 picks a free port and {@link ApiServer.addresses}
 * reports it), served by `Deno.serve`. A TCP address other than loopback is
 * refused unless `tokenConfigured`: there, only the token guards mutations.
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
import { UnixHttpServer } from "./unix_http_server.ts";

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
  /** The group the socket file belongs to, so its members can connect. @default the process's */
  socketGid?: number;
  /**
   * Whether the app requires a bearer token for mutations; a TCP address
   * other than loopback is refused without one. @default false
   */
  tokenConfigured?: boolean;
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

/** The default TCP interface: loopback, so the API stays on the machine. */
export const API_TCP_HOSTNAME_DEFAULT = "127.0.0.1";

/** The socket file's mode: owner (root) and group may connect, others may not. */
export const API_SOCKET_MODE = 0o660;

/**
 * Serves `app` on the given addresses.
 *
 * @param app The API, from `createApp()`.
 * @param options Where to listen.
 * @returns The bound addresses and `close()`.
 * @throws {UsageError} When neither `unixPath` nor `tcp` is given, or TCP is not loopback and no
 *   token is configured.
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
  if (options.tcp !== undefined && options.tokenConfigured !== true) {
    refuseOpenAddress(options.tcp.hostname ?? API_TCP_HOSTNAME_DEFAULT, options.tcp.port);
  }
  const servers: Closable[] = [];
  const addresses: ApiAddress[] = [];
  // Set once our server owns the socket file, so a refused path is never removed.
  let socketPath: string | undefined;
  try {
    if (options.unixPath !== undefined) {
      const path = options.unixPath;
      await removeStaleSocket(path).catch((error) => {
        throw new ApiListenError(path, listenProblemOf(error), error);
      });
      const server = listen(
        path,
        () => UnixHttpServer.listen(path, (request, env) => app.fetch(request, env)),
      );
      servers.push({ close: () => server.close() });
      socketPath = path;
      await restrictSocket(path, options.socketGid);
      addresses.push({ transport: "unix", path });
    }
    if (options.tcp !== undefined) {
      const hostname = options.tcp.hostname ?? API_TCP_HOSTNAME_DEFAULT;
      const port = options.tcp.port;
      const server = listen(
        `${hostname}:${port}`,
        () => Deno.serve({ hostname, port, onListen: quiet }, app.fetch),
      );
      servers.push({ close: () => server.shutdown() });
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

/** A listener of either kind, as {@link closeAll} stops it. */
interface Closable {
  close(): Promise<void>;
}

/**
 * Refuses a TCP address beyond loopback when no token guards mutations.
 *
 * @throws {UsageError} Naming the address and the two ways out.
 */
function refuseOpenAddress(hostname: string, port: number): void {
  if (isLoopback(hostname)) return;
  throw new UsageError(
    `Cannot serve the status API on "${hostname}:${port}" without a token: anyone who reaches ` +
      `that address could change the setup; set the API token (api.token), or bind 127.0.0.1`,
  );
}

/** 127.0.0.0/8, ::1 and localhost stay on the machine. */
function isLoopback(hostname: string): boolean {
  const bare = hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return bare === "localhost" || bare === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare) ||
    /^::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare);
}

/** Gives the socket file mode 0660 and, when given, the group whose members may connect. */
async function restrictSocket(path: string, gid: number | undefined): Promise<void> {
  try {
    if (gid !== undefined) await Deno.chown(path, null, gid);
    await Deno.chmod(path, API_SOCKET_MODE);
  } catch (error) {
    throw new ApiListenError(
      path,
      `cannot give the socket mode 0660` + (gid === undefined ? "" : ` and group ${gid}`) +
        `: ${(error as Error).message}`,
      error,
    );
  }
}

function listen<T>(address: string, start: () => T): T {
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
  servers: readonly Closable[],
  socketPath: string | undefined,
): Promise<void> {
  await Promise.all(servers.map((server) => server.close()));
  if (socketPath === undefined) return;
  // The socket file outlives the listening socket: remove it, so the next start finds no stale file.
  try {
    await Deno.remove(socketPath);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/**
 * The NBD server: listens on a Unix socket and/or TCP and serves one export.
 *
 * Every connection runs {@link serveConnection} (handshake, then transmission)
 * over a {@link ConnByteStream}; all of them share one `Device`, whose flush
 * covers every completed write, which is what NBD_FLAG_CAN_MULTI_CONN promises.
 * A client that breaks the protocol, stalls in the handshake or goes away ends
 * only its own connection, with one log line. A programmer error (anything
 * that is not a client or connection failure) is rethrown from the connection
 * task, so it surfaces as an unhandled rejection and the process dies, to be
 * restarted by systemd from durable state.
 *
 * With a {@link DataPlane}, connections on the Unix socket are served on
 * worker threads instead (see `mod/datapath/`): the socket is then made with
 * libc, since a `Deno.Conn` cannot move to a worker. Such a connection
 * negotiates on the event loop first ({@link negotiateSocket}) and gets its
 * worker only once it chose the export: clients that connect and hang up,
 * stall or send garbage cost no thread, so they cannot keep an honest client
 * waiting. TCP connections are always served on the event loop.
 *
 * Admission is bounded the same way on every listener: at most
 * NBD_CONNECTIONS_MAX connections, those still negotiating included (more are
 * refused at once), and each handshake within `handshakeTimeoutMs`.
 *
 * Shutdown ({@link NbdServer.close}) stops accepting, closes connections still
 * in the handshake, lets requests in flight finish and their replies be sent,
 * then closes the rest. Flushing and closing the device is the caller's job.
 *
 * @module
 */

import { assert, AssertionError } from "../../assert.ts";
import { NBD_CONNECTIONS_MAX } from "../../constants.ts";
import type { Device } from "../../device/device.ts";
import { errnoInWords, ListenError, UsageError } from "../../errors.ts";
import { ConnByteStream } from "./byte_stream.ts";
import { serveConnection } from "./connection.ts";
import { listenProblemOf, removeSocketFile, removeStaleSocket } from "../../sys/unix_socket.ts";
import { exportProblem, type NbdExport } from "./handshake.ts";
import type { DataPlane, DataPlaneConnection } from "../../datapath/data_plane.ts";
import { ERRNO } from "../../sys/libc.ts";
import { socketReady } from "../../sys/socket_poller.ts";
import {
  acceptQueued,
  closeDescriptor,
  listenUnix,
  POLLIN,
  SHUT_RDWR,
  shutdownSocket,
} from "../../sys/syscalls.ts";
import { isConnectionFailure } from "./connection.ts";
import { negotiateSocket } from "./negotiator.ts";
import { prepareWorkerSocket } from "./connection_worker.ts";
import { NBD_CLOSE_TIMEOUT_MS_DEFAULT, NBD_HANDSHAKE_TIMEOUT_MS_DEFAULT } from "../../constants.ts";
export { NBD_CLOSE_TIMEOUT_MS_DEFAULT, NBD_HANDSHAKE_TIMEOUT_MS_DEFAULT };

/** Options for {@link serveNbd}. */
export interface NbdServerOptions {
  /** The device to export; shared by every connection. The server never closes it. */
  device: Device;
  /** The export name; clients may also use the empty (default) name. */
  exportName: string;
  /** Shown by clients (NBD_INFO_DESCRIPTION, NBD_OPT_LIST). @default none */
  description?: string;
  /** Advertised preferred block size: a power of two from 512 to NBD_REQUEST_BYTES_MAX. */
  preferredBlockBytes: number;
  /** Unix socket path to listen on. A stale socket file is replaced; a live one is an error. @default none */
  unixPath?: string;
  /** TCP address to listen on; port 0 picks a free port (see {@link NbdServer.tcpPort}). @default none */
  tcp?: { hostname?: string; port: number };
  /** Receives one line per notable event (a connection refused or ended by an error). @default ignore */
  log?: (line: string) => void;
  /** A connection that has not finished its handshake after this long is closed. @default 30000 */
  handshakeTimeoutMs?: number;
  /** At {@link NbdServer.close}, connections whose replies are still unsent after this long are closed. @default 10000 */
  closeTimeoutMs?: number;
  /** Serves Unix-socket connections on worker threads; `device` must be its engine. @default event loop */
  dataPlane?: DataPlane;
}

/** A running server. */
export interface NbdServer {
  /** The Unix socket path, if listening on one. */
  readonly unixPath: string | undefined;
  /** The bound TCP hostname, if listening on TCP. */
  readonly tcpHostname: string | undefined;
  /** The bound TCP port (the real one when port 0 was asked), if listening on TCP. */
  readonly tcpPort: number | undefined;
  /** Connections open now. */
  readonly connectionCount: number;
  /** Requests answered since start, over all connections. */
  readonly requestCount: number;
  /**
   * Stops accepting, lets requests in flight finish and be answered (within
   * `closeTimeoutMs`), closes every connection and removes the Unix socket.
   * Idempotent. The device is left open for the caller to flush and close.
   */
  close(): Promise<void>;
}

/** Pause before accepting again after accept failed (e.g. out of file descriptors). */
const ACCEPT_RETRY_MS = 100;
/** Default TCP hostname: loopback only, since the protocol has no authentication here. */
export const NBD_TCP_HOSTNAME_DEFAULT = "127.0.0.1";

/**
 * Starts serving a device over NBD.
 *
 * @param options Device, export, addresses and log.
 * @returns The running server.
 * @throws {UsageError} When no address is given or the export is not servable.
 * @throws {Deno.errors.AddrInUse} When a live server already owns the Unix socket or the TCP port.
 *
 * @example Serving a memory device on a Unix socket
 * ```ts
 * import { MemoryDevice } from "../../device/memory_device.ts";
 * import { serveNbd } from "./server.ts";
 * const dir = await Deno.makeTempDir();
 * const unixPath = `${dir}/nbd.sock`;
 * const server = await serveNbd({
 *   device: new MemoryDevice("mem0", 1 << 20),
 *   exportName: "mem0",
 *   preferredBlockBytes: 4096,
 *   unixPath,
 * });
 * // qemu-io -f raw "nbd+unix:///mem0?socket=$unixPath" -c "read 0 4k"
 * await server.close(); // The socket file is gone again.
 * await Deno.remove(dir);
 * ```
 */
export async function serveNbd(options: NbdServerOptions): Promise<NbdServer> {
  const exported: NbdExport = {
    name: options.exportName,
    description: options.description,
    sizeBytes: options.device.sizeBytes,
    preferredBlockBytes: options.preferredBlockBytes,
  };
  const problem = exportProblem(exported);
  if (problem !== undefined) {
    throw new UsageError(`Cannot serve "${options.device.name}" over NBD: ${problem}`);
  }
  if (options.unixPath === undefined && options.tcp === undefined) {
    throw new UsageError("Cannot serve over NBD: give a Unix socket path, a TCP address, or both");
  }
  const listeners: Deno.Listener[] = [];
  let unixFd: number | undefined;
  try {
    if (options.unixPath !== undefined) {
      const path = options.unixPath;
      await claimAddress(path, async () => {
        await removeStaleSocket(path);
        if (options.dataPlane) unixFd = listenDataPlane(path);
        else listeners.push(Deno.listen({ transport: "unix", path }));
      });
    }
    if (options.tcp !== undefined) {
      const hostname = options.tcp.hostname ?? NBD_TCP_HOSTNAME_DEFAULT;
      const port = options.tcp.port;
      await claimAddress(`${hostname}:${port}`, () => {
        listeners.push(Deno.listen({ transport: "tcp", hostname, port }));
      });
    }
  } catch (error) {
    for (const listener of listeners) listener.close();
    if (unixFd !== undefined) closeDescriptor(unixFd);
    if ((listeners.length > 0 || unixFd !== undefined) && options.unixPath !== undefined) {
      await removeSocketFile(options.unixPath);
    }
    throw error;
  }
  return new Server(listeners, unixFd, exported, options);
}

/**
 * Backlog of the data plane's listening socket: deep, so a burst of connects
 * waits to be accepted instead of being refused (the kernel caps it at
 * net.core.somaxconn).
 */
const LISTEN_BACKLOG = 4096;

function listenDataPlane(path: string): number {
  const fd = listenUnix(path, LISTEN_BACKLOG);
  if (fd === -98) throw new Deno.errors.AddrInUse(`Cannot listen on "${path}": address in use`);
  if (fd < 0) throw new Error(`Cannot listen on "${path}": ${errnoInWords(-fd)}`);
  return fd;
}

/** Runs one listening step; its failure becomes a {@link ListenError} naming the address. */
async function claimAddress(address: string, step: () => void | Promise<void>): Promise<void> {
  try {
    await step();
  } catch (error) {
    if (error instanceof AssertionError) throw error;
    throw new ListenError("NBD", address, listenProblemOf(error), error);
  }
}

interface Connection {
  label: string;
  /** True until the handshake is over: such connections are closed at shutdown. */
  readonly negotiating: boolean;
  /** Cuts the connection. */
  close(): void;
  /** Ends it after the requests in flight (the event-loop ones follow the server's stop signal). */
  stop?(): void;
}

interface EventLoopConnection extends Connection {
  conn: Deno.Conn;
  negotiating: boolean;
}

class Server implements NbdServer {
  readonly unixPath: string | undefined;
  readonly tcpHostname: string | undefined;
  readonly tcpPort: number | undefined;
  #listeners: Deno.Listener[];
  #unixFd: number | undefined;
  #dataPlane: DataPlane | undefined;
  #export: NbdExport;
  #device: Device;
  #log: (line: string) => void;
  #handshakeTimeoutMs: number;
  #closeTimeoutMs: number;
  #connections = new Set<Connection>();
  #tasks = new Set<Promise<void>>();
  #acceptLoops: Promise<void>[];
  #stop = new AbortController();
  #closing: Promise<void> | undefined;
  #requestCount = 0;
  #connectionSerial = 0;

  constructor(
    listeners: Deno.Listener[],
    unixFd: number | undefined,
    exported: NbdExport,
    options: NbdServerOptions,
  ) {
    this.#listeners = listeners;
    this.#unixFd = unixFd;
    this.#dataPlane = options.dataPlane;
    this.#export = exported;
    this.#device = options.device;
    this.#log = options.log ?? (() => {});
    this.#handshakeTimeoutMs = options.handshakeTimeoutMs ?? NBD_HANDSHAKE_TIMEOUT_MS_DEFAULT;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? NBD_CLOSE_TIMEOUT_MS_DEFAULT;
    this.unixPath = options.unixPath;
    const tcp = listeners.map((listener) => listener.addr).find((addr): addr is Deno.NetAddr =>
      addr.transport === "tcp"
    );
    this.tcpHostname = tcp?.hostname;
    this.tcpPort = tcp?.port;
    this.#acceptLoops = listeners.map((listener) => this.#accept(listener));
    if (unixFd !== undefined) this.#acceptLoops.push(this.#acceptDataPlane(unixFd));
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  get requestCount(): number {
    return this.#requestCount + (this.#dataPlane?.answered ?? 0);
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#stop.abort();
    for (const listener of this.#listeners) listener.close();
    // Wakes the accept loop waiting for a connection; the descriptor closes once it returned.
    if (this.#unixFd !== undefined) shutdownSocket(this.#unixFd, SHUT_RDWR);
    await Promise.all(this.#acceptLoops);
    if (this.#unixFd !== undefined) closeDescriptor(this.#unixFd);
    if (this.unixPath !== undefined) await removeSocketFile(this.unixPath);
    // Nothing is in flight during a handshake: those connections just close.
    for (const connection of this.#connections) {
      if (connection.negotiating) connection.close();
      else connection.stop?.();
    }
    // A client that stops reading its replies would hold shutdown forever:
    // after the grace period its connection is closed, and the replies dropped.
    const deadline = setTimeout(() => {
      for (const connection of this.#connections) {
        this.#log(
          `${connection.label}: replies not taken within ${this.#closeTimeoutMs} ms of shutdown, closing`,
        );
        connection.close();
      }
    }, this.#closeTimeoutMs);
    try {
      await Promise.all(this.#tasks);
    } finally {
      clearTimeout(deadline);
    }
    assert(this.#connections.size === 0, "every connection closed at shutdown");
    this.#dataPlane?.close();
  }

  /** Negotiates on the event loop, then hands the connection to a worker. */
  #trackWorker(fd: number): void {
    const label = `connection ${++this.#connectionSerial}`;
    prepareWorkerSocket(fd);
    let served: DataPlaneConnection | undefined;
    let cutByUs = false;
    // Shut down, not closed: the handshake may be waiting on the socket (see socketReady).
    const cut = () => {
      cutByUs = true;
      shutdownSocket(fd, SHUT_RDWR);
    };
    const connection: Connection = {
      label,
      get negotiating() {
        return served === undefined;
      },
      close: () => served ? served.abort() : cut(),
      stop: () => served?.stop(),
    };
    const deadline = setTimeout(() => {
      this.#log(`${label}: no export chosen within ${this.#handshakeTimeoutMs} ms, closing`);
      cut();
    }, this.#handshakeTimeoutMs);
    this.#connections.add(connection);
    let worker: Worker | undefined;
    let workerFailure: unknown;
    const task = (async () => {
      const negotiated = await negotiateSocket(fd, {
        export: this.#export,
        beforeTransmission: async () => {
          // The client chose the export: the deadline is for clients that stall, and a
          // worker's start (seconds on a loaded machine) is our time, not theirs.
          clearTimeout(deadline);
          try {
            worker = await this.#dataPlane!.claimWorker();
          } catch (error) {
            workerFailure = error;
            throw error;
          }
        },
      }).catch((error: unknown) => {
        // A worker that cannot start (its module fails to load; a working directory that is
        // gone) fails this connection only: the ones being served, and the next, go on.
        if (error === workerFailure) {
          this.#log(`${label}: closed before transmission: ${(error as Error).message}`);
          return "failed" as const;
        }
        if (!isConnectionFailure(error)) throw error;
        if (!cutByUs) this.#log(`${label}: connection ended: ${error.name}: ${error.message}`);
        return "failed" as const;
      });
      clearTimeout(deadline);
      if (typeof negotiated === "string" || this.#stop.signal.aborted) return worker?.terminate();
      served = this.#dataPlane!.serve(fd, {
        transport: negotiated,
        receivedBytes: negotiated.receivedBytes,
        worker,
      });
      const outcome = await served.done;
      if (outcome.end === "failed") {
        this.#log(`${label}: connection ended: ${outcome.error.name}: ${outcome.error.message}`);
      }
    })().finally(() => {
      clearTimeout(deadline);
      this.#connections.delete(connection);
      // Closed only now: until then, close() may still shut the socket down.
      if (served === undefined) closeDescriptor(fd);
      this.#tasks.delete(task);
    });
    this.#tasks.add(task);
  }

  /**
   * Accepts until shutdown and hands each connection to `track`. A failed
   * accept (out of file descriptors, say) is an operating condition, not a
   * reason to stop serving the connections we have: it is retried shortly.
   */
  async #acceptLoop<T>(socket: {
    /** The next connection, "failed" to retry, or "closed" when the listener is gone. */
    accept(): Promise<T | "failed" | "closed">;
    close(conn: T): void;
    track(conn: T): void;
  }): Promise<void> {
    while (!this.#stop.signal.aborted) {
      const conn = await socket.accept();
      if (conn === "closed") return;
      if (this.#stop.signal.aborted) {
        if (conn !== "failed") socket.close(conn);
        return;
      }
      if (conn === "failed") {
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
        continue;
      }
      if (this.#connections.size >= NBD_CONNECTIONS_MAX) {
        this.#log(`refused a connection: already serving ${NBD_CONNECTIONS_MAX}`);
        socket.close(conn);
        continue;
      }
      socket.track(conn);
    }
  }

  /** Accepts on a `Deno.Listener`; each connection is served on the event loop. */
  #accept(listener: Deno.Listener): Promise<void> {
    return this.#acceptLoop<Deno.Conn>({
      accept: async () => {
        try {
          return await listener.accept();
        } catch (error) {
          if (this.#stop.signal.aborted) return "closed";
          if (
            error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted
          ) {
            return "closed";
          }
          this.#log(`cannot accept a connection: ${(error as Error).message}`);
          return "failed";
        }
      },
      close: closeQuietly,
      track: (conn) => this.#track(conn),
    });
  }

  /** Accepts on the data plane's socket; each connection negotiates, then goes to a worker. */
  #acceptDataPlane(listenFd: number): Promise<void> {
    return this.#acceptLoop<number>({
      accept: async () => {
        for (;;) {
          const fd = acceptQueued(listenFd);
          if (fd >= 0) return fd;
          if (this.#stop.signal.aborted) return "closed";
          if (fd !== -ERRNO.EAGAIN) {
            this.#log(`cannot accept a connection: ${errnoInWords(-fd)}`);
            return "failed";
          }
          await socketReady(listenFd, POLLIN);
        }
      },
      close: closeDescriptor,
      track: (fd) => this.#trackWorker(fd),
    });
  }

  #track(conn: Deno.Conn): void {
    if (conn.remoteAddr.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
    const connection: EventLoopConnection = {
      conn,
      label: this.#labelOf(conn),
      negotiating: true,
      close: () => closeQuietly(conn),
    };
    this.#connections.add(connection);
    const task = this.#serve(connection).finally(() => {
      closeQuietly(conn);
      this.#connections.delete(connection);
      this.#tasks.delete(task);
    });
    this.#tasks.add(task);
  }

  /** Serves one connection; rejects only on programmer errors, which then crash the process. */
  async #serve(connection: EventLoopConnection): Promise<void> {
    const deadline = setTimeout(() => {
      if (!connection.negotiating) return;
      this.#log(
        `${connection.label}: no export chosen within ${this.#handshakeTimeoutMs} ms, closing`,
      );
      closeQuietly(connection.conn);
    }, this.#handshakeTimeoutMs);
    try {
      const outcome = await serveConnection(new ConnByteStream(connection.conn), {
        export: this.#export,
        device: this.#device,
        stopSignal: this.#stop.signal,
        onTransmission: () => {
          connection.negotiating = false;
          clearTimeout(deadline);
        },
        onReply: () => this.#requestCount++,
      });
      // Connections we closed ourselves (shutdown, deadline) fail with one of these: not worth a line.
      const closedByUs = outcome.end === "failed" &&
        (outcome.error instanceof Deno.errors.BadResource ||
          outcome.error instanceof Deno.errors.Interrupted);
      if (outcome.end === "failed" && !closedByUs) {
        this.#log(
          `${connection.label}: connection ended: ${outcome.error.name}: ${outcome.error.message}`,
        );
      }
    } finally {
      clearTimeout(deadline);
    }
  }

  #labelOf(conn: Deno.Conn): string {
    const serial = ++this.#connectionSerial;
    const addr = conn.remoteAddr;
    return addr.transport === "tcp"
      ? `connection ${serial} from ${addr.hostname}:${addr.port}`
      : `connection ${serial}`;
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch (error) {
    if (!(error instanceof Deno.errors.BadResource)) throw error;
  }
}

/**
 * HTTP/1.1 on the status API's Unix socket, with the peer's credentials.
 *
 * Its single job: accept on a socket made with libc, read one request,
 * hand it to the app with the connecting process's credentials
 * (`SO_PEERCRED`, `SO_PEERGROUPS`), write the answer and close. Why not
 * `Deno.serve`: it does not tell a handler who connected, and the API lets
 * root and the socket's group change the setup over the socket without a
 * token (`mutation_guard.ts`).
 *
 * One request per connection (`Connection: close`), bodies by
 * `Content-Length` only, every part bounded: the head by
 * {@link API_REQUEST_HEAD_BYTES_MAX}, the body by
 * {@link API_REQUEST_BODY_BYTES_MAX}, the time to send both and read the
 * answer by {@link API_REQUEST_TIMEOUT_MS}, the connections by
 * {@link API_CONNECTIONS_MAX}.
 * The answer's body is written as it comes and ends at the close.
 *
 * @module
 */

import { assert } from "../assert.ts";
import {
  API_CONNECTIONS_MAX,
  API_REQUEST_BODY_BYTES_MAX,
  API_REQUEST_HEAD_BYTES_MAX,
  API_REQUEST_TIMEOUT_MS,
} from "../constants.ts";
import { ERRNO } from "../sys/libc.ts";
import { PolledSocket } from "../sys/polled_socket.ts";
import { socketReady } from "../sys/socket_poller.ts";
import {
  acceptQueued,
  closeDescriptor,
  listenUnix,
  type PeerCredentials,
  peerCredentials,
  POLLIN,
  SHUT_RDWR,
  shutdownSocket,
} from "../sys/syscalls.ts";

/** What the app is told about a request besides the request itself. */
export interface UnixPeer {
  /** The connecting process, as the kernel recorded it. */
  peer: PeerCredentials;
}

/** Answers one request. */
export type UnixHttpHandler = (request: Request, env: UnixPeer) => Response | Promise<Response>;

const LISTEN_BACKLOG = 64;
const HEAD_END = new Uint8Array([13, 10, 13, 10]);
const READ_CHUNK_BYTES = 4096;

/** A request the server refuses before the app sees it. */
class BadRequest extends Error {
  readonly httpStatus: number;
  constructor(httpStatus: number, message: string) {
    super(message);
    this.httpStatus = httpStatus;
  }
}

/** Serves HTTP on a Unix socket between {@link listen} and {@link close}. */
export class UnixHttpServer {
  readonly path: string;
  readonly #listenFd: number;
  readonly #handler: UnixHttpHandler;
  readonly #connections = new Set<number>();
  /** Connections whose request is still being read: a stop ends them at once. */
  readonly #reading = new Set<number>();
  readonly #tasks = new Set<Promise<void>>();
  #closing = false;
  #acceptLoop: Promise<void>;

  private constructor(path: string, listenFd: number, handler: UnixHttpHandler) {
    this.path = path;
    this.#listenFd = listenFd;
    this.#handler = handler;
    this.#acceptLoop = this.#accept();
  }

  /**
   * Listens on `path`, which must not exist (remove a stale socket first).
   *
   * @throws {Deno.errors.AddrInUse} When the path exists.
   * @throws {Error} When the socket cannot be made, naming the path and errno.
   */
  static listen(path: string, handler: UnixHttpHandler): UnixHttpServer {
    const fd = listenUnix(path, LISTEN_BACKLOG);
    if (fd === -98) throw new Deno.errors.AddrInUse(`Cannot listen on "${path}": address in use`);
    if (fd === -ERRNO.EACCES) {
      throw new Deno.errors.PermissionDenied(`Cannot listen on "${path}": permission denied`);
    }
    if (fd < 0) throw new Error(`Cannot listen on "${path}": errno ${-fd}`);
    return new UnixHttpServer(path, fd, handler);
  }

  /** Stops accepting, ends requests still being read, waits for answers being written. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    // Shutting the listener down wakes the accept's poll; the loop then ends.
    shutdownSocket(this.#listenFd, SHUT_RDWR);
    await this.#acceptLoop;
    for (const fd of this.#reading) shutdownSocket(fd, SHUT_RDWR);
    closeDescriptor(this.#listenFd);
    await Promise.all(this.#tasks);
  }

  async #accept(): Promise<void> {
    for (;;) {
      const fd = acceptQueued(this.#listenFd);
      if (this.#closing) {
        if (fd >= 0) closeDescriptor(fd);
        return;
      }
      if (fd === -ERRNO.EAGAIN) {
        await socketReady(this.#listenFd, POLLIN);
        continue;
      }
      // Anything else (ECONNABORTED, EMFILE) concerns one connection: go on with the next.
      if (fd < 0) continue;
      if (this.#connections.size >= API_CONNECTIONS_MAX) {
        closeDescriptor(fd);
        continue;
      }
      this.#connections.add(fd);
      const task = this.#serve(fd).finally(() => {
        this.#connections.delete(fd);
        this.#tasks.delete(task);
        closeDescriptor(fd);
      });
      this.#tasks.add(task);
    }
  }

  async #serve(fd: number): Promise<void> {
    const socket = new PolledSocket(fd);
    // The deadline shuts the socket down, which ends a read or write waiting on it: a client
    // that stops reading cannot hold a connection, or the server's stop, for longer.
    const deadline = setTimeout(() => shutdownSocket(fd, SHUT_RDWR), API_REQUEST_TIMEOUT_MS);
    let request: Request;
    try {
      const peer = peerCredentials(fd);
      if (typeof peer === "number") return;
      this.#reading.add(fd);
      request = await readRequest(socket).finally(() => this.#reading.delete(fd));
      if (this.#closing) return;
      const response = await this.#handler(request, { peer });
      await writeResponse(socket, response, { head: request.method === "HEAD" });
    } catch (error) {
      if (error instanceof BadRequest) {
        await writeResponse(
          socket,
          Response.json({ error: error.message }, { status: error.httpStatus }),
          { head: false },
        ).catch(() => {});
        return;
      }
      // The client went away or the deadline passed: there is no one to answer.
      if (error instanceof Deno.errors.ConnectionReset || error instanceof StreamEnd) return;
      throw error;
    } finally {
      clearTimeout(deadline);
    }
  }
}

/** The client closed before its request was complete. */
class StreamEnd extends Error {}

/** Reads one request: the head up to the blank line, then `Content-Length` bytes. */
async function readRequest(socket: PolledSocket): Promise<Request> {
  let buffered: Uint8Array<ArrayBuffer> = new Uint8Array(0);
  let headEnd = -1;
  while (headEnd < 0) {
    if (buffered.length > API_REQUEST_HEAD_BYTES_MAX) {
      throw new BadRequest(431, `The request head exceeds ${API_REQUEST_HEAD_BYTES_MAX} bytes`);
    }
    buffered = concat(buffered, await readSome(socket));
    headEnd = indexOf(buffered, HEAD_END);
  }
  if (headEnd > API_REQUEST_HEAD_BYTES_MAX) {
    throw new BadRequest(431, `The request head exceeds ${API_REQUEST_HEAD_BYTES_MAX} bytes`);
  }
  const head = parseHead(new TextDecoder().decode(buffered.subarray(0, headEnd)));
  const lengthBytes = bodyLength(head.headers);
  let body = buffered.subarray(headEnd + HEAD_END.length);
  while (body.length < lengthBytes) body = concat(body, await readSome(socket));
  const init: RequestInit = { method: head.method, headers: head.headers };
  if (lengthBytes > 0) {
    if (head.method === "GET" || head.method === "HEAD") {
      throw new BadRequest(400, `A ${head.method} request has no body`);
    }
    init.body = body.slice(0, lengthBytes);
  }
  return new Request(`http://localhost${head.target}`, init);
}

async function readSome(socket: PolledSocket): Promise<Uint8Array<ArrayBuffer>> {
  const chunk = new Uint8Array(READ_CHUNK_BYTES);
  const count = await socket.read(chunk);
  if (count === null) throw new StreamEnd("the client closed the connection");
  return chunk.subarray(0, count);
}

/** The request line and headers; a `BadRequest` for anything HTTP/1.1 does not allow. */
function parseHead(text: string): { method: string; target: string; headers: Headers } {
  const [requestLine = "", ...lines] = text.split("\r\n");
  // The origin form (`/path`), or the absolute form (`http://host/path`) that
  // clients send when they use the socket as a proxy (Deno's fetch does).
  const parts = /^([A-Z]{1,16}) (?:https?:\/\/[^/ ]+)?(\/[^ ]*) HTTP\/1\.[01]$/.exec(requestLine);
  if (parts === null) {
    throw new BadRequest(400, "The request line must be METHOD /path HTTP/1.1");
  }
  const headers = new Headers();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw new BadRequest(400, "A header line must be Name: value");
    try {
      headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
    } catch {
      throw new BadRequest(400, "A header has a name or value HTTP does not allow");
    }
  }
  return { method: parts[1]!, target: parts[2]!, headers };
}

function bodyLength(headers: Headers): number {
  if (headers.has("transfer-encoding")) {
    throw new BadRequest(411, "Send the body with a Content-Length, not a Transfer-Encoding");
  }
  const text = headers.get("content-length");
  if (text === null) return 0;
  if (!/^[0-9]{1,16}$/.test(text)) throw new BadRequest(400, "Content-Length must be one number");
  const lengthBytes = Number(text);
  if (lengthBytes > API_REQUEST_BODY_BYTES_MAX) {
    throw new BadRequest(413, `The request body exceeds ${API_REQUEST_BODY_BYTES_MAX} bytes`);
  }
  return lengthBytes;
}

/** Writes the status line and headers, then the body as it comes; the close ends it. */
async function writeResponse(
  socket: PolledSocket,
  response: Response,
  options: { head: boolean },
): Promise<void> {
  let head = `HTTP/1.1 ${response.status} ${response.statusText || "-"}\r\n`;
  for (const [name, value] of response.headers) {
    if (name !== "connection" && name !== "content-length") head += `${name}: ${value}\r\n`;
  }
  head += "Connection: close\r\n\r\n";
  await writeAll(socket, new TextEncoder().encode(head));
  if (response.body === null || options.head) {
    await response.body?.cancel();
    return;
  }
  for await (const chunk of response.body) await writeAll(socket, chunk);
}

async function writeAll(socket: PolledSocket, data: Uint8Array): Promise<void> {
  for (let written = 0; written < data.length;) {
    const count = await socket.write(data.subarray(written));
    assert(count > 0, "a socket write takes at least one byte");
    written += count;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * A raw socket (an open descriptor, as `syscalls.ts` makes them) read and
 * written on the event loop without blocking it: a call that would block
 * waits in the shared poll of `socket_poller.ts`. The NBD handshake and the
 * status API's Unix socket use it.
 *
 * @module
 */

import { ERRNO } from "./libc.ts";
import { socketReady } from "./socket_poller.ts";
import { MSG_DONTWAIT, MSG_NOSIGNAL, POLLIN, POLLOUT, receive, sendBytes } from "./syscalls.ts";

/**
 * A socket (an open descriptor) read and written without blocking: calls
 * that would block wait in the shared poll instead, so the event loop goes on.
 *
 * The socket stays blocking for whoever takes it over: every call here asks
 * for MSG_DONTWAIT itself.
 */
export class PolledSocket {
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

function connectionError(what: string, errno: number): Error {
  return new Deno.errors.ConnectionReset(`Cannot ${what} the connection: errno ${errno}`);
}

/**
 * Readiness of raw sockets for the event loop: one poll(2) on a thread of
 * the runtime's pool watches every socket some task waits on, so any number
 * of slow or silent peers costs the process one blocked thread, not one each.
 *
 * Why: the NBD data plane's sockets are made with libc (a `Deno.Conn` cannot
 * move to a worker), so the runtime's own reactor does not watch them. Before
 * a connection earns a worker it must finish its handshake, which is done on
 * the event loop with non-blocking calls that wait here when the socket is
 * not ready (see `export/nbd/negotiator.ts`).
 *
 * A socket being waited on must not be closed: shut it down instead (that
 * wakes the wait), and close it once the wait is over.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { createEventFd, drainEventFd, POLLIN, signalEventFd } from "./syscalls.ts";

const SYMBOLS = {
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
} as const satisfies Deno.ForeignLibraryInterface;

let pollOnPool: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"]["poll"] | undefined;

/** Bytes of one `struct pollfd`. */
const POLLFD_BYTES = 8;

interface Waiter {
  events: number;
  resolve: (revents: number) => void;
}

/** Waits for readiness of many sockets with one poll at a time; see the module doc. */
class SocketPoller {
  readonly #waiters = new Map<number, Waiter>();
  /** Wakes the poll in progress, so it starts over with the sockets waited on now. */
  #wakeFd = -1;
  /** The poll loop while anything is waited on; none otherwise (nothing keeps the process alive). */
  #loop: Promise<void> | undefined;
  #polling = false;
  #wakeSignalled = false;

  /** Resolves with poll's revents once `fd` is ready for `events`, hung up or failed. */
  ready(fd: number, events: number): Promise<number> {
    assert(!this.#waiters.has(fd), "one task waits on a socket at a time");
    if (this.#wakeFd < 0) {
      // Once per process, at the first wait.
      const wakeFd = createEventFd();
      if (wakeFd < 0) throw new Error(`Cannot create an eventfd: errno ${-wakeFd}`);
      this.#wakeFd = wakeFd;
      pollOnPool = Deno.dlopen("libc.so.6", SYMBOLS).symbols.poll;
    }
    return new Promise((resolve) => {
      this.#waiters.set(fd, { events, resolve });
      if (this.#loop === undefined) this.#loop = this.#run();
      else if (this.#polling && !this.#wakeSignalled) {
        this.#wakeSignalled = true;
        signalEventFd(this.#wakeFd);
      }
    });
  }

  async #run(): Promise<void> {
    const poll = pollOnPool!;
    while (this.#waiters.size > 0) {
      // A new array each time: the one of the poll in progress belongs to its thread.
      const entries = [
        [this.#wakeFd, POLLIN],
        ...[...this.#waiters].map(([fd, waiter]) => [fd, waiter.events]),
      ];
      const fds = new Uint8Array(entries.length * POLLFD_BYTES);
      const view = new DataView(fds.buffer);
      entries.forEach(([fd, events], index) => {
        view.setInt32(index * POLLFD_BYTES, fd!, true);
        view.setInt16(index * POLLFD_BYTES + 4, events!, true);
      });
      this.#polling = true;
      // -1 only on EINTR or a lack of memory: both pass, and the loop polls again.
      const ready = await poll(fds, BigInt(entries.length), -1);
      this.#polling = false;
      if (ready <= 0) continue;
      if (view.getInt16(6, true) !== 0) {
        drainEventFd(this.#wakeFd);
        this.#wakeSignalled = false;
      }
      for (let index = 1; index < entries.length; index++) {
        const revents = view.getInt16(index * POLLFD_BYTES + 6, true);
        if (revents === 0) continue;
        const fd = entries[index]![0]!;
        const waiter = this.#waiters.get(fd)!;
        this.#waiters.delete(fd);
        waiter.resolve(revents);
      }
    }
    this.#loop = undefined;
  }
}

const poller = new SocketPoller();

/**
 * Waits until a socket is ready for `events` (POLLIN, POLLOUT), hung up or
 * failed, without blocking the event loop.
 *
 * @param fd The socket; not closed while waited on (shut it down to end the wait).
 * @param events The poll events waited for.
 * @returns The poll revents.
 */
export function socketReady(fd: number, events: number): Promise<number> {
  return poller.ready(fd, events);
}

/**
 * A worker that reads a socket until it ends and posts every byte it read.
 *
 * The worker-loop test runs a connection's transmission loop on the test's
 * own thread, where it blocks in system calls; a large reply is sent with a
 * blocking send, so someone else must read the client's end meanwhile. When
 * nothing arrives for {@link STALL_MS}, the server is taken to be stuck: the
 * drain hangs up (both directions), which ends a server blocked in recv, and
 * posts what it had with `stalled` set.
 *
 * @module
 */

import {
  pollDescriptors,
  POLLIN,
  receive,
  SHUT_RDWR,
  shutdownSocket,
} from "../../mod/sys/syscalls.ts";
import { concatBytes } from "../../mod/export/nbd/protocol.ts";

/** Far longer than any reply of the test takes on tmpfs. */
const STALL_MS = 5_000;

/** What the drain posts. */
export interface Drained {
  bytes: Uint8Array;
  stalled: boolean;
  /** A receive failed with this errno. */
  errno?: number;
}

const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<{ fd: number }>) => void) | null;
  postMessage(message: Drained): void;
};

scope.onmessage = (event) => {
  const fd = event.data.fd;
  const chunks: Uint8Array[] = [];
  const pollFd = new Uint8Array(8);
  const view = new DataView(pollFd.buffer);
  view.setInt32(0, fd, true);
  view.setInt16(4, POLLIN, true);
  for (;;) {
    if (pollDescriptors(pollFd, 1, STALL_MS) === 0) {
      shutdownSocket(fd, SHUT_RDWR);
      return scope.postMessage({ bytes: concatBytes(chunks), stalled: true });
    }
    const buffer = new Uint8Array(1024 * 1024);
    const count = receive(fd, buffer, 0);
    if (count < 0) {
      return scope.postMessage({ bytes: concatBytes(chunks), stalled: false, errno: -count });
    }
    if (count === 0) break;
    chunks.push(buffer.subarray(0, count));
  }
  scope.postMessage({ bytes: concatBytes(chunks), stalled: false });
};

/**
 * Claiming a Unix socket path for a listener, shared by the NBD server and the
 * status API: a socket file left by a server that died is removed; a live
 * socket or a path that is not a socket is refused and left alone.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

const NOT_A_SOCKET = "the path exists and is not a socket; move it away or choose another path";
const IN_USE = "another process answers on it; is `dm-remap serve` already running?";

/** The reason in a {@link removeStaleSocket} error, without the "Cannot listen on" prefix. */
export function socketProblemOf(error: Error): string {
  return error.message.replace(/^Cannot listen on "[^"]*": /, "");
}

/**
 * Why claiming or binding a listening address failed, in words, for the
 * NBD server's and the status API's one-line errors.
 */
export function listenProblemOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.message.startsWith("Cannot listen on ")) return socketProblemOf(error);
  if (error instanceof Deno.errors.AddrInUse) {
    return "address in use: another program listens there; stop it or choose another port";
  }
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return "no such address on this machine: give one of its addresses";
  }
  return error.message;
}

/**
 * Makes `path` free for `Deno.listen`, removing only a dead socket file.
 *
 * @throws {UsageError} When the path exists and is not a socket.
 * @throws {Deno.errors.AddrInUse} When another process answers on the socket.
 */
export async function removeStaleSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  if (!info.isSocket) {
    throw new UsageError(`Cannot listen on "${path}": ${NOT_A_SOCKET}`);
  }
  if (await socketAnswers(path)) {
    throw new Deno.errors.AddrInUse(`Cannot listen on "${path}": ${IN_USE}`);
  }
  // Nothing listens: the file is left over from a crash.
  await removeSocketFile(path);
}

/**
 * Whether a process accepts connections on a Unix socket: a socket file left
 * by a server that died refuses them.
 *
 * @throws {Error} For failures other than a refused connection or a missing path.
 */
export async function socketAnswers(path: string): Promise<boolean> {
  try {
    const probe = await Deno.connect({ transport: "unix", path });
    probe.close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused || error instanceof Deno.errors.NotFound) {
      return false;
    }
    throw error;
  }
}

/** Removes a socket file if it is still there. */
export async function removeSocketFile(path: string): Promise<void> {
  await Deno.remove(path).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
}

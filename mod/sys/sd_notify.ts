/**
 * sd_notify(3), written here: one datagram of `KEY=VALUE` lines to the
 * service manager's socket named by `NOTIFY_SOCKET` (a path, or an abstract
 * socket when it starts with '@'), through Deno FFI, since Deno's own sockets
 * cannot send unix datagrams to an unbound peer. Without `NOTIFY_SOCKET` (not
 * under systemd, or a unit that is not `Type=notify`) nothing is sent.
 *
 * @module
 */

import { callSync } from "./libc.ts";

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

let symbols: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] | undefined;

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
const SUN_PATH_BYTES = 108;

/** Why a notification was not delivered. */
export type NotifyOutcome = "sent" | "no-socket" | { errno: number };

/**
 * Sends `message` (lines such as `READY=1`, `STATUS=...`, `MAINPID=123`) to
 * the socket `NOTIFY_SOCKET` names.
 *
 * @param socketPath The socket; @default `Deno.env.get("NOTIFY_SOCKET")`
 * @returns "sent", "no-socket" when there is none, or the send's errno.
 */
export function notifyServiceManager(
  message: string,
  socketPath: string | undefined = Deno.env.get("NOTIFY_SOCKET"),
): NotifyOutcome {
  if (socketPath === undefined || socketPath === "") return "no-socket";
  const address = sockaddrOf(socketPath);
  if (address === undefined) return { errno: 36 }; // ENAMETOOLONG
  symbols ??= Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  const libc = symbols;
  const fd = callSync(() => libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (fd < 0) return { errno: -fd };
  try {
    const data = new TextEncoder().encode(message);
    const sent = callSync(() =>
      libc.sendto(fd, data, BigInt(data.length), MSG_NOSIGNAL, address, address.length)
    );
    return sent < 0 ? { errno: -sent } : "sent";
  } finally {
    libc.close(fd);
  }
}

/**
 * `struct sockaddr_un` cut to its used length: a path with its terminating
 * NUL, or an abstract name ('@' becomes the leading NUL) without one.
 */
function sockaddrOf(socketPath: string): Uint8Array | undefined {
  const abstract = socketPath.startsWith("@");
  const name = new TextEncoder().encode(abstract ? socketPath.slice(1) : socketPath);
  const pathBytes = name.length + 1;
  if (pathBytes > SUN_PATH_BYTES) return undefined;
  const address = new Uint8Array(2 + pathBytes);
  new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  address.set(name, abstract ? 3 : 2);
  return address;
}

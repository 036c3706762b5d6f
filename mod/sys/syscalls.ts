/**
 * The socket, poll and eventfd calls of the NBD data plane, through Deno FFI.
 *
 * Why not `Deno.listen`: a `Deno.Conn` cannot be handed to a worker, and the
 * data plane serves each connection on a worker thread of its own, which
 * blocks in these calls the way an nbdkit thread does. Every wrapper returns
 * the result or `-errno`.
 *
 * @module
 */

import { addressOf, callSync } from "../sys/libc.ts";

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  fdatasync: { parameters: ["i32"], result: "i32" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pwritev2: { parameters: ["i32", "buffer", "i32", "i64", "i32"], result: "isize" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  syscall: { parameters: ["i64", "i64", "i64", "i64", "i64", "i64"], result: "i64" },
} as const satisfies Deno.ForeignLibraryInterface;

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let symbols: Symbols | undefined;

function libc(): Symbols {
  symbols ??= Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  return symbols;
}

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const SOCK_NONBLOCK = 0o4000;
const SOCKADDR_UN_BYTES = 110;
const SUN_PATH_BYTES = 108;
/** `recv`/`sendmsg` flags. */
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
/** `shutdown` directions. */
export const SHUT_RD = 0;
export const SHUT_WR = 1;
export const SHUT_RDWR = 2;
/** `poll` events. */
export const POLLIN = 0x1;
export const POLLOUT = 0x4;
const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;

/**
 * A Unix stream socket bound to `path` and listening, non-blocking: accepting
 * with nothing queued fails with EAGAIN (wait for POLLIN, see `socket_poller.ts`).
 *
 * @returns The socket or `-errno` (EADDRINUSE when the path exists).
 */
export function listenUnix(path: string, backlog: number): number {
  const encoded = new TextEncoder().encode(path);
  if (encoded.length >= SUN_PATH_BYTES) return -36; // ENAMETOOLONG
  const address = new Uint8Array(SOCKADDR_UN_BYTES);
  new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  address.set(encoded, 2);
  const fd = callSync(() => libc().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd < 0) return fd;
  const bound = callSync(() => libc().bind(fd, address, SOCKADDR_UN_BYTES));
  const listening = bound < 0 ? bound : callSync(() => libc().listen(fd, backlog));
  if (listening < 0) {
    libc().close(fd);
    return listening;
  }
  return fd;
}

/**
 * A connected pair of Unix stream sockets, as `socketpair(2)` makes them.
 *
 * @returns The two descriptors, or `-errno`.
 */
export function createSocketPair(): [number, number] | number {
  const fds = new Int32Array(2);
  const result = callSync(() =>
    libc().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, new Uint8Array(fds.buffer))
  );
  return result < 0 ? result : [fds[0]!, fds[1]!];
}

/**
 * Takes a queued connection from a non-blocking listener ({@link listenUnix}).
 * The new socket blocks (Linux does not pass O_NONBLOCK on).
 *
 * @returns The new socket, or `-errno`: EAGAIN when none is queued, EINVAL once the listener is shut down.
 */
export function acceptQueued(listenFd: number): number {
  return callSync(() => libc().accept4(listenFd, null, null, SOCK_CLOEXEC));
}

const FIONREAD = 0x541bn;
const SIOCOUTQ = 0x5411n;

/** Bytes in a socket's receive queue that this process has not read yet (`FIONREAD`), or `-errno`. */
export function unreadBytes(fd: number): number {
  return socketQueueBytes(fd, FIONREAD);
}

/** Socket memory (truesize) holding what this process sent and the peer has not read yet (`SIOCOUTQ`), or `-errno`. */
export function unconsumedSentBytes(fd: number): number {
  return socketQueueBytes(fd, SIOCOUTQ);
}

function socketQueueBytes(fd: number, request: bigint): number {
  const count = new Int32Array(1);
  const result = callSync(() => libc().ioctl(fd, request, new Uint8Array(count.buffer)));
  return result < 0 ? result : count[0]!;
}

/** `recv`: bytes received, 0 at end of stream, or `-errno`. */
export function receive(fd: number, buffer: Uint8Array, flags: number): number {
  return callSync(() => libc().recv(fd, buffer, BigInt(buffer.length), flags));
}

/** `poll` over a prepared `struct pollfd` array: ready descriptors or `-errno`. */
export function pollDescriptors(fds: Uint8Array, count: number, timeoutMs: number): number {
  return callSync(() => libc().poll(fds, BigInt(count), timeoutMs));
}

const POLLHUP = 0x10;
const POLLRDHUP = 0x2000;
const POLLFD_BYTES = 8;

/** Whether a socket's peer has closed it, checked now (`poll` with a zero timeout). */
export function peerHungUp(fd: number): boolean {
  const entry = new Uint8Array(POLLFD_BYTES);
  const view = new DataView(entry.buffer);
  view.setInt32(0, fd, true);
  view.setInt16(4, POLLRDHUP, true);
  if (pollDescriptors(entry, 1, 0) <= 0) return false;
  return (view.getInt16(6, true) & (POLLHUP | POLLRDHUP)) !== 0;
}

/** A non-blocking eventfd, or `-errno`. */
export function createEventFd(): number {
  return callSync(() => libc().eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
}

const eventCell = new BigUint64Array(1);
const eventBytes = new Uint8Array(eventCell.buffer);

/** Adds one to an eventfd, waking whoever polls it. */
export function signalEventFd(fd: number): void {
  eventCell[0] = 1n;
  callSync(() => libc().write(fd, eventBytes, 8n));
}

/** Resets an eventfd; returns its count (0 if it was not signalled). */
export function drainEventFd(fd: number): number {
  const result = callSync(() => libc().read(fd, eventBytes, 8n));
  return result === 8 ? Number(eventCell[0]) : 0;
}

/** `shutdown(fd, how)`: 0 or `-errno` (ENOTCONN once the peer is gone, which is fine). */
export function shutdownSocket(fd: number, how: number): number {
  return callSync(() => libc().shutdown(fd, how));
}

const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_SNDBUFFORCE = 32;
const intCell = new Int32Array(1);
const intBytes = new Uint8Array(intCell.buffer);

/**
 * Asks for a socket send buffer of `bytes` (Linux doubles it for its
 * bookkeeping): past `net.core.wmem_max` where the process may
 * (CAP_NET_ADMIN, SO_SNDBUFFORCE), else up to it. 0 or `-errno`.
 */
export function growSendBuffer(fd: number, bytes: number): number {
  intCell[0] = bytes;
  const forced = callSync(() => libc().setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, intBytes, 4));
  if (forced === 0) return 0;
  return callSync(() => libc().setsockopt(fd, SOL_SOCKET, SO_SNDBUF, intBytes, 4));
}

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SO_PEERCRED = 17;
const SO_PEERGROUPS = 59;
/** `sizeof(struct ucred)`: pid, uid, gid, each 32 bits. */
const UCRED_BYTES = 12;
/** The most supplementary groups read for a peer (Linux's NGROUPS_MAX is 65536; 256 covers real users). */
const PEER_GROUPS_MAX = 256;

/** Who is at the other end of a connected Unix socket, as the kernel recorded it at connect(). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  /** The primary group. */
  gid: number;
  /** The supplementary groups. */
  groups: number[];
}

/**
 * The credentials of a Unix socket's peer: `SO_PEERCRED` and `SO_PEERGROUPS`
 * (Linux 4.13), taken by the kernel when the peer connected, so a peer cannot
 * claim another identity.
 *
 * @returns The credentials, or `-errno` (ERANGE when the peer has more than {@link PEER_GROUPS_MAX} groups).
 */
export function peerCredentials(fd: number): PeerCredentials | number {
  const ucred = new Uint32Array(UCRED_BYTES / 4);
  const length = new Uint32Array([UCRED_BYTES]);
  const got = callSync(() =>
    libc().getsockopt(
      fd,
      SOL_SOCKET,
      SO_PEERCRED,
      new Uint8Array(ucred.buffer),
      new Uint8Array(length.buffer),
    )
  );
  if (got < 0) return got;
  const groups = new Uint32Array(PEER_GROUPS_MAX);
  const groupsLength = new Uint32Array([groups.byteLength]);
  const gotGroups = callSync(() =>
    libc().getsockopt(
      fd,
      SOL_SOCKET,
      SO_PEERGROUPS,
      new Uint8Array(groups.buffer),
      new Uint8Array(groupsLength.buffer),
    )
  );
  if (gotGroups < 0) return gotGroups;
  return {
    pid: ucred[0]!,
    uid: ucred[1]!,
    gid: ucred[2]!,
    groups: [...groups.subarray(0, groupsLength[0]! / 4)],
  };
}

const SO_RCVTIMEO = 20;

/**
 * A netlink socket of `protocol` (NETLINK_GENERIC is 16) whose receives give
 * up after `timeoutMs` with EAGAIN, so a kernel that never answers cannot
 * hang the caller. The socket or `-errno`.
 */
export function openNetlinkSocket(protocol: number, timeoutMs: number): number {
  const fd = callSync(() => libc().socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol));
  if (fd < 0) return fd;
  const timeval = new BigInt64Array([
    BigInt(Math.floor(timeoutMs / 1000)),
    BigInt((timeoutMs % 1000) * 1000),
  ]);
  const set = callSync(() =>
    libc().setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, new Uint8Array(timeval.buffer), 16)
  );
  if (set < 0) {
    libc().close(fd);
    return set;
  }
  return fd;
}

const F_DUPFD_CLOEXEC = 1030;

/** A second descriptor of the same open file (close-on-exec), or `-errno`. */
export function duplicateDescriptor(fd: number): number {
  return callSync(() => libc().fcntl(fd, F_DUPFD_CLOEXEC, 0));
}

/** `close(fd)`. Not retried on EINTR: Linux has released the fd anyway. */
export function closeDescriptor(fd: number): void {
  libc().close(fd);
}

/** `fdatasync(fd)`: 0 or `-errno`; blocks the calling (worker) thread. */
export function syncData(fd: number): number {
  return callSync(() => libc().fdatasync(fd));
}

const singleIovec = new BigUint64Array(2);
const singleIovecBytes = new Uint8Array(singleIovec.buffer);

/** `pread` on the calling (worker) thread: bytes read or `-errno`. */
export function readAt(fd: number, buffer: Uint8Array, offsetBytes: number): number {
  return callSync(() => libc().pread(fd, buffer, BigInt(buffer.length), BigInt(offsetBytes)));
}

/** `pwrite`, or `pwritev2` with `rwFlags` (RWF_DSYNC): bytes written or `-errno`. */
export function writeAt(
  fd: number,
  data: Uint8Array,
  offsetBytes: number,
  rwFlags: number,
): number {
  if (rwFlags === 0) {
    return callSync(() => libc().pwrite(fd, data, BigInt(data.length), BigInt(offsetBytes)));
  }
  singleIovec[0] = addressOf(data);
  singleIovec[1] = BigInt(data.length);
  return callSync(() => libc().pwritev2(fd, singleIovecBytes, 1, BigInt(offsetBytes), rwFlags));
}

/** `send` of one buffer: bytes sent or `-errno`. */
export function sendBytes(fd: number, data: Uint8Array, flags: number): number {
  return callSync(() => libc().send(fd, data, BigInt(data.length), flags));
}

/** `syscall(number, ...)` for the AIO calls: the result or `-errno`. */
export function rawSyscall(number: bigint, a: bigint, b: bigint, c: bigint, d: bigint): number {
  return callSync(() => libc().syscall(number, a, b, c, d, 0n));
}

export { addressOf };

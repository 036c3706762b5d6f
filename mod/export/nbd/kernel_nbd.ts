/**
 * The kernel's NBD client, configured over its generic netlink family `nbd`
 * (linux/nbd-netlink.h), as nbd-client's netlink mode does, with no
 * nbd-client: the server hands the kernel one end of each socketpair and
 * serves the other.
 *
 * What the driver does (drivers/block/nbd.c, 6.1 and 6.12), and why the
 * lifecycle in `kernel_attachment.ts` is shaped around it:
 * - CONNECT without an index takes a free device (or makes one) and answers
 *   with its index. The backend identifier is shown in
 *   `/sys/block/nbdN/backend`, and RECONFIGURE refuses another one, so a
 *   restarted server finds its device by it and cannot take another's.
 * - RECONFIGURE replaces only sockets the kernel has marked dead; a socket
 *   given when none is dead is dropped and the call still succeeds.
 * - A request that finds every socket dead waits for a live one for at most
 *   the dead-connection timeout, then fails; with none set it fails at once.
 * - A request already sent on a socket that died is sent again only when its
 *   own timeout fires.
 *
 * @module
 */

import {
  attributeNumber,
  decodeAttributes,
  GenericNetlink,
  type NetlinkAttribute,
  NetlinkError,
  type ReceivedAttribute,
} from "../../sys/netlink.ts";

const FAMILY_NAME = "nbd";
const FAMILY_VERSION = 1;
const COMMAND = { CONNECT: 1, DISCONNECT: 2, RECONFIGURE: 3, STATUS: 5 } as const;
const ATTR = {
  INDEX: 1,
  SIZE_BYTES: 2,
  BLOCK_SIZE_BYTES: 3,
  TIMEOUT: 4,
  SERVER_FLAGS: 5,
  SOCKETS: 7,
  DEAD_CONN_TIMEOUT: 8,
  DEVICE_LIST: 9,
  BACKEND_IDENTIFIER: 10,
} as const;
const SOCK_ITEM = 1;
const SOCK_FD = 1;
const DEVICE_ITEM = 1;
const DEVICE_INDEX = 1;
const DEVICE_CONNECTED = 2;
const ENOENT = 2;
const EPERM = 1;

/** What CONNECT configures. */
export interface NbdConnectRequest {
  /** The device's index (`/dev/nbdN`); undefined lets the kernel take a free one. */
  index?: number;
  sizeBytes: number;
  blockBytes: number;
  /** The export's transmission flags, as a server sends them in its handshake. */
  serverFlags: number;
  /** The kernel's ends of the connections' socketpairs. */
  sockets: readonly number[];
  /** Seconds before a request without a reply is sent again (on another or a new socket). */
  requestTimeoutS: number;
  /** Seconds requests wait for a live socket when every socket is dead. */
  deadConnectionTimeoutS: number;
  /** Shown in `/sys/block/nbdN/backend`; RECONFIGURE must give the same. */
  backend: string;
}

/** A configured NBD device as STATUS reports it. */
export interface NbdDeviceStatus {
  index: number;
  connected: boolean;
}

/** Why the kernel refused, in words that name the fix. */
export function describeNetlinkFailure(error: unknown, doing: string): string {
  if (!(error instanceof NetlinkError)) return `${doing}: ${String(error)}`;
  if (error.errno === ENOENT) {
    return `${doing}: the kernel has no nbd module loaded (run "modprobe nbd")`;
  }
  if (error.errno === EPERM) {
    return `${doing}: permission denied; configuring /dev/nbd* needs CAP_SYS_ADMIN (run as root)`;
  }
  return `${doing}: ${error.message}`;
}

/** The `nbd` family on one netlink socket. */
export class KernelNbd implements Disposable {
  readonly #netlink: GenericNetlink;
  readonly #familyId: number;

  private constructor(netlink: GenericNetlink, familyId: number) {
    this.#netlink = netlink;
    this.#familyId = familyId;
  }

  /** @throws {NetlinkError} ENOENT when the nbd module is not loaded. */
  static open(): KernelNbd {
    const netlink = GenericNetlink.open();
    try {
      return new KernelNbd(netlink, netlink.familyId(FAMILY_NAME));
    } catch (error) {
      netlink[Symbol.dispose]();
      throw error;
    }
  }

  /** Configures a device and starts it; returns its index. */
  connect(request: NbdConnectRequest): number {
    const attributes: NetlinkAttribute[] = [
      ...(request.index === undefined ? [] : [{ type: ATTR.INDEX, u32: request.index }]),
      { type: ATTR.SIZE_BYTES, u64: BigInt(request.sizeBytes) },
      { type: ATTR.BLOCK_SIZE_BYTES, u64: BigInt(request.blockBytes) },
      { type: ATTR.SERVER_FLAGS, u64: BigInt(request.serverFlags) },
      { type: ATTR.TIMEOUT, u64: BigInt(request.requestTimeoutS) },
      { type: ATTR.DEAD_CONN_TIMEOUT, u64: BigInt(request.deadConnectionTimeoutS) },
      { type: ATTR.BACKEND_IDENTIFIER, string: request.backend },
      socketsAttribute(request.sockets),
    ];
    const replies = this.#request(COMMAND.CONNECT, attributes);
    const index = replies.flat().find((attribute) => attribute.type === ATTR.INDEX);
    if (index !== undefined) return attributeNumber(index);
    if (request.index !== undefined) return request.index;
    throw new Error("the kernel configured an NBD device and did not say which");
  }

  /** Offers the kernel new sockets for a device's dead ones (live ones are not replaced). */
  reconfigure(index: number, options: { sockets: readonly number[]; backend: string }): void {
    this.#request(COMMAND.RECONFIGURE, [
      { type: ATTR.INDEX, u32: index },
      { type: ATTR.BACKEND_IDENTIFIER, string: options.backend },
      socketsAttribute(options.sockets),
    ]);
  }

  /** Disconnects a device: requests still queued fail, the sockets are shut down. */
  disconnect(index: number): void {
    this.#request(COMMAND.DISCONNECT, [{ type: ATTR.INDEX, u32: index }]);
  }

  /** The devices the module has, or one of them. */
  status(index?: number): NbdDeviceStatus[] {
    const replies = this.#request(
      COMMAND.STATUS,
      index === undefined ? [] : [{ type: ATTR.INDEX, u32: index }],
    );
    const devices: NbdDeviceStatus[] = [];
    for (const list of replies.flat().filter((attribute) => attribute.type === ATTR.DEVICE_LIST)) {
      for (const item of nested(list).filter((attribute) => attribute.type === DEVICE_ITEM)) {
        const fields = nested(item);
        const indexField = fields.find((field) => field.type === DEVICE_INDEX);
        const connected = fields.find((field) => field.type === DEVICE_CONNECTED);
        if (indexField === undefined) continue;
        devices.push({
          index: attributeNumber(indexField),
          connected: connected !== undefined && attributeNumber(connected) !== 0,
        });
      }
    }
    return devices;
  }

  #request(command: number, attributes: NetlinkAttribute[]): ReceivedAttribute[][] {
    return this.#netlink.request(this.#familyId, {
      command,
      version: FAMILY_VERSION,
      attributes,
    });
  }

  [Symbol.dispose](): void {
    this.#netlink[Symbol.dispose]();
  }
}

function socketsAttribute(sockets: readonly number[]): NetlinkAttribute {
  return {
    type: ATTR.SOCKETS,
    nested: sockets.map((fd) => ({ type: SOCK_ITEM, nested: [{ type: SOCK_FD, u32: fd }] })),
  };
}

function nested(attribute: ReceivedAttribute): ReceivedAttribute[] {
  return decodeAttributes(attribute.payload);
}

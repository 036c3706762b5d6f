/**
 * Generic netlink, the kernel's request/reply bus for families such as `nbd`:
 * messages are a `nlmsghdr`, a `genlmsghdr` and type-length-value attributes
 * (linux/netlink.h, linux/genetlink.h). This module speaks the framing and
 * resolves a family's id by its name through the `nlctrl` family; what the
 * attributes mean belongs to the caller.
 *
 * @module
 */

import { closeDescriptor, openNetlinkSocket, receive, sendBytes } from "./syscalls.ts";

const NETLINK_GENERIC = 16;
const NLMSG_HEADER_BYTES = 16;
const GENL_HEADER_BYTES = 4;
const NLA_HEADER_BYTES = 4;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
/** Set on a nested attribute's type. */
const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;
/** The control family: its id is fixed, the others' are looked up through it. */
const GENL_ID_CTRL = 0x10;
const CTRL_CMD_GETFAMILY = 3;
const CTRL_ATTR_FAMILY_ID = 1;
const CTRL_ATTR_FAMILY_NAME = 2;
const RECEIVE_BUFFER_BYTES = 32 * 1024;
/** How long a reply may take: the kernel answers these requests synchronously. */
const REPLY_TIMEOUT_MS = 10_000;

/** An attribute to send: numbers by width, a NUL-terminated string, or nested attributes. */
export type NetlinkAttribute =
  | { type: number; u8: number }
  | { type: number; u32: number }
  | { type: number; u64: bigint }
  | { type: number; string: string }
  | { type: number; nested: NetlinkAttribute[] };

/** An attribute received: its type (flags masked off) and payload. */
export interface ReceivedAttribute {
  type: number;
  payload: Uint8Array;
}

/** A request the kernel refused: `errno` as the kernel gave it (positive). */
export class NetlinkError extends Error {
  readonly errno: number;
  constructor(errno: number, doing: string) {
    super(`${doing}: the kernel answered errno ${errno}`);
    this.name = "NetlinkError";
    this.errno = errno;
  }
}

/** Encodes attributes, each padded to 4 bytes. */
export function encodeAttributes(attributes: readonly NetlinkAttribute[]): Uint8Array {
  const parts = attributes.map(encodeAttribute);
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function encodeAttribute(attribute: NetlinkAttribute): Uint8Array {
  let payload: Uint8Array;
  let type = attribute.type;
  if ("u8" in attribute) payload = Uint8Array.of(attribute.u8);
  else if ("u32" in attribute) payload = new Uint8Array(Uint32Array.of(attribute.u32).buffer);
  else if ("u64" in attribute) payload = new Uint8Array(BigUint64Array.of(attribute.u64).buffer);
  else if ("string" in attribute) payload = new TextEncoder().encode(`${attribute.string}\0`);
  else {
    payload = encodeAttributes(attribute.nested);
    type |= NLA_F_NESTED;
  }
  const length = NLA_HEADER_BYTES + payload.length;
  const out = new Uint8Array(align4(length));
  const view = new DataView(out.buffer);
  view.setUint16(0, length, true);
  view.setUint16(2, type, true);
  out.set(payload, NLA_HEADER_BYTES);
  return out;
}

/** Splits a run of attributes; a truncated one ends the run. */
export function decodeAttributes(bytes: Uint8Array): ReceivedAttribute[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const attributes: ReceivedAttribute[] = [];
  let offset = 0;
  while (offset + NLA_HEADER_BYTES <= bytes.length) {
    const length = view.getUint16(offset, true);
    if (length < NLA_HEADER_BYTES || offset + length > bytes.length) break;
    attributes.push({
      type: view.getUint16(offset + 2, true) & NLA_TYPE_MASK,
      payload: bytes.subarray(offset + NLA_HEADER_BYTES, offset + length),
    });
    offset += align4(length);
  }
  return attributes;
}

/** A u8, u16, u32 or u64 attribute's value. */
export function attributeNumber(attribute: ReceivedAttribute): number {
  const { payload } = attribute;
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  switch (payload.length) {
    case 1:
      return view.getUint8(0);
    case 2:
      return view.getUint16(0, true);
    case 4:
      return view.getUint32(0, true);
    default:
      return Number(view.getBigUint64(0, true));
  }
}

function align4(length: number): number {
  return (length + 3) & ~3;
}

/** One generic netlink socket, for requests that get a reply and an acknowledgement. */
export class GenericNetlink implements Disposable {
  readonly #fd: number;
  #sequence = 0;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** @throws {NetlinkError} When the socket cannot be made. */
  static open(): GenericNetlink {
    const fd = openNetlinkSocket(NETLINK_GENERIC, REPLY_TIMEOUT_MS);
    if (fd < 0) throw new NetlinkError(-fd, "opening a generic netlink socket");
    return new GenericNetlink(fd);
  }

  /**
   * A family's id by its name.
   *
   * @throws {NetlinkError} ENOENT when the kernel has no such family (its module is not loaded).
   */
  familyId(name: string): number {
    const replies = this.request(GENL_ID_CTRL, {
      command: CTRL_CMD_GETFAMILY,
      version: 1,
      attributes: [{ type: CTRL_ATTR_FAMILY_NAME, string: name }],
    });
    const id = replies.flat().find((attribute) => attribute.type === CTRL_ATTR_FAMILY_ID);
    if (id === undefined) {
      throw new NetlinkError(2, `looking up the generic netlink family "${name}"`);
    }
    return attributeNumber(id);
  }

  /**
   * Sends one request and collects the attributes of every reply message
   * until the kernel's acknowledgement.
   *
   * @throws {NetlinkError} With the kernel's errno when it refuses the request.
   */
  request(
    familyId: number,
    message: { command: number; version: number; attributes: readonly NetlinkAttribute[] },
  ): ReceivedAttribute[][] {
    const sequence = ++this.#sequence;
    const attributes = encodeAttributes(message.attributes);
    const out = new Uint8Array(NLMSG_HEADER_BYTES + GENL_HEADER_BYTES + attributes.length);
    const view = new DataView(out.buffer);
    view.setUint32(0, out.length, true);
    view.setUint16(4, familyId, true);
    view.setUint16(6, NLM_F_REQUEST | NLM_F_ACK, true);
    view.setUint32(8, sequence, true);
    out[NLMSG_HEADER_BYTES] = message.command;
    out[NLMSG_HEADER_BYTES + 1] = message.version;
    out.set(attributes, NLMSG_HEADER_BYTES + GENL_HEADER_BYTES);
    const doing = `generic netlink command ${message.command} to family ${familyId}`;
    const sent = sendBytes(this.#fd, out, 0);
    if (sent < 0) throw new NetlinkError(-sent, doing);
    return this.#receiveUntilAck(sequence, doing);
  }

  #receiveUntilAck(sequence: number, doing: string): ReceivedAttribute[][] {
    const replies: ReceivedAttribute[][] = [];
    const buffer = new Uint8Array(RECEIVE_BUFFER_BYTES);
    for (;;) {
      const received = receive(this.#fd, buffer, 0);
      if (received < 0) throw new NetlinkError(-received, `${doing} (waiting for the reply)`);
      const view = new DataView(buffer.buffer, 0, received);
      for (let offset = 0; offset + NLMSG_HEADER_BYTES <= received;) {
        const length = view.getUint32(offset, true);
        const type = view.getUint16(offset + 4, true);
        if (length < NLMSG_HEADER_BYTES) break;
        const mine = view.getUint32(offset + 8, true) === sequence;
        if (mine && type === NLMSG_ERROR) {
          const errno = -view.getInt32(offset + NLMSG_HEADER_BYTES, true);
          if (errno !== 0) throw new NetlinkError(errno, doing);
          return replies;
        }
        if (mine && type === NLMSG_DONE) return replies;
        if (mine) {
          const start = offset + NLMSG_HEADER_BYTES + GENL_HEADER_BYTES;
          replies.push(decodeAttributes(buffer.slice(start, offset + length)));
        }
        offset += align4(length);
      }
    }
  }

  [Symbol.dispose](): void {
    closeDescriptor(this.#fd);
  }
}

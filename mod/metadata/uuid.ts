/**
 * UUIDs as text in payloads and as 16 raw bytes in binary headers.
 *
 * @module
 */

import { assert } from "../assert.ts";

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Whether `text` is a lower-case canonical UUID. */
export function isUuid(text: string): boolean {
  return UUID_PATTERN.test(text);
}

/** The 16 bytes of a canonical UUID. */
export function uuidToBytes(uuid: string): Uint8Array {
  assert(isUuid(uuid), `canonical UUID: ${uuid}`);
  const hex = uuid.replaceAll("-", "");
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 16; i++) bytes[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

/** The canonical text of 16 UUID bytes. */
export function uuidFromBytes(bytes: Uint8Array): string {
  assert(bytes.length === 16, "a UUID is 16 bytes");
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}

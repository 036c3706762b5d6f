/**
 * Byte-array equality, for the protocol's names and the remap engine's
 * read-back of relocated blocks.
 *
 * @module
 */

/** Whether two byte arrays hold the same bytes. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

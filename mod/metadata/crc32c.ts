/**
 * CRC-32C (Castagnoli), the checksum of every metadata structure.
 *
 * Slicing-by-8 in plain TypeScript: about 1 GB/s here, so an 8 MiB checkpoint
 * of one million remaps checks in under 10 ms, and no native module is needed
 * in the single-file deployment.
 *
 * @example
 * ```ts
 * import { crc32c } from "./crc32c.ts";
 * crc32c(new TextEncoder().encode("123456789")); // 0xe3069283
 * ```
 *
 * @module
 */

const POLYNOMIAL_REVERSED = 0x82f63b78;
const TABLES = buildTables();

function buildTables(): Uint32Array[] {
  const tables = Array.from({ length: 8 }, () => new Uint32Array(256));
  const first = tables[0]!;
  for (let i = 0; i < 256; i++) {
    let crc = i;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ POLYNOMIAL_REVERSED : crc >>> 1;
    first[i] = crc >>> 0;
  }
  for (let i = 0; i < 256; i++) {
    for (let t = 1; t < 8; t++) {
      const previous = tables[t - 1]![i]!;
      tables[t]![i] = (previous >>> 8) ^ first[previous & 0xff]!;
    }
  }
  return tables;
}

/**
 * Computes the CRC-32C of `bytes`, optionally continuing from an earlier result.
 *
 * @param bytes The data.
 * @param previous The CRC of the data before `bytes`, to checksum in pieces. @default 0
 * @returns The CRC as an unsigned 32-bit integer.
 */
export function crc32c(bytes: Uint8Array, previous = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES as [
    Uint32Array,
    Uint32Array,
    Uint32Array,
    Uint32Array,
    Uint32Array,
    Uint32Array,
    Uint32Array,
    Uint32Array,
  ];
  let crc = ~previous >>> 0;
  let i = 0;
  const end8 = bytes.length - (bytes.length % 8);
  while (i < end8) {
    const low =
      (crc ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24))) >>>
      0;
    crc = t7[low & 0xff]! ^ t6[(low >>> 8) & 0xff]! ^ t5[(low >>> 16) & 0xff]! ^ t4[low >>> 24]! ^
      t3[bytes[i + 4]!]! ^ t2[bytes[i + 5]!]! ^ t1[bytes[i + 6]!]! ^ t0[bytes[i + 7]!]!;
    i += 8;
  }
  while (i < bytes.length) crc = (crc >>> 8) ^ t0[(crc ^ bytes[i++]!) & 0xff]!;
  return ~crc >>> 0;
}

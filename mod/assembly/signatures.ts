/**
 * Recognises data that `create` must not overwrite without `--force`:
 * filesystems, partition tables, RAID/LVM/LUKS members, swap, and dm-remap
 * metadata of another setup. Like wipefs, it reads a few known offsets.
 *
 * @module
 */

import type { Device } from "../device/device.ts";
import { readCopies } from "../metadata/spare_store.ts";

interface Signature {
  offsetBytes: number;
  bytes: number[];
  what: string;
}

const ascii = (text: string) => [...text].map((char) => char.charCodeAt(0));

/** Offsets from each format's published layout. */
const SIGNATURES: readonly Signature[] = [
  { offsetBytes: 1080, bytes: [0x53, 0xef], what: "an ext2/3/4 filesystem" },
  { offsetBytes: 0, bytes: ascii("XFSB"), what: "an XFS filesystem" },
  { offsetBytes: 65600, bytes: ascii("_BHRfS_M"), what: "a btrfs filesystem" },
  { offsetBytes: 3, bytes: ascii("NTFS    "), what: "an NTFS filesystem" },
  { offsetBytes: 82, bytes: ascii("FAT32   "), what: "a FAT32 filesystem" },
  { offsetBytes: 0, bytes: [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe], what: "a LUKS volume" },
  { offsetBytes: 512, bytes: ascii("LABELONE"), what: "an LVM physical volume" },
  { offsetBytes: 512, bytes: ascii("EFI PART"), what: "a GPT partition table" },
  { offsetBytes: 4096, bytes: [0xfc, 0x4e, 0x2b, 0xa9], what: "an md RAID member (1.2)" },
  { offsetBytes: 0, bytes: [0xfc, 0x4e, 0x2b, 0xa9], what: "an md RAID member (1.1)" },
  { offsetBytes: 4086, bytes: ascii("SWAPSPACE2"), what: "a swap area" },
  { offsetBytes: 510, bytes: [0x55, 0xaa], what: "a partition table or boot sector" },
];

const PROBE_BYTES = 128 * 1024;

/**
 * Describes what `device` holds, if it is something worth keeping.
 *
 * @returns A phrase like "an ext2/3/4 filesystem", or `undefined` for blank or unknown contents.
 */
export async function detectContents(device: Device): Promise<string | undefined> {
  const copies = await readCopies(device);
  const setupCopy = copies.find((copy) => copy.valid);
  if (setupCopy?.valid) {
    const { setup, spareIndex } = setupCopy.payload;
    return `dm-remap metadata (spare ${spareIndex} of setup "${setup.name}", ${setup.uuid})`;
  }
  const probe = new Uint8Array(Math.min(PROBE_BYTES, device.sizeBytes));
  await device.read(probe, 0);
  for (const signature of SIGNATURES) {
    const end = signature.offsetBytes + signature.bytes.length;
    if (
      end <= probe.length &&
      signature.bytes.every((byte, i) => probe[signature.offsetBytes + i] === byte)
    ) {
      return signature.what;
    }
  }
  return undefined;
}

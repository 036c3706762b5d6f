/**
 * Which disks answer SMART for a disk path of a setup: the physical disks
 * under it. A partition's SMART is its whole disk's; a device-mapper or md
 * device's is that of each disk in its `slaves/`, followed down
 * (`storage_stack.ts`). Loop devices and files are not followed: the disk
 * under an image file holds other data, and is not the setup's disk.
 *
 * @module
 */

import { storageStackOf, type StorageStackOptions } from "../device/storage_stack.ts";

/**
 * The disks to read SMART from for `path`.
 *
 * @param path A main disk or spare of a setup.
 * @returns The physical disks under it (`/dev/NAME`), or `[path]` itself when
 *   it lies on no other block device (a whole disk, a loop device, a file) or
 *   cannot be examined.
 */
export async function smartDisksOf(
  path: string,
  options: StorageStackOptions = {},
): Promise<string[]> {
  let stack;
  try {
    stack = await storageStackOf(path, options);
  } catch {
    return [path];
  }
  if (stack.top.kind !== "block") return [path];
  // The stack lists links nearest first: a link's upper node is always reached before it.
  const followed = new Map([[stack.top.key, path]]);
  const withDisksBelow = new Set<string>();
  for (const link of stack.below) {
    if (link.via !== "partition" && link.via !== "stacked") continue;
    if (!followed.has(link.above)) continue;
    followed.set(link.node.key, link.node.label);
    withDisksBelow.add(link.above);
  }
  return [...followed].filter(([key]) => !withDisksBelow.has(key)).map(([, label]) => label);
}

/**
 * The block devices the kernel has, from /sys/class/block: whole disks,
 * partitions, loop, dm and md devices, each as its `/dev` node. Left out:
 * devices of size 0 (an empty drive, an unbound loop device), RAM disks
 * (`ram*`, `zram*`), and the devices dm-remap setups export (`nbd*`,
 * `ublkb*`), which hold a setup's client data, never a setup's own disks.
 *
 * @module
 */

import { readAttribute } from "./_sysfs.ts";

/** Names of block devices that are never a setup's disk. */
const NOT_SETUP_DISKS = /^(ram|zram|nbd|ublkb)\d/;

/** Options for {@link listBlockDevices}. */
export interface ListBlockDevicesOptions {
  /** Where sysfs is mounted; tests point it at a fake tree. @default "/sys" */
  sysfsRoot?: string;
  /** Where the device nodes are. @default "/dev" */
  devDirectory?: string;
}

/**
 * The block devices that may hold a setup's disks, sorted by name.
 *
 * @returns Their `/dev` paths; none when sysfs cannot be read (not Linux, a
 * container without it).
 */
export async function listBlockDevices(options: ListBlockDevicesOptions = {}): Promise<string[]> {
  const classDirectory = `${options.sysfsRoot ?? "/sys"}/class/block`;
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(classDirectory)) names.push(entry.name);
  } catch {
    return [];
  }
  const devices = [];
  for (const name of names.sort()) {
    if (NOT_SETUP_DISKS.test(name)) continue;
    const sectors = await readAttribute(`${classDirectory}/${name}/size`);
    if (sectors === undefined || Number(sectors) === 0) continue;
    // A loop device is bound while it names its backing file.
    if (name.startsWith("loop")) {
      if (await readAttribute(`${classDirectory}/${name}/loop/backing_file`) === undefined) {
        continue;
      }
    }
    devices.push(`${options.devDirectory ?? "/dev"}/${name}`);
  }
  return devices;
}

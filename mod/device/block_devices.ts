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

/**
 * The backend identifier a setup's kernel NBD device records
 * (`/sys/block/nbdN/backend`): a later server finds the device by it, and
 * the kernel refuses to let a server with another one take it over.
 */
export function nbdBackendOf(setupUuid: string): string {
  return `dm-remap:${setupUuid}`;
}

/**
 * The NBD devices attached for setups, by setup UUID, from their backend
 * identifiers (see {@link nbdBackendOf}).
 *
 * @returns `/dev/nbdN` by UUID; empty when sysfs cannot be read.
 */
export async function attachedNbdDevices(
  options: Pick<ListBlockDevicesOptions, "sysfsRoot"> = {},
): Promise<Map<string, string>> {
  const blockDirectory = `${options.sysfsRoot ?? "/sys"}/block`;
  const devices = new Map<string, string>();
  const prefix = nbdBackendOf("");
  try {
    for await (const entry of Deno.readDir(blockDirectory)) {
      if (!/^nbd\d+$/.test(entry.name)) continue;
      const backend = await readAttribute(`${blockDirectory}/${entry.name}/backend`);
      if (backend?.startsWith(prefix)) {
        devices.set(backend.slice(prefix.length), `/dev/${entry.name}`);
      }
    }
  } catch {
    // No sysfs: no attached devices to report.
  }
  return devices;
}

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

/**
 * What identifies a main disk across reboots: its kind, size, and for block
 * devices the serial number, WWN and model that the kernel reports in sysfs.
 * Paths like `/dev/sdb` change between boots; these do not.
 *
 * @module
 */

import { DeviceOpenError } from "../errors.ts";

/** What {@link probeDeviceIdentity} found. */
export interface DeviceIdentity {
  kind: "file" | "block";
  sizeBytes: number;
  serial?: string;
  wwn?: string;
  model?: string;
}

/** Options for {@link probeDeviceIdentity}. */
export interface ProbeDeviceIdentityOptions {
  /** Where sysfs is mounted; tests point it at a fake tree. @default "/sys" */
  sysfsRoot?: string;
}

/**
 * Probes a file or block device without opening it, so a busy device can be probed.
 *
 * A block device is found in sysfs by its major:minor number
 * (`/sys/dev/block/M:m`); a partition reports its whole disk's serial, WWN
 * and model. Attributes the kernel does not provide are left out.
 *
 * @param path The file or device node; symbolic links are followed.
 * @param options Where sysfs is.
 * @returns Kind and size, plus serial, WWN and model when sysfs has them.
 * @throws {DeviceOpenError} When the path is missing or is neither a regular file nor a block device.
 *
 * @example
 * ```ts ignore
 * import { probeDeviceIdentity } from "./probe_device_identity.ts";
 * const identity = await probeDeviceIdentity("/dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K1234567");
 * console.log(identity.serial); // "WD-WCC7K1234567"
 * ```
 */
export async function probeDeviceIdentity(
  path: string,
  options: ProbeDeviceIdentityOptions = {},
): Promise<DeviceIdentity> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    const code = error instanceof Deno.errors.NotFound ? "ENOENT" : "EACCES";
    throw new DeviceOpenError(
      path,
      `it cannot be examined: ${(error as Error).message}`,
      code,
      error,
    );
  }
  if (info.isFile) return { kind: "file", sizeBytes: info.size };
  if (!info.isBlockDevice || info.rdev === null) {
    throw new DeviceOpenError(
      path,
      "it is neither a regular file nor a block device: give a disk or image path",
      "EINVAL",
    );
  }
  const sysfsRoot = options.sysfsRoot ?? "/sys";
  const directory = `${sysfsRoot}/dev/block/${majorOf(info.rdev)}:${minorOf(info.rdev)}`;
  const sectors = await readAttribute(`${directory}/size`);
  if (sectors === undefined) {
    throw new DeviceOpenError(
      path,
      `its size is missing from sysfs (${directory}/size): is sysfs mounted?`,
      "ENOENT",
    );
  }
  // A partition's identity is its disk's: sysfs nests partitions inside the disk's directory.
  const disk = await readAttribute(`${directory}/partition`) === undefined
    ? directory
    : `${await Deno.realPath(directory)}/..`;
  const identity: DeviceIdentity = { kind: "block", sizeBytes: Number(sectors) * 512 };
  const serial = await firstAttribute([`${disk}/device/serial`, `${disk}/serial`]) ??
    await vpdSerial(`${disk}/device/vpd_pg80`);
  const wwn = await firstAttribute([`${disk}/wwid`, `${disk}/device/wwid`]);
  const model = await firstAttribute([`${disk}/device/model`]);
  if (serial) identity.serial = serial;
  if (wwn) identity.wwn = wwn;
  if (model) identity.model = model;
  return identity;
}

/** glibc's `gnu_dev_major`, over a 64-bit `dev_t`. */
function majorOf(rdev: number): number {
  const dev = BigInt(rdev);
  return Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
}

/** glibc's `gnu_dev_minor`. */
function minorOf(rdev: number): number {
  const dev = BigInt(rdev);
  return Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
}

/** A sysfs attribute, trimmed; undefined when missing or empty. */
async function readAttribute(path: string): Promise<string | undefined> {
  try {
    const text = (await Deno.readTextFile(path)).trim();
    return text === "" ? undefined : text;
  } catch {
    return undefined;
  }
}

async function firstAttribute(paths: readonly string[]): Promise<string | undefined> {
  for (const path of paths) {
    const value = await readAttribute(path);
    if (value !== undefined) return value;
  }
  return undefined;
}

/** The serial from SCSI VPD page 0x80: a 4-byte header (length in byte 3), then ASCII. */
async function vpdSerial(path: string): Promise<string | undefined> {
  let page: Uint8Array;
  try {
    page = await Deno.readFile(path);
  } catch {
    return undefined;
  }
  if (page.length < 4) return undefined;
  const serial = new TextDecoder().decode(page.subarray(4, 4 + page[3]!)).trim();
  return serial === "" ? undefined : serial;
}

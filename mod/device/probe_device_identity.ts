/**
 * What identifies a main disk across reboots, in layers from strong to weak:
 * the hardware's serial number, WWN and model that the kernel reports in
 * sysfs, and the `/dev/disk/by-id` names udev makes from them; for a block
 * device without them (a virtual disk, a dm device), its device number; for a
 * file, the device and inode of the file. Paths like `/dev/sdb` or
 * `./main.img` name a disk for a moment; these identify it.
 *
 * @module
 */

import { DeviceOpenError } from "../errors.ts";
import { readAttribute } from "./_sysfs.ts";
import { deviceNumberOf, statDevicePath } from "./storage_stack.ts";

/** What {@link probeDeviceIdentity} found. */
export interface DeviceIdentity {
  kind: "file" | "block";
  sizeBytes: number;
  serial?: string;
  wwn?: string;
  model?: string;
  /**
   * `major:minor`: a block device's own number, or for a file the number of
   * the device holding its filesystem. Absent in setups made before it was recorded.
   */
  deviceNumber?: string;
  /** A file's inode number. */
  inode?: number;
  /** The `/dev/disk/by-id` links to a block device, when udev made any. */
  byId?: string[];
  /**
   * Where a partition lies on its disk (whose serial and WWN it reports):
   * two partitions of one disk differ here.
   */
  partition?: { number: number; startSector: number };
}

/** Options for {@link probeDeviceIdentity}. */
export interface ProbeDeviceIdentityOptions {
  /** Where sysfs is mounted; tests point it at a fake tree. @default "/sys" */
  sysfsRoot?: string;
  /** Where udev keeps the by-id links. @default "/dev/disk/by-id" */
  byIdDirectory?: string;
}

/**
 * Probes a file or block device without opening it, so a busy device can be probed.
 *
 * A block device is found in sysfs by its major:minor number
 * (`/sys/dev/block/M:m`); a partition reports its whole disk's serial, WWN
 * and model, and its own number and start sector. Attributes the kernel does
 * not provide are left out.
 *
 * @param path The file or device node; symbolic links are followed.
 * @param options Where sysfs and the by-id links are.
 * @returns Kind and size; a file's filesystem device number and inode; a block
 * device's number, and its serial, WWN, model and by-id links when it has them.
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
  const info = await statDevicePath(path);
  if (info.isFile) {
    return {
      kind: "file",
      sizeBytes: info.size,
      deviceNumber: deviceNumberOf(info.dev),
      inode: info.ino!,
    };
  }
  // statDevicePath() let only files and block devices through: this is a block device.
  const rdev = info.rdev!;
  const sysfsRoot = options.sysfsRoot ?? "/sys";
  const directory = `${sysfsRoot}/dev/block/${deviceNumberOf(rdev)}`;
  const sectors = await readAttribute(`${directory}/size`);
  if (sectors === undefined) {
    throw new DeviceOpenError(
      path,
      `its size is missing from sysfs (${directory}/size): is sysfs mounted?`,
      "ENOENT",
    );
  }
  // A partition's hardware identity is its disk's: sysfs nests partitions inside the disk's directory.
  const partitionNumber = await readAttribute(`${directory}/partition`);
  const disk = partitionNumber === undefined ? directory : `${await Deno.realPath(directory)}/..`;
  const identity: DeviceIdentity = { kind: "block", sizeBytes: Number(sectors) * 512 };
  const byId = await byIdLinksOf(rdev, options.byIdDirectory ?? BY_ID_DIRECTORY);
  const serial = await firstAttribute([`${disk}/device/serial`, `${disk}/serial`]) ??
    await vpdSerial(`${disk}/device/vpd_pg80`);
  const wwn = await firstAttribute([`${disk}/wwid`, `${disk}/device/wwid`]);
  const model = await firstAttribute([`${disk}/device/model`]);
  if (serial) identity.serial = serial;
  if (wwn) identity.wwn = wwn;
  if (model) identity.model = model;
  identity.deviceNumber = deviceNumberOf(rdev);
  const startSector = await readAttribute(`${directory}/start`);
  if (partitionNumber !== undefined && startSector !== undefined) {
    identity.partition = { number: Number(partitionNumber), startSector: Number(startSector) };
  }
  if (byId.length > 0) identity.byId = byId;
  return identity;
}

/** Where udev links disks by their hardware identity. */
export const BY_ID_DIRECTORY = "/dev/disk/by-id";

/**
 * The path to record for a disk: for a block device its first `/dev/disk/by-id`
 * link (WWN first), else the stable name it was given (`/dev/mapper/…`,
 * `/dev/disk/…`), else its real path; for a file its real, absolute path.
 *
 * @param path The path as given; relative paths are taken from the current directory.
 * @param identity What {@link probeDeviceIdentity} found for it.
 */
export async function canonicalPathOf(path: string, identity: DeviceIdentity): Promise<string> {
  const preferred =
    [...identity.byId ?? []].sort((a, b) =>
      Number(!a.includes("/wwn-")) - Number(!b.includes("/wwn-")) || a.localeCompare(b)
    )[0];
  if (preferred) return preferred;
  const absolute = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  if (identity.kind === "block" && /^\/dev\/(mapper|disk)\//.test(absolute)) return absolute;
  return await Deno.realPath(path);
}

/** The by-id links that resolve to the block device `rdev`, sorted. */
async function byIdLinksOf(rdev: number, directory: string): Promise<string[]> {
  const links: string[] = [];
  try {
    for await (const entry of Deno.readDir(directory)) {
      const link = `${directory}/${entry.name}`;
      try {
        if ((await Deno.stat(link)).rdev === rdev) links.push(link);
      } catch {
        // A dangling link names a disk that is gone.
      }
    }
  } catch {
    return [];
  }
  return links.sort();
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

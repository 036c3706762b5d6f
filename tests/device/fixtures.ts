/**
 * Disks for the device tests: sparse image files, a directory where direct
 * I/O works, and loop block devices.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceOpenError } from "../../mod/errors.ts";
import { openFileDevice } from "../../mod/device/file_device.ts";

/** Makes a sparse zero-filled image of `sizeBytes` in a new temporary directory. */
export async function makeSparseImage(
  sizeBytes: number,
  options: { directory?: string } = {},
): Promise<{ path: string; cleanup(): Promise<void> }> {
  const directory = await Deno.makeTempDir({
    dir: options.directory,
    prefix: "dm-remap-device-test-",
  });
  const path = `${directory}/disk.img`;
  await Deno.writeFile(path, new Uint8Array());
  await Deno.truncate(path, sizeBytes);
  return { path, cleanup: () => Deno.remove(directory, { recursive: true }) };
}

let directCapable: Promise<string> | undefined;

/**
 * A directory on a filesystem that accepts O_DIRECT: the system temporary
 * directory if it does (tmpfs only gained O_DIRECT in Linux 6.6), else one
 * on the disk that holds the project.
 *
 * @throws {Error} When no candidate accepts O_DIRECT.
 */
export function directCapableDirectory(): Promise<string> {
  directCapable ??= findDirectCapableDirectory();
  return directCapable;
}

async function findDirectCapableDirectory(): Promise<string> {
  // Last resort: beside the tests, on the disk that holds the project.
  const besideTests = new URL("./.tmp", import.meta.url).pathname;
  const candidates = [Deno.env.get("TMPDIR") ?? "/tmp", "/var/tmp", besideTests];
  for (const directory of candidates) {
    await Deno.mkdir(directory, { recursive: true });
    const image = await makeSparseImage(4096, { directory });
    try {
      const device = await openFileDevice(image.path, { direct: true });
      await device.close();
      return directory;
    } catch (error) {
      if (!(error instanceof DeviceOpenError && error.code === "EINVAL")) throw error;
    } finally {
      await image.cleanup();
    }
  }
  throw new Error(`No directory accepts O_DIRECT: tried ${candidates.join(", ")}`);
}

/** A loop block device over an image file; `detach` releases it. */
export interface LoopDevice {
  path: string;
  detach(): Promise<void>;
}

/**
 * Attaches `losetup --find` to an image (needs root and /dev/loop-control).
 *
 * @throws {Error} When losetup fails: a setup failure, not a skip.
 */
export async function attachLoopDevice(imagePath: string): Promise<LoopDevice> {
  const output = await new Deno.Command("losetup", { args: ["--find", "--show", imagePath] })
    .output();
  const path = new TextDecoder().decode(output.stdout).trim();
  if (!output.success || !path.startsWith("/dev/loop")) {
    throw new Error(
      `Cannot attach a loop device to "${imagePath}": ${new TextDecoder().decode(output.stderr)}`,
    );
  }
  return {
    path,
    async detach() {
      const detached = await new Deno.Command("losetup", { args: ["--detach", path] }).output();
      if (!detached.success) {
        throw new Error(`Cannot detach "${path}": ${new TextDecoder().decode(detached.stderr)}`);
      }
    },
  };
}

/** Block devices of the fake tree: kernel name, number, where sysfs keeps it, what it lies on. */
export const DEVICES: { name: string; number: string; directory: string; files?: string[] }[] = [
  { name: "sdz", number: "240:0", directory: "devices/pci0/block/sdz" },
  { name: "sdz1", number: "240:1", directory: "devices/pci0/block/sdz/sdz1", files: ["partition"] },
  { name: "sdz2", number: "240:2", directory: "devices/pci0/block/sdz/sdz2", files: ["partition"] },
  { name: "sdy", number: "240:16", directory: "devices/pci0/block/sdy" },
  { name: "dm-7", number: "241:7", directory: "devices/virtual/block/dm-7" },
  { name: "dm-8", number: "241:8", directory: "devices/virtual/block/dm-8" },
  { name: "dm-9", number: "241:9", directory: "devices/virtual/block/dm-9" },
  { name: "md9", number: "242:9", directory: "devices/virtual/block/md9" },
];

/** Who is stacked on whom: holder → slaves. */
export const SLAVES: Record<string, string[]> = {
  "dm-7": ["sdz1"], // an LVM volume on the first partition
  "dm-8": ["sdz1"], // another volume on the same partition
  "dm-9": ["sdz"], // a linear map of the whole disk
  "md9": ["sdz2", "sdy"], // a RAID over a partition and a whole disk
};

/**
 * A fake sysfs tree and device nodes (mknod, needs root) with partitions, dm and md devices
 * stacked as {@link SLAVES} says, for storage-stack tests.
 */
export async function fakeTree(): Promise<
  { root: string; nodes: string; cleanup: () => Promise<void> }
> {
  const root = await Deno.makeTempDir({ prefix: "dm-remap-stack-" });
  const sysfs = `${root}/sys`;
  const nodes = `${root}/dev`;
  await Deno.mkdir(`${sysfs}/dev/block`, { recursive: true });
  await Deno.mkdir(nodes);
  const byName = new Map(DEVICES.map((device) => [device.name, device]));
  for (const device of DEVICES) {
    const directory = `${sysfs}/${device.directory}`;
    await Deno.mkdir(`${directory}/slaves`, { recursive: true });
    await Deno.writeTextFile(`${directory}/dev`, `${device.number}\n`);
    for (const file of device.files ?? []) await Deno.writeTextFile(`${directory}/${file}`, "1\n");
    await Deno.symlink(`../../${device.directory}`, `${sysfs}/dev/block/${device.number}`);
    const [major, minor] = device.number.split(":");
    const made = await new Deno.Command("mknod", {
      args: [`${nodes}/${device.name}`, "b", major!, minor!],
    }).output();
    assert.ok(made.success, new TextDecoder().decode(made.stderr));
  }
  for (const [holder, slaves] of Object.entries(SLAVES)) {
    for (const slave of slaves) {
      await Deno.symlink(
        `${sysfs}/${byName.get(slave)!.directory}`,
        `${sysfs}/${byName.get(holder)!.directory}/slaves/${slave}`,
      );
    }
  }
  return { root: sysfs, nodes, cleanup: () => Deno.remove(root, { recursive: true }) };
}

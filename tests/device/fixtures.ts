/**
 * Disks for the device tests: sparse image files, a directory where direct
 * I/O works, and loop block devices.
 *
 * @module
 */

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

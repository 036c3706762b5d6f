/**
 * Opening the devices a command names, with the identity the setup records.
 *
 * @module
 */

import type { Device } from "../device/device.ts";
import { openFileDevice } from "../device/file_device.ts";
import { probeDeviceIdentity } from "../device/probe_device_identity.ts";
import type { ProbedIdentity } from "../assembly/identity.ts";
import { discoverSetups, type FoundSetup, listCandidates } from "../assembly/discover.ts";
import { SetupMismatchError, UsageError } from "../errors.ts";
import { STATE_DIR } from "./options.ts";

/** An opened device and what was probed of it. */
export interface OpenedDevice {
  device: Device;
  identity: ProbedIdentity;
}

/**
 * Opens a path as a device, probing its identity first.
 *
 * Devices that serve data are opened with O_DIRECT (`direct`): through the
 * page cache a write to a failing sector "succeeds" into the cache and its
 * error only surfaces at the next fsync, when nobody knows which block
 * failed, and a cached read hides a sector that went bad.
 */
export async function openPath(
  path: string,
  options: { readOnly: boolean; direct?: boolean },
): Promise<OpenedDevice> {
  const probed = await probeDeviceIdentity(path);
  const device = await openFileDevice(path, {
    readOnly: options.readOnly,
    exclusive: !options.readOnly,
    direct: options.direct ?? false,
  });
  return { device, identity: { path, ...probed } };
}

/** Closes devices, ignoring failures: used on error paths where the first error matters. */
export async function closeAll(devices: Iterable<Device>): Promise<void> {
  await Promise.allSettled([...devices].map((device) => device.close()));
}

/**
 * Finds the spares of the setup called `name` on this machine's disks and
 * in the scan directories.
 *
 * @throws {UsageError} When no setup or more than one setup has that name.
 */
export async function findSetupByName(name: string, scanDirs: string[]): Promise<FoundSetup> {
  const directories = scanDirs.length > 0 ? scanDirs : [STATE_DIR];
  const found = (await discoverSetups(
    await listCandidates(directories),
    (path) => openFileDevice(path, { readOnly: true }),
  )).filter((setup) => setup.name === name);
  if (found.length === 0) {
    throw new UsageError(
      `No setup named "${name}" on this machine's block devices or in ${directories.join(", ")}: ` +
        `check the name, or name its spares with --spare`,
    );
  }
  if (found.length > 1) {
    throw new SetupMismatchError(
      name,
      `${found.length} setups have this name (${
        found.map((setup) => setup.uuid).join(", ")
      }); name the spares with --spare`,
    );
  }
  return found[0]!;
}

/** Spare paths from --spare, or from discovery by name. */
export async function resolveSparePaths(
  name: string | undefined,
  sparePaths: string[],
  scanDirs: string[],
): Promise<{ sparePaths: string[]; mainPathHint?: string }> {
  if (sparePaths.length > 0) return { sparePaths };
  if (name === undefined) throw new UsageError("Name the setup, or its spares with --spare");
  const setup = await findSetupByName(name, scanDirs);
  const bySpareIndex = new Map(setup.spares.map((spare) => [spare.spareIndex, spare.path]));
  return {
    sparePaths: [...bySpareIndex.entries()].sort(([a], [b]) => a - b).map(([, path]) => path),
    mainPathHint: setup.mainPath,
  };
}

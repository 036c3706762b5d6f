/**
 * Opening the devices a setup is made of, with what they are: the identity
 * the setup records, and the storage they lie on (to refuse two names of one
 * disk).
 *
 * @module
 */

import type { Device } from "../device/device.ts";
import { openFileDevice } from "../device/file_device.ts";
import { canonicalPathOf, probeDeviceIdentity } from "../device/probe_device_identity.ts";
import { type StorageStack, storageStackOf } from "../device/storage_stack.ts";
import type { ProbedIdentity } from "./identity.ts";

/** An opened device and what was probed of it. */
export interface OpenedDevice {
  device: Device;
  /** Its identity; `path` is the canonical path (absolute, by-id for disks that have one). */
  identity: ProbedIdentity;
}

/** What a path is, found without opening it. */
export interface ProbedPath {
  /** The path as given. */
  given: string;
  identity: ProbedIdentity;
  stack: StorageStack;
}

/**
 * Finds what a path is without opening it: its identity, canonical path and storage stack.
 *
 * @throws {DeviceOpenError} When the path is missing or neither a file nor a block device.
 */
export async function probePath(path: string): Promise<ProbedPath> {
  const probed = await probeDeviceIdentity(path);
  return {
    given: path,
    identity: { path: await canonicalPathOf(path, probed), ...probed },
    stack: await storageStackOf(path),
  };
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
  const identity = { path: await canonicalPathOf(path, probed), ...probed };
  const device = await openFileDevice(path, {
    readOnly: options.readOnly,
    exclusive: !options.readOnly,
    direct: options.direct ?? false,
  });
  return { device, identity };
}

/** Closes devices, ignoring failures: used on error paths where the first error matters. */
export async function closeAll(devices: Iterable<Device>): Promise<void> {
  await Promise.allSettled([...devices].map((device) => device.close()));
}

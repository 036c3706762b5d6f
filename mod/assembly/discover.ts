/**
 * Finding setups from the disks alone: every candidate device is probed for
 * metadata copies, and spares are grouped by setup.
 *
 * Candidates are the block devices the kernel lists in /proc/partitions plus
 * the image files in the given directories. Probing only reads.
 *
 * @module
 */

import type { Device } from "../device/device.ts";
import { readCopies } from "../metadata/spare_store.ts";
import { compareCopies, type ValidCopy } from "../metadata/superblock.ts";

/** A spare found on a candidate device. */
export interface FoundSpare {
  path: string;
  spareIndex: number;
  generation: number;
  sequence: number;
}

/** A setup found on the disks. */
export interface FoundSetup {
  uuid: string;
  name: string;
  /** The main disk path last recorded. */
  mainPath: string;
  spareCount: number;
  spares: FoundSpare[];
}

/** Lists candidate paths: block devices from /proc/partitions, then image files in `directories`. */
export async function listCandidates(directories: readonly string[]): Promise<string[]> {
  const candidates: string[] = [];
  try {
    const partitions = await Deno.readTextFile("/proc/partitions");
    for (const line of partitions.split("\n").slice(2)) {
      const name = line.trim().split(/\s+/)[3];
      if (name && !name.startsWith("ram") && !name.startsWith("nbd")) {
        candidates.push(`/dev/${name}`);
      }
    }
  } catch {
    // Not Linux or no procfs: only the directories are searched.
  }
  for (const directory of directories) {
    try {
      for await (const entry of Deno.readDir(directory)) {
        if (entry.isFile && entry.name.endsWith(".img")) {
          candidates.push(`${directory}/${entry.name}`);
        }
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return candidates;
}

/**
 * Probes candidates and groups the spares found by setup.
 *
 * @param candidates Paths to probe.
 * @param openDevice Opens a path read-only; failures (busy, no permission) skip the path.
 */
export async function discoverSetups(
  candidates: readonly string[],
  openDevice: (path: string) => Promise<Device>,
): Promise<FoundSetup[]> {
  const setups = new Map<string, FoundSetup>();
  const winners = await probeCandidates(
    candidates,
    openDevice,
    async (device) =>
      (await readCopies(device))
        .filter((copy): copy is ValidCopy => copy.valid)
        .sort((a, b) => compareCopies(a.header, b.header))[0],
  );
  for (const { path, found: winner } of winners) {
    const { setup, spareIndex, spares, main } = winner.payload;
    const found = setups.get(setup.uuid) ??
      {
        uuid: setup.uuid,
        name: setup.name,
        mainPath: main.path,
        spareCount: spares.length,
        spares: [],
      };
    found.spares.push({
      path,
      spareIndex,
      generation: setup.generation,
      sequence: winner.header.sequence,
    });
    setups.set(setup.uuid, found);
  }
  return [...setups.values()];
}

/**
 * Opens each candidate in turn, asks `probe` what is on it, and closes it.
 * Paths that cannot be opened are skipped.
 *
 * @returns The paths where `probe` found something, in candidate order.
 */
export async function probeCandidates<T>(
  candidates: readonly string[],
  openDevice: (path: string) => Promise<Device>,
  probe: (device: Device) => Promise<T | undefined>,
): Promise<{ path: string; found: T }[]> {
  const results: { path: string; found: T }[] = [];
  for (const path of candidates) {
    let device: Device;
    try {
      device = await openDevice(path);
    } catch {
      continue;
    }
    try {
      const found = await probe(device);
      if (found !== undefined) results.push({ path, found });
    } finally {
      await device.close();
    }
  }
  return results;
}

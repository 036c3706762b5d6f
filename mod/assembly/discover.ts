/**
 * Finding setups from the disks alone: every candidate device is probed for
 * metadata copies, and spares are grouped by setup.
 *
 * Candidates are the block devices in /sys/class/block (whole disks,
 * partitions, bound loop devices, dm and md devices; `listBlockDevices` in
 * `device/block_devices.ts` says which are left out), plus the image files
 * (`*.img`) in the scan directories. Probing only reads: {@link discover}
 * runs each probe on a worker with a deadline (`probe_pool.ts`) and judges
 * what it found (`discovery_report.ts`).
 *
 * @module
 */

import { assert } from "../assert.ts";
import { DISCOVER_CANDIDATES_MAX } from "../constants.ts";
import type { Device } from "../device/device.ts";
import { UsageError } from "../errors.ts";
import { readCopies } from "../metadata/spare_store.ts";
import { compareCopies, type ServingMarker, type ValidCopy } from "../metadata/superblock.ts";
import {
  attachedNbdDevices,
  listBlockDevices,
  type ListBlockDevicesOptions,
} from "../device/block_devices.ts";
import { setupFingerprintOf, ublkDevicesByFingerprint } from "../sys/ublk_control.ts";
import { buildDiscoveryReport, type DiscoveryReport, type LastStop } from "./discovery_report.ts";
import type { Prober } from "./probe_pool.ts";

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

/** Options for {@link listCandidates}. */
export interface ListCandidatesOptions extends ListBlockDevicesOptions {
  /** Include the block devices of sysfs. @default true */
  blockDevices?: boolean;
}

/**
 * Lists candidate paths: block devices from /sys/class/block, then the image
 * files (`*.img`) in `directories` (missing directories are skipped).
 */
export async function listCandidates(
  directories: readonly string[],
  options: ListCandidatesOptions = {},
): Promise<string[]> {
  const candidates = options.blockDevices === false ? [] : await listBlockDevices(options);
  for (const directory of directories) {
    try {
      const names = [];
      for await (const entry of Deno.readDir(directory)) {
        if (entry.isFile && entry.name.endsWith(".img")) names.push(entry.name);
      }
      candidates.push(...names.sort().map((name) => `${directory}/${name}`));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return candidates;
}

/** Options for {@link discover}. */
export interface DiscoverOptions extends ListCandidatesOptions {
  /** Probe only these paths (`discover DEV...`). @default every candidate */
  paths?: readonly string[];
  /** Directories searched for image files. */
  scanDirs: readonly string[];
  /** Runs the probes: a `ProbePool`'s workers with a deadline, or `probeInProcess` in tests. */
  prober: Prober;
  /** How a setup's last serve ended (`shutdownStateOf` of the service layer). */
  lastStopOf: (marker: ServingMarker | undefined) => LastStop;
}

/**
 * Probes every candidate and reports the setups found. The main disk of a
 * setup is looked for among the candidates, then at the path it was last
 * recorded at (a file outside the scan directories); either way it is
 * recognised by its recorded identity, never by its path.
 *
 * @throws {UsageError} When there are more than {@link DISCOVER_CANDIDATES_MAX} candidates.
 */
export async function discover(options: DiscoverOptions): Promise<DiscoveryReport> {
  const startMs = performance.now();
  const candidates = [...new Set(options.paths ?? await listCandidates(options.scanDirs, options))];
  if (candidates.length > DISCOVER_CANDIDATES_MAX) {
    throw new UsageError(
      `Cannot discover setups: ${candidates.length} candidates, more than ` +
        `${DISCOVER_CANDIDATES_MAX}; name the devices to probe`,
    );
  }
  const outcomes = await options.prober(candidates);
  const first = buildDiscoveryReport(outcomes, { lastStopOf: options.lastStopOf });
  const hints = [
    ...new Set(
      first.setups.filter((setup) => setup.main.path === undefined)
        .map((setup) => setup.main.recordedPath)
        .filter((path) => !candidates.includes(path)),
    ),
  ];
  // A recorded path where nothing is now is no candidate: it is left out, not listed as unreadable.
  const found = (await options.prober(hints)).filter((outcome) => outcome.probe?.identity);
  assert(outcomes.length === candidates.length, "one outcome per candidate");
  const attached = await attachedNbdDevices({ sysfsRoot: options.sysfsRoot });
  const report = buildDiscoveryReport([...outcomes, ...found], {
    lastStopOf: options.lastStopOf,
    elapsedMs: performance.now() - startMs,
  });
  // ublk devices carry the setup's fingerprint (docs/ublk.md). The kernel is asked only when
  // there are setups and sysfs is the real one (tests give a fake tree and no kernel).
  const ublk = report.setups.length > 0 && options.sysfsRoot === undefined
    ? await ublkDevicesByFingerprint()
    : new Map<bigint, string>();
  for (const setup of report.setups) {
    const device = attached.get(setup.uuid) ?? ublk.get(setupFingerprintOf(setup.uuid));
    if (device !== undefined) setup.kernelDevice = device;
  }
  return report;
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

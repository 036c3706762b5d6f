/**
 * Assembling a setup from its disks: every spare opened and checked against
 * the others, the main disk checked against the recorded identity, then the
 * remap engine built over them.
 *
 * Like `mdadm --assemble`, it refuses rather than guesses: a spare of another
 * setup, a missing spare, or a main disk that is not the recorded one stops
 * assembly before anything is written.
 *
 * @module
 */

import type { Device } from "../device/device.ts";
import { SetupMismatchError } from "../errors.ts";
import { type SpareReport, SpareStore } from "../metadata/spare_store.ts";
import type { SuperblockPayload } from "../metadata/superblock.ts";
import { RemapDevice, type RemapDeviceOptions, type SpareMember } from "../remap/remap_device.ts";
import { identityMismatch, type ProbedIdentity } from "./identity.ts";

/** The spares of one setup, opened and ordered by spare index. */
export interface OpenedSpares {
  /** The newest setup-wide description (highest generation). */
  description: SuperblockPayload;
  stores: SpareStore[];
  reports: SpareReport[];
}

/** Options for {@link openSpares}. */
export interface OpenSparesOptions {
  /** Rewrite stale or invalid copies. @default true */
  repair?: boolean;
}

/**
 * Opens every spare and checks they form one complete setup.
 *
 * @throws {NoValidCopyError} When a spare has no valid copy.
 * @throws {SetupMismatchError} When spares belong to different setups, repeat, or one is missing.
 */
export async function openSpares(
  devices: Device[],
  options: OpenSparesOptions = {},
): Promise<OpenedSpares> {
  const opened = [];
  for (const device of devices) {
    opened.push(await SpareStore.open(device, { repair: options.repair ?? true }));
  }
  const first = opened[0]!.store.payload;
  const description = opened.reduce(
    (newest, { store }) =>
      store.payload.setup.generation > newest.setup.generation ? store.payload : newest,
    first,
  );
  const bySpareIndex = new Map<number, (typeof opened)[number]>();
  for (const entry of opened) {
    const payload = entry.store.payload;
    if (payload.setup.uuid !== description.setup.uuid) {
      throw new SetupMismatchError(
        entry.store.device.name,
        `it is a spare of setup "${payload.setup.name}" (${payload.setup.uuid}), not of "${description.setup.name}" ` +
          `(${description.setup.uuid}); give only the spares of one setup`,
      );
    }
    const recorded = description.spares[payload.spareIndex];
    if (!recorded || recorded.uuid !== payload.spares[payload.spareIndex]!.uuid) {
      throw new SetupMismatchError(
        entry.store.device.name,
        `spare ${payload.spareIndex} is not in the setup's list`,
      );
    }
    if (bySpareIndex.has(payload.spareIndex)) {
      throw new SetupMismatchError(
        entry.store.device.name,
        `it is spare ${payload.spareIndex}, which "${
          bySpareIndex.get(payload.spareIndex)!.store.device.name
        }" is too`,
      );
    }
    bySpareIndex.set(payload.spareIndex, entry);
  }
  const missing = description.spares.filter((spare) => !bySpareIndex.has(spare.index));
  if (missing.length > 0) {
    const list = missing.map((spare) =>
      `spare ${spare.index} (${spare.uuid}, last seen at "${spare.path}")`
    ).join(", ");
    throw new SetupMismatchError(
      description.setup.name,
      `missing ${list}; the data remapped to it would be unreadable. Attach it and name it with --spare`,
    );
  }
  const ordered = description.spares.map((spare) => bySpareIndex.get(spare.index)!);
  return {
    description,
    stores: ordered.map((entry) => entry.store),
    reports: ordered.map((entry) => entry.report),
  };
}

/**
 * Checks the main disk against the setup and builds the remap engine.
 *
 * @throws {SetupMismatchError} When the main disk is not the recorded one.
 */
export async function assembleSetup(
  main: { device: Device; identity: ProbedIdentity },
  spares: OpenedSpares,
  options: RemapDeviceOptions = {},
): Promise<RemapDevice> {
  const { description } = spares;
  const mismatch = await identityMismatch(description.main, main.identity);
  if (mismatch) {
    throw new SetupMismatchError(
      main.identity.path,
      `it is not the main disk of setup "${description.setup.name}": ${mismatch}. Name the right one with --main`,
    );
  }
  const members: SpareMember[] = spares.stores.map((store, index) => ({
    index,
    device: store.device,
    store,
    active: description.spares[index]!.state === "active",
  }));
  return new RemapDevice(description.setup.name, main.device, members, {
    pending: description.pending,
    degraded: description.setup.state === "degraded",
    ...options,
  });
}

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
import { RefusedError, SetupMismatchError } from "../errors.ts";
import { mergeViews, viewIsComplete } from "../metadata/setup_tables.ts";
import { checkpointBytesFor, holdsPeers } from "../metadata/spare_layout.ts";
import { type SpareReport, SpareStore } from "../metadata/spare_store.ts";
import {
  FORMAT_VERSION,
  type MainIdentity,
  type SuperblockPayload,
} from "../metadata/superblock.ts";
import { RemapDevice, type RemapDeviceOptions } from "../remap/remap_device.ts";
import type { SpareMember } from "../remap/spare_set.ts";
import { type IdentityMismatch, identityMismatch, type ProbedIdentity } from "./identity.ts";

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
  const stores = ordered.map((entry) => entry.store);
  const tables = mergeViews(stores, description.spares.length);
  if (options.repair ?? true) await completeViews(stores, description, tables);
  return {
    description,
    stores: ordered.map((entry) => entry.store),
    reports: ordered.map((entry) => entry.report),
  };
}

/**
 * Writes the setup's tables to every active spare whose view lacks part of
 * them (format version 2: each spare knows every spare's slots), which also
 * finishes the upgrade of a version-1 setup, whose spares know only their own.
 *
 * @throws {RefusedError} When a spare's checkpoint regions cannot hold every
 *   spare's table (a version-1 spare laid out for its own slots only).
 */
async function completeViews(
  stores: readonly SpareStore[],
  description: SuperblockPayload,
  tables: readonly (readonly number[])[],
): Promise<void> {
  const slotsTotal = stores.reduce((sum, store) => sum + store.payload.layout.slotCount, 0);
  const active = stores.filter((store) =>
    description.spares[store.payload.spareIndex]!.state === "active"
  );
  for (const store of active) {
    const { layout } = store.payload;
    if (stores.length > 1 && !holdsPeers(layout, slotsTotal - layout.slotCount)) {
      throw new RefusedError(
        store.device.name,
        `Cannot record every spare's remaps on spare ${store.payload.spareIndex} ` +
          `("${store.device.name}"): its checkpoint regions hold ${layout.checkpointBytes} bytes, ` +
          `the ${stores.length} spares' ${slotsTotal} slots need ` +
          `${checkpointBytesFor(layout.slotCount, slotsTotal - layout.slotCount)}; a setup ` +
          `created before format version 2 with spares this large cannot be upgraded in place ` +
          `yet; keep serving it with the version that created it; nothing was written`,
      );
    }
  }
  for (const store of active) {
    if (!viewIsComplete(store, tables) || store.formatVersion < FORMAT_VERSION) {
      await store.resync(tables);
    }
  }
}

/**
 * Checks that a probed device is the setup's main disk.
 *
 * @param options `force`: accept a replaceable device (same kind and size,
 *   another identity); the caller then records its identity.
 * @returns The mismatch that `force` accepted, or undefined when the device is the main disk.
 * @throws {SetupMismatchError} When it is not, saying what differs and how to proceed.
 */
export function checkMainIdentity(
  description: SuperblockPayload,
  probed: ProbedIdentity,
  options: { force?: boolean } = {},
): IdentityMismatch | undefined {
  const mismatch = identityMismatch(description.main, probed);
  if (mismatch === undefined || (mismatch.replaceable && options.force)) return mismatch;
  const replace = mismatch.replaceable
    ? `; if the main disk was replaced by this one, pass --force to accept it and record its identity`
    : "";
  throw new SetupMismatchError(
    probed.path,
    `it is not the main disk of setup "${description.setup.name}": ${mismatch.reason}. ` +
      `Name the right one with --main${replace}`,
  );
}

/**
 * Records a new identity of the main disk on every spare (a replaced disk
 * accepted with `--force`, or the layers a setup from an older version lacks),
 * with the next generation.
 */
export async function recordMainIdentity(spares: OpenedSpares, main: MainIdentity): Promise<void> {
  const { description } = spares;
  const generation = description.setup.generation + 1;
  // A failed spare takes no metadata writes, as in the engine: its older generation loses.
  const active = spares.stores.filter((_, index) => description.spares[index]!.state === "active");
  for (const store of active) {
    await store.writeMetadata((payload) => {
      payload.main = main;
      payload.setup.generation = generation;
    });
  }
  spares.description = structuredClone(active[0]?.payload ?? description);
}

/**
 * Checks the main disk against the setup and builds the remap engine.
 *
 * @throws {SetupMismatchError} When the main disk is not the recorded one (as a rejection).
 */
export function assembleSetup(
  main: { device: Device; identity: ProbedIdentity },
  spares: OpenedSpares,
  options: RemapDeviceOptions = {},
): Promise<RemapDevice> {
  const { description } = spares;
  try {
    checkMainIdentity(description, main.identity);
  } catch (error) {
    return Promise.reject(error);
  }
  const members: SpareMember[] = spares.stores.map((store, index) => ({
    index,
    device: store.device,
    store,
    state: description.spares[index]!.state,
  }));
  return Promise.resolve(
    new RemapDevice(description.setup.name, main.device, members, {
      pending: description.pending,
      degraded: description.setup.state === "degraded",
      ...options,
    }),
  );
}

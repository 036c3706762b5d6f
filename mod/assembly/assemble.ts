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
import {
  checkpointBytesFor,
  computeLayout,
  holdsPeers,
  minimumSpareBytes,
  type SpareLayout,
} from "../metadata/spare_layout.ts";
import { MissingDevice } from "../device/missing_device.ts";
import { isAllocationPolicy } from "../remap/allocation_policy.ts";
import { type SpareReport, SpareStore } from "../metadata/spare_store.ts";
import {
  FORMAT_VERSION,
  type MainIdentity,
  type SpareRecord,
  type SuperblockPayload,
} from "../metadata/superblock.ts";
import { RemapDevice, type RemapDeviceOptions } from "../remap/remap_device.ts";
import type { SpareMember } from "../remap/spare_set.ts";
import { type IdentityMismatch, identityMismatch, type ProbedIdentity } from "./identity.ts";

/** The spares of one setup, opened and ordered by spare index. */
export interface OpenedSpares {
  /** The newest setup-wide description (highest generation). */
  description: SuperblockPayload;
  /** The spares present, in spare index order (`payload.spareIndex` names each). */
  stores: SpareStore[];
  /** What opening each of `stores` found, in the same order. */
  reports: SpareReport[];
  /** The setup's spares that were not given (only with `allowMissing`). */
  missing: SpareRecord[];
}

/** Options for {@link openSpares}. */
export interface OpenSparesOptions {
  /** Rewrite stale or invalid copies. @default true */
  repair?: boolean;
  /**
   * Open a setup with spares missing: every spare knows every spare's slots
   * (format version 2), so the blocks on a missing spare are known and are
   * refused (EIO), never read from the main disk. @default false
   */
  allowMissing?: boolean;
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
    if (leftOut(payload, description)) continue;
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
  const missing = description.spares.filter((spare) =>
    !bySpareIndex.has(spare.index) && spare.state !== "removed"
  );
  if (missing.length > 0 && !options.allowMissing) {
    const list = missing.map((spare) =>
      `spare ${spare.index} (${spare.uuid}, last seen at "${spare.path}")`
    ).join(", ");
    throw new SetupMismatchError(
      description.setup.name,
      `missing ${list}; the data remapped to it would be unreadable. Attach it and name it with --spare`,
    );
  }
  const ordered = description.spares.flatMap((spare) => bySpareIndex.get(spare.index) ?? []);
  const stores = ordered.map((entry) => entry.store);
  if (options.repair ?? true) await completeSpareLists(stores, description);
  const tables = mergeViews(stores, description.spares.length);
  if (options.repair ?? true) await completeViews(stores, description, tables);
  return { description, stores, reports: ordered.map((entry) => entry.report), missing };
}

/**
 * Whether a spare given to assembly is left out of the setup: one that left
 * it (`removed`, its metadata not yet erased when a crash came), or one whose
 * `spare add` was cut short before any spare listed it (generation 0, see
 * `RemapDevice.addSpare`). Neither holds a block of the setup.
 */
function leftOut(payload: SuperblockPayload, description: SuperblockPayload): boolean {
  if (payload.setup.uuid !== description.setup.uuid) return false;
  const recorded = description.spares[payload.spareIndex];
  if (recorded === undefined || recorded.uuid !== payload.spares[payload.spareIndex]!.uuid) {
    return payload.setup.generation === 0;
  }
  return recorded.state === "removed";
}

/**
 * Lists on every spare the spares that joined the setup (`spare add`) where
 * a crash came before its list was written: the description, the newest
 * list, names them all.
 */
async function completeSpareLists(
  stores: readonly SpareStore[],
  description: SuperblockPayload,
): Promise<void> {
  for (const store of stores) {
    if (store.payload.spares.length < description.spares.length) {
      await store.joinSpares(description.spares, description.setup.generation);
    }
  }
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
  // A missing spare's slots are counted by its recorded size, as create laid it out at most.
  const present = new Set(stores.map((store) => store.payload.spareIndex));
  const slotsTotal = stores.reduce((sum, store) => sum + store.payload.layout.slotCount, 0) +
    description.spares.filter((record) => !present.has(record.index)).reduce(
      // A removed spare's slots are all known (and vacated); it takes no more.
      (sum, record) =>
        sum +
        (record.state === "removed"
          ? tables[record.index]!.length
          : computeLayout(record.sizeBytes, description.setup.blockBytes)?.slotCount ?? 0),
      0,
    );
  // A spare back after the setup ran without it is brought up to date too.
  const active = stores.filter((store) =>
    description.spares[store.payload.spareIndex]!.state !== "failed"
  );
  for (const store of active) {
    const { layout } = store.payload;
    if (description.spares.length > 1 && !holdsPeers(layout, slotsTotal - layout.slotCount)) {
      throw new RefusedError(
        store.device.name,
        `Cannot record every spare's remaps on spare ${store.payload.spareIndex} ` +
          `("${store.device.name}"): its checkpoint regions hold ${layout.checkpointBytes} bytes, ` +
          `the ${description.spares.length} spares' ${slotsTotal} slots need ` +
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
 * The layout of a spare the setup is served without. Its device fails every
 * request, so the layout only numbers its slots for the planner: the one
 * `create` computes for its recorded size alone, which has at least as many
 * slots as the spare's real layout (that one also holds the others' tables).
 */
function missingSpareLayout(record: SpareRecord, description: SuperblockPayload): SpareLayout {
  const { blockBytes } = description.setup;
  return computeLayout(record.sizeBytes, blockBytes) ??
    computeLayout(minimumSpareBytes(blockBytes), blockBytes)!;
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
  const active = spares.stores.filter((store) =>
    description.spares[store.payload.spareIndex]!.state === "active"
  );
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
  const members: SpareMember[] = description.spares.map((record) => {
    const store = record.state === "removed"
      ? undefined
      : spares.stores.find((each) => each.payload.spareIndex === record.index);
    if (store !== undefined) {
      // A spare that was missing is up to date again (openSpares' resync): it serves again.
      const state = record.state === "missing" ? "active" : record.state;
      return {
        index: record.index,
        device: store.device,
        store,
        layout: store.payload.layout,
        state,
      };
    }
    return {
      index: record.index,
      device: new MissingDevice(
        `spare ${record.index} (${record.uuid}, last seen at "${record.path}")`,
        record.sizeBytes,
      ),
      store: undefined,
      layout: missingSpareLayout(record, description),
      state: record.state === "failed" || record.state === "removed" ? record.state : "missing",
    };
  });
  return Promise.resolve(
    new RemapDevice(description.setup.name, main.device, members, {
      pending: description.pending,
      placement: isAllocationPolicy(description.setup.allocation)
        ? description.setup.allocation
        : "fill-first",
      degraded: description.setup.state === "degraded",
      ...options,
    }),
  );
}

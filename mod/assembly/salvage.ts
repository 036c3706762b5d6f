/**
 * Salvaging spares whose copies are all lost when no backup exists: each
 * spare's log says whose spare it is and the setup's block size, and its log
 * and sealed checkpoints prove its table (`table_proof.ts`); the layout is
 * recomputed from the spare's size as `create` computed it.
 *
 * What the spares cannot say comes from the command line or is new, and the
 * plan says so: the setup's name (given), the main disk's identity (probed
 * from the disk given), the spares' UUIDs (new), the pending list (empty) and
 * the creation time (now). A device whose log holds no record cannot be
 * proven to be a spare, so it cannot be rebuilt; a spare index that no given
 * device has is refused, because the blocks remapped to it would be lost.
 *
 * @module
 */

import type { Device } from "../device/device.ts";
import { RefusedError, SetupMismatchError, UsageError } from "../errors.ts";
import { computeLayout, type SpareLayout } from "../metadata/spare_layout.ts";
import { readCopies } from "../metadata/spare_store.ts";
import {
  type LogHead,
  type ProvenTable,
  proveTable,
  readLogHead,
} from "../metadata/table_proof.ts";
import { spareRecordsFor } from "./create.ts";
import { probeCandidates } from "./discover.ts";
import { mainIdentityOf, type ProbedIdentity } from "./identity.ts";
import { checkPlanTables, type RebuildPlan } from "./rebuild.ts";
import type { NamedDevice } from "./restore.ts";

/** What salvage found on one device. */
export interface SalvagedSpare extends NamedDevice {
  /** Valid metadata copies it still has (a spare with any is repaired, not salvaged). */
  validCopies: number;
  /** Its log's first sector, when it has one. */
  head?: LogHead;
  layout?: SpareLayout;
  proof?: ProvenTable;
}

/** What salvage found on all the devices given. */
export interface Salvage {
  setupUuid: string;
  blockBytes: number;
  spares: SalvagedSpare[];
}

/**
 * Reads each device's log and checkpoints and proves its table, reading only.
 *
 * @param blockBytes The block size, needed only when no log records it (logs written before it was recorded).
 * @throws {SetupMismatchError} When the logs name different setups, one spare twice, or different block sizes.
 * @throws {RefusedError} When no device has a log, or a table cannot be proven.
 * @throws {UsageError} When no log records the block size and none was given.
 */
export async function salvageSpares(
  devices: readonly NamedDevice[],
  options: { blockBytes?: number } = {},
): Promise<Salvage> {
  const spares: SalvagedSpare[] = [];
  for (const named of devices) {
    const copies = await readCopies(named.device);
    spares.push({
      ...named,
      validCopies: copies.filter((copy) => copy.valid).length,
      head: await readLogHead(named.device),
    });
  }
  const logged = spares.filter((spare) => spare.head);
  const first = logged[0];
  if (!first) {
    throw new RefusedError(
      devices[0]?.path ?? "",
      `None of ${devices.map((named) => `"${named.path}"`).join(", ")} holds a remap log ` +
        `record: there is nothing to salvage from; nothing was written`,
    );
  }
  const setupUuid = first.head!.setupUuid;
  for (const spare of logged) {
    const other = logged.find((each) =>
      each !== spare && each.head!.spareIndex === spare.head!.spareIndex
    );
    if (spare.head!.setupUuid !== setupUuid) {
      throw new SetupMismatchError(
        spare.path,
        `its remap log is of setup ${spare.head!.setupUuid}, "${first.path}"'s of ${setupUuid}: ` +
          `salvage one setup at a time`,
      );
    }
    if (other) {
      throw new SetupMismatchError(
        spare.path,
        `it and "${other.path}" are both spare ${spare.head!.spareIndex}: give each spare once`,
      );
    }
  }
  const blockBytes = blockBytesOf(logged, options.blockBytes);
  for (const spare of logged) {
    spare.layout = computeLayout(spare.device.sizeBytes, blockBytes);
    if (!spare.layout) {
      throw new RefusedError(
        spare.path,
        `"${spare.path}" is too small for a spare of block size ${blockBytes}; nothing was written`,
      );
    }
    spare.proof = await proveTable(spare.device, spare.layout, {
      identity: { setupUuid, spareIndex: spare.head!.spareIndex },
    });
  }
  return { setupUuid, blockBytes, spares };
}

/** The block size the logs record, checked against `--block-size` when both exist. */
function blockBytesOf(logged: readonly SalvagedSpare[], given: number | undefined): number {
  const recorded = [...new Set(logged.map((spare) => spare.head!.blockBytes))].filter((bytes) =>
    bytes !== 0
  );
  if (recorded.length > 1) {
    throw new SetupMismatchError(
      logged[0]!.path,
      `the logs record different block sizes (${recorded.join(", ")})`,
    );
  }
  const found = recorded[0];
  if (found !== undefined && given !== undefined && found !== given) {
    throw new SetupMismatchError(
      logged[0]!.path,
      `its remap log records block size ${found}, not ${given}: leave out --block-size`,
    );
  }
  const blockBytes = found ?? given;
  if (blockBytes === undefined) {
    throw new UsageError(
      "The remap logs were written before dm-remap recorded the block size in them: " +
        "give the setup's block size with --block-size",
    );
  }
  return blockBytes;
}

/** Options for {@link planSalvage}. */
export interface SalvagePlanOptions {
  /** The setup's name, lost with the copies. */
  name: string;
  /** The main disk as probed, recorded as `create` records it. */
  main: ProbedIdentity;
  /** Spares of this setup found on other devices, by index and path. */
  elsewhere: readonly { spareIndex: number; path: string }[];
}

/**
 * Plans the rebuild of the salvaged spares' copies.
 *
 * @throws {RefusedError} When a device has no log or still has valid copies, or a spare is missing.
 */
export async function planSalvage(
  salvage: Salvage,
  options: SalvagePlanOptions,
): Promise<RebuildPlan> {
  const found = everySpareOnce(salvage, options.elsewhere);
  const records = spareRecordsFor(found);
  const main = await mainIdentityOf(options.main);
  const setup = {
    uuid: salvage.setupUuid,
    name: options.name,
    blockBytes: salvage.blockBytes,
    createdMs: Date.now(),
    generation: 1,
    state: "clean" as const,
  };
  const plan: RebuildPlan = {
    setup,
    spares: found.map((spare, spareIndex) => ({
      device: spare.device,
      path: spare.path,
      payload: {
        setup,
        main,
        spares: records,
        spareIndex,
        layout: spare.layout!,
        pending: [],
        health: {},
        scan: {},
      },
      proof: spare.proof!,
      sequence: 1,
      identifiedBy: "named by its remap log",
    })),
    notes: [
      `the name "${options.name}" and the main disk "${options.main.path}" are as given; ` +
      `the spares get new UUIDs and the pending list is empty (they were in the lost copies)`,
    ],
  };
  checkPlanTables(plan, options.main.sizeBytes);
  return plan;
}

/**
 * The salvaged spares in spare order, refusing any set the copies cannot be
 * rebuilt from: a device with valid copies or no log, or a spare index missing.
 */
function everySpareOnce(
  salvage: Salvage,
  elsewhere: SalvagePlanOptions["elsewhere"],
): SalvagedSpare[] {
  for (const spare of salvage.spares) {
    if (spare.validCopies > 0) {
      throw new RefusedError(
        spare.path,
        `"${spare.path}" still has ${spare.validCopies} valid metadata copies: ` +
          `run "dm-remap check --repair ${spare.path}" instead; nothing was written`,
      );
    }
    if (!spare.head) {
      throw new RefusedError(
        spare.path,
        `"${spare.path}" holds no remap log record, so nothing proves it is a spare of setup ` +
          `${salvage.setupUuid}: leave it out (it holds no remaps); nothing was written`,
      );
    }
  }
  const found = salvage.spares.toSorted((a, b) => a.head!.spareIndex - b.head!.spareIndex);
  for (const [index, spare] of found.entries()) {
    if (spare.head!.spareIndex === index) continue;
    const there = elsewhere.find((other) => other.spareIndex === index);
    throw new RefusedError(
      spare.path,
      `spare ${index} of setup ${salvage.setupUuid} is not given` +
        (there ? ` (its log is on "${there.path}")` : "") +
        `: the blocks remapped to it would be lost; give every spare; nothing was written`,
    );
  }
  const beyond = elsewhere.find((other) => other.spareIndex >= found.length);
  if (beyond) {
    throw new RefusedError(
      beyond.path,
      `"${beyond.path}" holds the log of spare ${beyond.spareIndex} of setup ` +
        `${salvage.setupUuid}, which is not given: give every spare; nothing was written`,
    );
  }
  return found;
}

/**
 * Looks for spares of the setup on other devices (their logs name it), so a
 * spare left out is named instead of silently dropped.
 *
 * @param openDevice Opens a path read-only; paths that cannot be opened are skipped.
 */
export async function findOtherSpares(
  salvage: Salvage,
  candidates: readonly string[],
  openDevice: (path: string) => Promise<Device>,
): Promise<{ spareIndex: number; path: string }[]> {
  const known = new Set(salvage.spares.map((spare) => spare.head?.spareIndex));
  const others: { spareIndex: number; path: string }[] = [];
  const heads = await probeCandidates(
    candidates,
    openDevice,
    (device) => readLogHead(device).catch(() => undefined),
  );
  for (const { path, found } of heads) {
    if (found.setupUuid !== salvage.setupUuid || known.has(found.spareIndex)) continue;
    others.push({ spareIndex: found.spareIndex, path });
    known.add(found.spareIndex);
  }
  return others;
}

/**
 * Restoring spares whose copies are all lost from a metadata backup, as
 * `vgcfgrestore` does for LVM: the backup gives the setup's description
 * (identities, spares, layouts); each spare's own log and checkpoints give its
 * table, including every remap made after the backup.
 *
 * Refused, with nothing written: a device that still has a valid copy (serve
 * repairs it), a device whose log names another setup or spare than the
 * backup has, a device of another size, and a backup whose mappings the
 * spare's own log or checkpoints contradict (an older history than the disk's).
 *
 * @module
 */

import type { Device } from "../device/device.ts";
import { RefusedError, SetupMismatchError } from "../errors.ts";
import { payloadFromBackup, type SetupBackup, type SpareBackup } from "../metadata/setup_backup.ts";
import { readCopies } from "../metadata/spare_store.ts";
import type { ValidCopy } from "../metadata/superblock.ts";
import { type LogHead, proveTable, readLogHead } from "../metadata/table_proof.ts";
import { checkPlanTables, type RebuildPlan, type SpareRebuild } from "./rebuild.ts";

/** A device named for the rebuild, and the path it was named by. */
export interface NamedDevice {
  device: Device;
  path: string;
}

/** Options for {@link planRestore}. */
export interface RestoreOptions {
  /** The backup file, for messages. */
  source: string;
  /**
   * Rebuild a device whose log holds no record as the unused spare of its
   * size, although nothing on it proves it is that spare. @default false
   */
  force?: boolean;
}

/**
 * Plans the restore of `devices` from `backup`, reading only.
 *
 * @throws {SetupMismatchError} When a device belongs to another setup or spare, or has another size.
 * @throws {RefusedError} When a device still has valid copies, cannot be identified, or its table contradicts the backup.
 */
export async function planRestore(
  backup: SetupBackup,
  devices: readonly NamedDevice[],
  options: RestoreOptions,
): Promise<RebuildPlan> {
  const { setup } = backup;
  const claimed = new Map<number, NamedDevice & { identifiedBy: string }>();
  const unproven: NamedDevice[] = [];
  for (const named of devices) {
    await refuseLiveCopies(named, backup);
    const head = await readLogHead(named.device);
    if (!head) {
      unproven.push(named);
      continue;
    }
    const spare = spareNamedByLog(named, head, backup, options.source);
    claim(claimed, spare, { ...named, identifiedBy: "named by its remap log" });
  }
  for (const named of unproven) {
    const spare = backup.spares.find((each) =>
      !claimed.has(each.index) && each.slotBlocks.length === 0 &&
      each.sizeBytes === named.device.sizeBytes
    );
    if (!options.force || !spare) {
      throw new RefusedError(
        named.path,
        `"${named.path}" holds no remap log record, so nothing on it proves it is a spare of ` +
          `setup "${setup.name}" (${setup.uuid}). If it is the spare that never held a remap, ` +
          `check the device and pass --force; nothing was written`,
      );
    }
    claim(claimed, spare, {
      ...named,
      identifiedBy: "matched only by its size and empty log, --force",
    });
  }
  const spares: SpareRebuild[] = [];
  for (const [index, named] of claimed) {
    spares.push(await spareRebuild(backup, backup.spares[index]!, named, options.source));
  }
  const givenPaths = new Map([...claimed].map(([index, named]) => [index, named.path]));
  for (const spare of spares) {
    for (const [index, path] of givenPaths) spare.payload.spares[index]!.path = path;
  }
  const plan: RebuildPlan = {
    setup,
    spares,
    notes: backup.spares.filter((spare) => !claimed.has(spare.index)).map((spare) =>
      `spare ${spare.index} (${spare.uuid}, last at "${spare.path}") is not given: left as it is`
    ),
  };
  checkPlanTables(plan, backup.main.sizeBytes);
  return plan;
}

/** Refuses a device that still has a valid copy: of this setup (serve repairs it) or of another. */
async function refuseLiveCopies(named: NamedDevice, backup: SetupBackup): Promise<void> {
  const valid = (await readCopies(named.device)).filter((copy): copy is ValidCopy => copy.valid);
  if (valid.length === 0) return;
  const { setup, spareIndex } = valid[0]!.payload;
  if (setup.uuid !== backup.setup.uuid) {
    throw new SetupMismatchError(
      named.path,
      `it holds the metadata of setup "${setup.name}" (${setup.uuid}), not of ` +
        `"${backup.setup.name}" (${backup.setup.uuid}); nothing was written`,
    );
  }
  throw new RefusedError(
    named.path,
    `"${named.path}" still has ${valid.length} valid metadata copies (spare ${spareIndex} of ` +
      `"${setup.name}"): serve repairs the others, or run "dm-remap check --repair ${named.path}"; ` +
      `restore only rebuilds spares with none; nothing was written`,
  );
}

/** The backup's spare that a device's log names, checked against the device. */
function spareNamedByLog(
  named: NamedDevice,
  head: LogHead,
  backup: SetupBackup,
  source: string,
): SpareBackup {
  const { setup } = backup;
  if (head.setupUuid !== setup.uuid) {
    throw new SetupMismatchError(
      named.path,
      `its remap log says it is spare ${head.spareIndex} of setup ${head.setupUuid}, but backup ` +
        `"${source}" is of setup "${setup.name}" (${setup.uuid}): give the spares of that ` +
        `setup, or this setup's own backup; nothing was written`,
    );
  }
  const spare = backup.spares[head.spareIndex];
  if (!spare) {
    throw new SetupMismatchError(
      named.path,
      `its remap log says it is spare ${head.spareIndex}, but backup "${source}" lists ` +
        `${backup.spares.length} spares; nothing was written`,
    );
  }
  if (head.blockBytes !== 0 && head.blockBytes !== setup.blockBytes) {
    throw new SetupMismatchError(
      named.path,
      `its remap log has block size ${head.blockBytes}, backup "${source}" ` +
        `${setup.blockBytes}; nothing was written`,
    );
  }
  return spare;
}

function claim(
  claimed: Map<number, NamedDevice & { identifiedBy: string }>,
  spare: SpareBackup,
  named: NamedDevice & { identifiedBy: string },
): void {
  const other = claimed.get(spare.index);
  if (other) {
    throw new SetupMismatchError(
      named.path,
      `it and "${other.path}" are both spare ${spare.index}: give each spare once; ` +
        `nothing was written`,
    );
  }
  if (named.device.sizeBytes !== spare.sizeBytes) {
    throw new SetupMismatchError(
      named.path,
      `it is ${named.device.sizeBytes} bytes, spare ${spare.index} of the backup is ` +
        `${spare.sizeBytes}; nothing was written`,
    );
  }
  claimed.set(spare.index, named);
}

/** Proves one spare's table and checks the backup's mappings against it. */
async function spareRebuild(
  backup: SetupBackup,
  spare: SpareBackup,
  named: NamedDevice & { identifiedBy: string },
  source: string,
): Promise<SpareRebuild> {
  const proof = await proveTable(named.device, spare.layout, {
    identity: { setupUuid: backup.setup.uuid, spareIndex: spare.index },
    recordedTables: [spare.table],
  });
  const where = `spare ${spare.index} ("${named.path}")`;
  const differs = spare.slotBlocks.findIndex((block, slot) => proof.slotBlocks[slot] !== block);
  if (differs >= 0 && differs >= proof.slotBlocks.length) {
    throw new RefusedError(
      named.path,
      `Backup "${source}" (written ${backup.written}) lists ${spare.slotBlocks.length} ` +
        `mappings on ${where}, but its own log and checkpoints prove only ` +
        `${proof.slotBlocks.length}: the backup does not describe this disk; nothing was written`,
    );
  }
  if (differs >= 0) {
    throw new RefusedError(
      named.path,
      `Backup "${source}" (written ${backup.written}) says slot ${differs} of ${where} holds ` +
        `block ${spare.slotBlocks[differs]}, the spare's own remap log and checkpoints say block ` +
        `${proof.slotBlocks[differs]}: the disk's history differs from the backup's ` +
        `(rolled back or cloned since?); nothing was written`,
    );
  }
  return {
    device: named.device,
    path: named.path,
    payload: payloadFromBackup(backup, spare.index),
    proof,
    sequence: spare.sequence + 1,
    identifiedBy: named.identifiedBy,
  };
}

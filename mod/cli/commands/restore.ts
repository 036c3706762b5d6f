/**
 * `dm-remap restore <name|uuid> [--from <file>] --spare <dev>... [--yes] [--force]
 * [--backup-dir <dir>]`: rebuilds the metadata copies of spares whose copies
 * are all lost, from a metadata backup and each spare's own remap log and
 * checkpoints, like LVM's `vgcfgrestore`.
 *
 * It shows what it will write and asks first (`--yes` answers for you).
 * Exit 0 when written, 1 when the question was answered no, 2 for usage
 * (including no terminal and no `--yes`), 4 when refused; nothing is written
 * unless it exits 0.
 *
 * @module
 */

import { findBackup, readBackupFile } from "../../assembly/backup_directory.ts";
import { describeRebuild, writeRebuild } from "../../assembly/rebuild.ts";
import { type NamedDevice, planRestore } from "../../assembly/restore.ts";
import { RefusedError, UsageError } from "../../errors.ts";
import { backupAfter } from "../backup_after.ts";
import { confirmWrite } from "../confirm.ts";
import { closeAll, openPath } from "../../assembly/open_path.ts";
import { EXIT_OK, EXIT_PROBLEM_FOUND } from "../exit_codes.ts";
import type { CommandInput } from "../command.ts";
import { BACKUP_DIR, listOption, onePositional, stringOption } from "../options.ts";

/** Restores spares from a backup after showing the plan and asking. */
export async function restoreCommand(
  { values, positionals, output }: CommandInput,
): Promise<number> {
  const target = onePositional(positionals, "setup name or UUID", true)!;
  const sparePaths = listOption(values.spare);
  if (sparePaths.length === 0) {
    throw new UsageError("Name the spares whose copies to rebuild with --spare <dev>");
  }
  const backupDir = stringOption(values["backup-dir"]) ?? BACKUP_DIR;
  const from = stringOption(values.from);
  const { path: source, backup } = from === undefined
    ? await findBackup(backupDir, target)
    : { path: from, backup: await readBackupFile(from) };
  if (backup.setup.name !== target && backup.setup.uuid !== target) {
    throw new RefusedError(
      source,
      `Backup "${source}" is of setup "${backup.setup.name}" (${backup.setup.uuid}), not of ` +
        `"${target}": name that setup's backup with --from; nothing was written`,
    );
  }
  const devices: NamedDevice[] = [];
  try {
    for (const path of sparePaths) {
      // The canonical path is what the copies record, as create records it.
      const { device, identity } = await openPath(path, { readOnly: false });
      devices.push({ device, path: identity.path });
    }
    const plan = await planRestore(backup, devices, { source, force: values.force === true });
    output.out(`Restoring from backup "${source}" (written ${backup.written}, ${backup.reason}).`);
    for (const line of describeRebuild(plan)) output.out(line);
    for (const spare of plan.spares) {
      const listed = backup.spares[spare.payload.spareIndex]!.slotBlocks.length;
      output.out(
        `  spare ${spare.payload.spareIndex}: the backup lists ${listed} of its mappings, ` +
          `${spare.proof.slotBlocks.length - listed} were made after the backup`,
      );
    }
    if (!confirmWrite("Write these copies?", values.yes === true)) {
      output.out("Nothing was written.");
      return EXIT_PROBLEM_FOUND;
    }
    const stores = await writeRebuild(plan);
    const mappings = stores.reduce((sum, store) => sum + store.slotsUsed, 0);
    output.out(`Restored ${stores.length} spares with ${mappings} mappings in all.`);
    if (stores.length === backup.spares.length) {
      const ordered = stores.toSorted((a, b) => a.payload.spareIndex - b.payload.spareIndex);
      const written = await backupAfter("restore", ordered, {
        directory: stringOption(values["backup-dir"]),
        output,
      });
      if (written) output.out(`Backup: ${written}`);
    }
    output.out(`Serve it with: dm-remap serve ${backup.setup.name}`);
    return EXIT_OK;
  } finally {
    await closeAll(devices.map((named) => named.device));
  }
}

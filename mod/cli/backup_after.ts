/**
 * The backup a command writes after it changed a setup's metadata (`create`,
 * `restore`, `check --salvage --repair`), as LVM backs up after each change.
 *
 * @module
 */

import { writeBackup } from "../assembly/backup_directory.ts";
import { type BackupSource, setupBackupOf } from "../metadata/setup_backup.ts";
import type { CliOutput } from "./command.ts";
import { BACKUP_DIR } from "./options.ts";

/**
 * Writes the setup's backup to `directory` (default {@link BACKUP_DIR}). The
 * metadata on the spares is already written, so a failure is reported on
 * stderr and does not fail the command.
 *
 * @param sources Every spare of the setup, open, in spare order.
 * @returns The backup's path, or `undefined` when it could not be written.
 */
export async function backupAfter(
  reason: string,
  sources: readonly BackupSource[],
  options: { directory: string | undefined; output: CliOutput },
): Promise<string | undefined> {
  const directory = options.directory ?? BACKUP_DIR;
  try {
    return await writeBackup(directory, setupBackupOf(sources, { reason }));
  } catch (error) {
    options.output.err(
      `dm-remap: the setup's metadata is written, but its backup in ${directory} is not: ` +
        `${(error as Error).message}`,
    );
    return undefined;
  }
}

/**
 * The rule that the main disk and every spare are disks of their own: no two
 * of them may be the same file or device under two names, or share sectors
 * in another way (see `device/storage_stack.ts`). A spare's metadata and
 * slots written over the main disk would destroy the client's data, and two
 * spares on one file would overwrite each other's.
 *
 * @module
 */

import { overlapOf, type StorageStack } from "../device/storage_stack.ts";
import { RefusedError } from "../errors.ts";

/** One disk of a setup, with what it is. */
export interface SetupDisk {
  role: "main" | "spare";
  /** The path as given, for messages. */
  path: string;
  stack: StorageStack;
}

/**
 * Refuses disks that overlap, before anything is written.
 *
 * @param action What would be done, for the message: `create setup "x"`.
 * @throws {RefusedError} Naming the two disks and how they overlap.
 */
export function checkDistinctDisks(action: string, disks: readonly SetupDisk[]): void {
  for (let i = 0; i < disks.length; i++) {
    for (let j = i + 1; j < disks.length; j++) {
      const a = disks[i]!;
      const b = disks[j]!;
      const overlap = overlapOf(
        { name: nameOf(a), stack: a.stack },
        { name: nameOf(b), stack: b.stack },
      );
      if (overlap === undefined) continue;
      const harm = a.role === "main" || b.role === "main"
        ? "the spare's metadata and slots would overwrite the main disk's data"
        : "the two spares would overwrite each other";
      throw new RefusedError(
        b.path,
        `Cannot ${action}: ${overlap}, so ${harm}. Give each spare a disk of its own; ` +
          `nothing was written`,
      );
    }
  }
}

function nameOf(disk: SetupDisk): string {
  return disk.role === "main" ? `the main disk "${disk.path}"` : `spare "${disk.path}"`;
}

/**
 * The backup directory, laid out like LVM's `/etc/lvm/backup` and
 * `/etc/lvm/archive`:
 *
 * - `<dir>/<name>-<uuid>.json`: the current backup of each setup;
 * - `<dir>/archive/<name>-<uuid>-<written>.json`: the backups it replaced,
 *   named by when they were written, at most {@link BACKUP_ARCHIVE_MAX} per
 *   setup (the oldest are removed).
 *
 * A new backup is written to a temporary file and synced; the current one is
 * hard-linked into the archive; then the new file is renamed over it and the
 * directory synced, so a current backup exists at every moment.
 *
 * @module
 */

import { BACKUP_ARCHIVE_MAX } from "../constants.ts";
import { UsageError } from "../errors.ts";
import {
  type BackupSource,
  decodeBackup,
  encodeBackup,
  type SetupBackup,
  setupBackupOf,
} from "../metadata/setup_backup.ts";

/** A setup UUID is the last 36 characters of a backup's file name, before `.json`. */
const UUID_CHARS = 36;
const SUFFIX = ".json";

/** The path of a setup's current backup. */
export function currentBackupPath(directory: string, setup: { name: string; uuid: string }) {
  return `${directory}/${setup.name}-${setup.uuid}${SUFFIX}`;
}

/**
 * Writes `backup` as the setup's current backup and archives the one it replaces.
 *
 * @returns The path of the new current backup.
 */
export async function writeBackup(directory: string, backup: SetupBackup): Promise<string> {
  const archive = `${directory}/archive`;
  await Deno.mkdir(archive, { recursive: true });
  const current = currentBackupPath(directory, backup.setup);
  const temporary = `${current}.tmp`;
  const file = await Deno.open(temporary, { write: true, create: true, truncate: true });
  try {
    await file.write(new TextEncoder().encode(await encodeBackup(backup)));
    await file.syncData();
  } finally {
    file.close();
  }
  const replaced = await statIfExists(current);
  if (replaced) await archiveCopy(current, archive, replaced.mtime ?? new Date());
  await Deno.rename(temporary, current);
  await syncDirectory(directory);
  await pruneArchive(archive, `${backup.setup.name}-${backup.setup.uuid}-`);
  return current;
}

/**
 * Reads and checks a backup file.
 *
 * @throws {UsageError} When the file does not exist.
 * @throws {RefusedError} When it is not an intact backup.
 */
export async function readBackupFile(path: string): Promise<SetupBackup> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new UsageError(`No backup file "${path}": check the path given to --from`);
  }
  return decodeBackup(text, path);
}

/**
 * Finds the current backup of the setup called `nameOrUuid` (its name or UUID).
 *
 * @throws {UsageError} When there is none, or several setups of that name have one.
 */
export async function findBackup(
  directory: string,
  nameOrUuid: string,
): Promise<{ path: string; backup: SetupBackup }> {
  const matches: string[] = [];
  try {
    for await (const entry of Deno.readDir(directory)) {
      if (!entry.isFile || !entry.name.endsWith(SUFFIX)) continue;
      const stem = entry.name.slice(0, -SUFFIX.length);
      const uuid = stem.slice(-UUID_CHARS);
      const name = stem.slice(0, -UUID_CHARS - 1);
      if (uuid === nameOrUuid || name === nameOrUuid) matches.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (matches.length === 0) {
    throw new UsageError(
      `No backup of setup "${nameOrUuid}" in ${directory}: name a backup file with --from ` +
        `(older ones are in ${directory}/archive), or use "dm-remap check --salvage"`,
    );
  }
  if (matches.length > 1) {
    throw new UsageError(
      `${matches.length} setups called "${nameOrUuid}" have backups in ${directory} ` +
        `(${matches.join(", ")}): give the UUID instead of the name`,
    );
  }
  const path = `${directory}/${matches[0]}`;
  return { path, backup: await readBackupFile(path) };
}

/** Whether the setup's current backup exists and describes this generation. */
export async function isBackedUp(
  directory: string,
  setup: { name: string; uuid: string; generation: number },
): Promise<boolean> {
  let text: string;
  try {
    text = await Deno.readTextFile(currentBackupPath(directory, setup));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
  try {
    const backup = await decodeBackup(text, currentBackupPath(directory, setup));
    return backup.setup.uuid === setup.uuid && backup.setup.generation === setup.generation;
  } catch {
    // A damaged current backup is replaced by a good one.
    return false;
  }
}

async function statIfExists(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** Hard-links the current backup into the archive under the time it was written. */
async function archiveCopy(current: string, archive: string, written: Date): Promise<void> {
  const stem = current.slice(current.lastIndexOf("/") + 1, -SUFFIX.length);
  const stamp = written.toISOString().replaceAll(":", "");
  for (let attempt = 0;; attempt++) {
    // "~" sorts after ".", so a second backup in the same millisecond sorts after the first.
    const target = `${archive}/${stem}-${stamp}${attempt > 0 ? `~${attempt}` : ""}${SUFFIX}`;
    try {
      await Deno.link(current, target);
      await syncDirectory(archive);
      return;
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists) || attempt >= BACKUP_ARCHIVE_MAX) {
        throw error;
      }
    }
  }
}

/** Removes the oldest archived backups of one setup beyond {@link BACKUP_ARCHIVE_MAX}. */
async function pruneArchive(archive: string, prefix: string): Promise<void> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(archive)) {
    if (entry.isFile && entry.name.startsWith(prefix) && entry.name.endsWith(SUFFIX)) {
      names.push(entry.name);
    }
  }
  // The ISO timestamps in the names sort oldest first.
  names.sort();
  for (const name of names.slice(0, Math.max(0, names.length - BACKUP_ARCHIVE_MAX))) {
    await Deno.remove(`${archive}/${name}`);
  }
}

async function syncDirectory(path: string): Promise<void> {
  const directory = await Deno.open(path, { read: true });
  try {
    await directory.syncData();
  } finally {
    directory.close();
  }
}

/**
 * Keeps a running setup's backup current. A request takes a snapshot at once
 * (the caller holds the stores still) and writes it in the background, one
 * write at a time; when requests come faster than writes, the newest
 * snapshot waiting replaces the older one.
 */
export class BackupKeeper {
  readonly #directory: string;
  readonly #sources: () => readonly BackupSource[];
  readonly #report: (error: unknown) => void;
  #waiting: SetupBackup | undefined;
  #writing: Promise<void> | undefined;

  /**
   * @param sources The open spares of the setup, in spare order.
   * @param report Called with the error when a backup cannot be written; serving goes on.
   */
  constructor(
    directory: string,
    sources: () => readonly BackupSource[],
    report: (error: unknown) => void,
  ) {
    this.#directory = directory;
    this.#sources = sources;
    this.#report = report;
  }

  /** Backs up the setup as it is now. */
  request(reason: string): void {
    this.#waiting = setupBackupOf(this.#sources(), { reason });
    this.#writing ??= this.#drain().finally(() => this.#writing = undefined);
  }

  /** Backs up the setup unless its current backup already describes this generation. */
  async requestUnlessCurrent(reason: string): Promise<void> {
    const setup = this.#sources().map((source) => source.payload.setup).reduce((newest, each) =>
      each.generation > newest.generation ? each : newest
    );
    let current: boolean;
    try {
      current = await isBackedUp(this.#directory, setup);
    } catch (error) {
      this.#report(error);
      return;
    }
    // The snapshot is taken after the check, so a change made meanwhile is in it.
    if (!current) this.request(reason);
  }

  /** Resolves when every requested backup was written (or reported). */
  async idle(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  async #drain(): Promise<void> {
    for (let backup = this.#waiting; backup; backup = this.#waiting) {
      this.#waiting = undefined;
      try {
        await writeBackup(this.#directory, backup);
      } catch (error) {
        this.#report(error);
      }
    }
  }
}

/**
 * The backup directory: current backups, the archive and its retention,
 * finding a setup's backup by name or UUID, and a running setup backed up at
 * every new generation of its description.
 *
 * Method: backups of a memory setup (tests/remap/harness.ts) written into a
 * temporary directory; the engine's pending list changed to make a new generation.
 */

import assert from "node:assert/strict";
import {
  BackupKeeper,
  currentBackupPath,
  findBackup,
  isBackedUp,
  readBackupFile,
  writeBackup,
} from "../../mod/assembly/backup_directory.ts";
import { BACKUP_ARCHIVE_MAX } from "../../mod/constants.ts";
import { DeviceIoError, UsageError } from "../../mod/errors.ts";
import { setupBackupOf } from "../../mod/metadata/setup_backup.ts";
import { makeHarness } from "../remap/harness.ts";

async function withDirectory(test: (directory: string) => Promise<void>): Promise<void> {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-backup-" });
  try {
    await test(directory);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
}

async function archived(directory: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(`${directory}/archive`))).map((entry) => entry.name)
    .sort();
}

Deno.test("writeBackup() replaces the current backup and keeps the last BACKUP_ARCHIVE_MAX in the archive", async () => {
  await withDirectory(async (directory) => {
    const harness = await makeHarness();
    const stores = harness.engine.spares.map((spare) => spare.store!);
    const writes = BACKUP_ARCHIVE_MAX + 3;
    for (let i = 1; i <= writes; i++) {
      const backup = setupBackupOf(stores, { reason: `write ${i}` });
      assert.equal(
        await writeBackup(directory, backup),
        currentBackupPath(directory, backup.setup),
      );
    }
    const current = await readBackupFile(currentBackupPath(directory, stores[0]!.payload.setup));
    assert.equal(current.reason, `write ${writes}`);
    const names = await archived(directory);
    assert.equal(names.length, BACKUP_ARCHIVE_MAX);
    const reasons = [];
    for (const name of names) {
      reasons.push((await readBackupFile(`${directory}/archive/${name}`)).reason);
    }
    assert.deepEqual(
      reasons.toSorted((a, b) => Number(a.split(" ")[1]) - Number(b.split(" ")[1])),
      Array.from(
        { length: BACKUP_ARCHIVE_MAX },
        (_, i) => `write ${writes - BACKUP_ARCHIVE_MAX + i}`,
      ),
      "the oldest were removed",
    );
  });
});

Deno.test("findBackup() finds a setup's current backup by name or UUID, and says what to do when it cannot", async () => {
  await withDirectory(async (directory) => {
    const first = await makeHarness();
    const second = await makeHarness();
    const backupOf = (harness: typeof first) =>
      setupBackupOf(harness.engine.spares.map((spare) => spare.store!), { reason: "create" });
    await writeBackup(directory, backupOf(first));
    const uuid = first.engine.spares[0]!.store!.payload.setup.uuid;
    assert.equal((await findBackup(directory, "test")).backup.setup.uuid, uuid);
    assert.equal((await findBackup(directory, uuid)).backup.setup.uuid, uuid);
    await assert.rejects(
      findBackup(directory, "nosuch"),
      (error: Error) =>
        error instanceof UsageError &&
        /No backup of setup "nosuch" in .*: name a backup file with --from/.test(error.message),
    );
    await writeBackup(directory, backupOf(second));
    await assert.rejects(
      findBackup(directory, "test"),
      (error: Error) =>
        error instanceof UsageError &&
        /2 setups called "test" have backups .*: give the UUID/.test(error.message),
    );
    assert.equal((await findBackup(directory, uuid)).backup.setup.uuid, uuid);
  });
});

Deno.test("BackupKeeper backs up a running setup at each new generation, with the mappings made so far", async () => {
  await withDirectory(async (directory) => {
    const harness = await makeHarness({ spareCount: 2 });
    const failures: unknown[] = [];
    let engine = harness.engine;
    const keeper = new BackupKeeper(
      directory,
      () => engine.spares.map((spare) => spare.store!),
      (error) => failures.push(error),
    );
    engine = await harness.reopen({ onSetupWritten: () => keeper.request("setup state") });
    const setup = engine.spares[0]!.store!.payload.setup;
    await keeper.requestUnlessCurrent("serve start");
    await keeper.idle();
    assert.equal((await readBackupFile(currentBackupPath(directory, setup))).reason, "serve start");
    assert.equal(await isBackedUp(directory, setup), true);

    harness.faulty.addBadBlocks([3, 4].map((block) => block * 8));
    await engine.write(new Uint8Array(harness.blockBytes * 2).fill(7), 3 * harness.blockBytes);
    await keeper.idle();
    assert.deepEqual(await archived(directory), [], "remaps alone write no backup");

    harness.faulty.addBadBlocks([9 * 8], "read");
    await assert.rejects(
      engine.read(new Uint8Array(harness.blockBytes), 9 * harness.blockBytes),
      DeviceIoError,
    );
    await engine.persistState();
    await keeper.idle();
    const backup = await readBackupFile(currentBackupPath(directory, setup));
    assert.equal(backup.reason, "setup state");
    assert.equal(backup.setup.generation, setup.generation + 1);
    assert.deepEqual(backup.pending, [9]);
    assert.deepEqual(backup.spares[0]!.slotBlocks, [3, 4]);
    assert.equal((await archived(directory)).length, 1);
    assert.equal(await isBackedUp(directory, setup), false, "the old generation is not current");
    assert.deepEqual(failures, []);
  });
});

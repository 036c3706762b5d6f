/**
 * `dm-remap spare add|remove|replace` against a running `serve`, under load
 * (issue 16).
 *
 * Goal: while `fio --verify=crc32c` writes and verifies over NBD, a spare is
 * added, a spare holding thousands of remapped blocks is removed (its blocks
 * migrate to the others), and a spare is replaced: fio sees zero verify
 * errors, and every remapped block reads its own data, never the main disk's
 * stale copy. A `kill -9` of `serve` during a migration, then a restart with
 * the same disks: the migration resumes on its own and completes, and what fio
 * wrote before verifies clean.
 * Method: the setup is made in-process on image files, with the engine over
 * the fault layer so thousands of blocks are remapped to spare 0 (their main
 * disk copies then overwritten with 0xee); `serve`, `spare` and `status` run
 * as processes; fio (ioengine nbd) and qemu-io are the clients.
 */

import assert from "node:assert/strict";
import { createSetup } from "../../mod/assembly/create.ts";
import { assembleSetup, openSpares } from "../../mod/assembly/assemble.ts";
import { probePath } from "../../mod/assembly/open_path.ts";
import type { SetupStatus } from "../../mod/api/status.ts";
import { openFileDevice } from "../../mod/device/file_device.ts";
import { FaultyDevice } from "../../mod/fault/faulty_device.ts";
import { assertClientOk, type ClientResult, runClient } from "../clients/run_client.ts";
import { imageDirectory, runCli, type ServeProcess, startServe } from "./cli_process.ts";

const BLOCK = 4096;
const MIB = 1024 * 1024;
/** Blocks remapped to spare 0 before serving: enough for a migration of a few seconds. */
const REMAPPED = 6000;
/** fio works on the first 16 MiB; remapped blocks lie inside it and beyond. */
const FIO_BYTES = 16 * MIB;

/** A setup whose spare 0 holds {@link REMAPPED} blocks, each filled with its index mod 251. */
async function setupWithRemaps() {
  const files = await imageDirectory({
    "main.img": 64 * MIB,
    "spare0.img": 64 * MIB,
    "spare1.img": 64 * MIB,
    "spare2.img": 64 * MIB,
    "spare3.img": 64 * MIB,
  });
  const main = await openFileDevice(files.file("main.img"), { exclusive: true });
  const spares = [
    await openFileDevice(files.file("spare0.img"), { exclusive: true }),
    await openFileDevice(files.file("spare1.img"), { exclusive: true }),
  ];
  const { identity } = await probePath(files.file("main.img"));
  const name = `mig${crypto.randomUUID().slice(0, 8)}`;
  await createSetup({
    name,
    main: { device: main, identity },
    spares: spares.map((device, i) => ({ device, path: files.file(`spare${i}.img`) })),
    blockBytes: BLOCK,
  });
  const faulty = new FaultyDevice(main, { blockBytes: BLOCK });
  // Every second block of the first 12000: inside fio's region and past it.
  const remapped = Array.from({ length: REMAPPED }, (_, i) => i * 2 + 1);
  faulty.addBadBlocks(remapped, "write");
  const engine = await assembleSetup({ device: faulty, identity }, await openSpares(spares));
  for (let i = 0; i < remapped.length; i += 256) {
    await Promise.all(
      remapped.slice(i, i + 256).map((blockIndex) =>
        engine.write(new Uint8Array(BLOCK).fill(blockIndex % 251), blockIndex * BLOCK)
      ),
    );
  }
  assert.equal(engine.remaps().filter((remap) => remap.spareIndex === 0).length, REMAPPED);
  await engine.close();
  const stale = await Deno.open(files.file("main.img"), { write: true });
  for (const blockIndex of remapped) {
    await stale.seek(blockIndex * BLOCK, Deno.SeekMode.Start);
    await stale.write(new Uint8Array(BLOCK).fill(0xee));
  }
  stale.close();
  const socket = files.file("nbd.sock");
  const api = files.file("api.sock");
  const serveArgs = (spareNames: string[]) => [
    ...spareNames.flatMap((spare) => ["--spare", files.file(spare)]),
    "--main",
    files.file("main.img"),
    "--socket",
    socket,
    "--api-socket",
    api,
    "--events-db",
    files.file("events.sqlite"),
  ];
  return { files, name, remapped, uri: `nbd+unix:///?socket=${socket}`, api, serveArgs };
}

type Rig = Awaited<ReturnType<typeof setupWithRemaps>>;

async function status(rig: Rig): Promise<SetupStatus> {
  const run = await runCli(["status", "--api-socket", rig.api, "--json"]);
  assert.equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout);
}

async function stopCleanly(serve: ServeProcess): Promise<void> {
  serve.kill("SIGTERM");
  const run = await serve.finished();
  assert.equal(run.code, 0, run.stderr);
}

/** fio over NBD on the first {@link FIO_BYTES}: random writes, each block verified by CRC-32C. */
function fio(rig: Rig, extra: string[] = []): Promise<ClientResult> {
  return runClient("fio", [
    "--name=verify",
    "--ioengine=nbd",
    `--uri=${rig.uri}`,
    "--rw=randwrite",
    "--bs=16k",
    "--iodepth=8",
    `--size=${FIO_BYTES}`,
    "--verify=crc32c",
    "--verify_fatal=1",
    "--randseed=7",
    "--output-format=json",
    ...extra,
  ], { cwd: rig.files.path, timeoutMs: 300_000 });
}

/** Checks one fio run: no error, everything written and (unless told otherwise) verified. */
function assertFioClean(run: ClientResult, options: { wrote?: boolean; verified?: boolean } = {}) {
  assertClientOk(run);
  const job = JSON.parse(run.stdout.slice(run.stdout.indexOf("{"))).jobs[0];
  assert.equal(job.error, 0, run.stderr);
  if (options.wrote ?? true) assert.equal(job.write.io_bytes, FIO_BYTES);
  if (options.verified ?? true) assert.ok(job.read.io_bytes >= FIO_BYTES, "fio verified all");
}

/** Every remapped block past fio's region reads its own fill, in one qemu-io run per 500. */
async function assertRemappedData(rig: Rig): Promise<void> {
  const beyond = rig.remapped.filter((blockIndex) => blockIndex * BLOCK >= FIO_BYTES);
  for (let i = 0; i < beyond.length; i += 500) {
    const commands = beyond.slice(i, i + 500).flatMap((blockIndex) => [
      "-c",
      `read -P ${blockIndex % 251} ${blockIndex * BLOCK} ${BLOCK}`,
    ]);
    const read = await runClient("qemu-io", ["-f", "raw", rig.uri, ...commands]);
    assertClientOk(read);
    assert.doesNotMatch(read.stdout + read.stderr, /error|fail|mismatch/i);
  }
}

/** Runs fio again and again until `done` says stop; every run must be clean. */
function fioUntil(rig: Rig, done: () => boolean): Promise<number> {
  return (async () => {
    let runs = 0;
    while (!done()) {
      assertFioClean(await fio(rig));
      runs++;
    }
    return runs;
  })();
}

Deno.test("spare add, remove and replace under fio --verify=crc32c: zero verify errors, no stale data", async () => {
  const rig = await setupWithRemaps();
  try {
    const serve = await startServe(rig.serveArgs(["spare0.img", "spare1.img"]));
    try {
      let stop = false;
      // Settled here, judged below: a failure must not go unhandled while the changes run.
      const load = fioUntil(rig, () => stop).then((runs) => ({ runs }), (error) => ({ error }));
      try {
        const added = await runCli([
          "spare",
          "add",
          rig.name,
          rig.files.file("spare2.img"),
          "--api-socket",
          rig.api,
          "--json",
        ]);
        assert.equal(added.code, 0, added.stderr);
        assert.equal(JSON.parse(added.stdout).index, 2);
        const removed = await runCli([
          "spare",
          "remove",
          rig.name,
          rig.files.file("spare0.img"),
          "--api-socket",
          rig.api,
          "--json",
        ]);
        assert.equal(removed.code, 0, removed.stderr);
        const migration = JSON.parse(removed.stdout);
        assert.equal(migration.state, "done");
        assert.equal(migration.blocksFailed, 0);
        const afterRemove = await status(rig);
        assert.equal(afterRemove.spares[0]!.state, "removed");
        assert.equal(afterRemove.spares[0]!.slotsUsed, afterRemove.spares[0]!.slotsUsed);
        assert.equal(
          afterRemove.spares.reduce(
            (sum, spare) => sum + (spare.state === "removed" ? 0 : spare.slotsUsed),
            0,
          ) >= REMAPPED,
          true,
        );
        const replaced = await runCli([
          "spare",
          "replace",
          rig.name,
          rig.files.file("spare1.img"),
          rig.files.file("spare3.img"),
          "--api-socket",
          rig.api,
        ]);
        assert.equal(replaced.code, 0, replaced.stderr);
        assert.match(replaced.stdout, /^Added spare 3 .*\nRemoved spare 1 .*: 6000 blocks moved/);
      } finally {
        stop = true;
      }
      const loaded = await load;
      if ("error" in loaded) {
        serve.kill("SIGTERM");
        const run = await serve.finished();
        throw new Error(`${loaded.error}\n--- serve\n${run.stdout}\n${run.stderr}`);
      }
      assert.ok(loaded.runs >= 1, "fio ran during the changes");
      const final = await status(rig);
      assert.deepEqual(final.spares.map((spare) => spare.state), [
        "removed",
        "removed",
        "active",
        "active",
      ]);
      assert.equal(final.setup.state, "clean");
      assertFioClean(await fio(rig));
      await assertRemappedData(rig);
    } finally {
      await stopCleanly(serve);
    }
    // After a restart with the spares that are left, the same data.
    const again = await startServe(rig.serveArgs(["spare2.img", "spare3.img"]));
    try {
      await assertRemappedData(rig);
      assertFioClean(await fio(rig, ["--verify_only"]), { wrote: false });
    } finally {
      await stopCleanly(again);
    }
  } finally {
    await rig.files.cleanup();
  }
});

Deno.test("kill -9 of serve during a spare's migration: the restart resumes it, it completes, fio verifies clean", async () => {
  const rig = await setupWithRemaps();
  try {
    const first = await startServe(rig.serveArgs(["spare0.img", "spare1.img"]));
    assertFioClean(await fio(rig, ["--end_fsync=1"]));
    const removal = runCli([
      "spare",
      "remove",
      rig.name,
      rig.files.file("spare0.img"),
      "--api-socket",
      rig.api,
      "--json",
    ]);
    // Killed once some blocks moved and others have not.
    let moved = 0;
    for (let waitedMs = 0; waitedMs < 60_000; waitedMs += 20) {
      const migration = (await status(rig)).migration;
      moved = migration?.blocksMoved ?? 0;
      if (migration?.state === "running" && moved > 0) break;
      assert.notEqual(migration?.state, "done", "the migration ended before the kill");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.ok(moved > 0 && moved < REMAPPED, `killed with ${moved} of ${REMAPPED} moved`);
    first.kill("SIGKILL");
    assert.equal((await first.finished()).code, 137, "killed by SIGKILL");
    const interrupted = await removal;
    assert.notEqual(interrupted.code, 0, "the CLI saw its server go");

    const second = await startServe(rig.serveArgs(["spare0.img", "spare1.img"]));
    try {
      const resumed = await status(rig);
      assert.ok(resumed.migration !== null, "the restart resumed the migration");
      assert.equal(resumed.migration.spareIndex, 0);
      let ended = resumed.migration;
      for (let waitedMs = 0; ended.state === "running" && waitedMs < 120_000; waitedMs += 100) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        ended = (await status(rig)).migration!;
      }
      assert.equal(ended.state, "done", ended.error);
      const after = await status(rig);
      assert.equal(after.spares[0]!.state, "removed");
      assert.equal(after.spares[0]!.slotsUsed >= 0, true);
      assertFioClean(await fio(rig, ["--verify_only"]), { wrote: false });
      await assertRemappedData(rig);
    } finally {
      await stopCleanly(second);
    }
    // The removed spare is no longer needed: the setup serves from spare 1 alone.
    const third = await startServe(rig.serveArgs(["spare1.img"]));
    try {
      assert.equal((await status(rig)).setup.state, "clean");
      await assertRemappedData(rig);
    } finally {
      await stopCleanly(third);
    }
  } finally {
    await rig.files.cleanup();
  }
});

/**
 * A way back when all five metadata copies on every spare are lost.
 *
 * Goal: `restore` from the metadata backup, and `check --salvage` without
 * one, each bring back every one of 1000 mappings, and the data reads back
 * through a real NBD client; a backup of another setup, and an older backup
 * whose mappings the spares' own logs contradict, are refused with the reason
 * and every disk unchanged (SHA-256); nothing is written without confirmation.
 * Method: `dm-remap create` and `serve` as processes; the remaps are made
 * through the engine over the image files with the fault layer failing the
 * writes of 1000 main-disk blocks (600 fill spare 0, 400 go to spare 1), each
 * block written with a pattern naming it; the copies are overwritten whole;
 * nbdsh (libnbd) reads every remapped block back through `dm-remap serve`.
 */

import assert from "node:assert/strict";
import { assembleSetup, openSpares } from "../../mod/assembly/assemble.ts";
import { openPath } from "../../mod/assembly/open_path.ts";
import { COPY_BYTES, COPY_SECTORS, SECTOR_BYTES } from "../../mod/constants.ts";
import { DeviceIoError } from "../../mod/errors.ts";
import { FaultyDevice } from "../../mod/fault/faulty_device.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import { assertClientOk, runClient } from "../clients/run_client.ts";
import { imageDirectory, runCli, startServe } from "./cli_process.ts";

type Images = Awaited<ReturnType<typeof imageDirectory>>;

const MIB = 1024 * 1024;
const BLOCK_BYTES = 4096;
const MAIN_BYTES = 64 * MIB;
const MAIN_BLOCKS = MAIN_BYTES / BLOCK_BYTES;
const SPARES = ["spare0.img", "spare1.img"];
/** Spare 0 holds exactly 600 slots, so the rest of the 1000 remaps go to spare 1. */
const SPARE0_SLOTS = 600;
const PATTERN_TAG = 0x5eed5eed;

/** 1000 distinct main-disk blocks; `stride` (odd) and `offset` pick a different set or order. */
function blockList(stride: number, offset: number): number[] {
  return Array.from({ length: 1000 }, (_, i) => (i * stride + offset) % MAIN_BLOCKS);
}

/** The contents written to `block`: its index and a tag, repeated. */
function patternOf(block: number): Uint8Array {
  const bytes = new Uint8Array(BLOCK_BYTES);
  const view = new DataView(bytes.buffer);
  for (let at = 0; at < BLOCK_BYTES; at += 8) {
    view.setUint32(at, block, true);
    view.setUint32(at + 4, PATTERN_TAG, true);
  }
  return bytes;
}

async function setupImages(): Promise<Images> {
  return await imageDirectory({
    "main.img": MAIN_BYTES,
    "spare0.img": minimumSpareBytes(BLOCK_BYTES) + (SPARE0_SLOTS - 16) * BLOCK_BYTES,
    "spare1.img": 32 * MIB,
  });
}

function spareArgs(images: Images): string[] {
  return SPARES.flatMap((spare) => ["--spare", images.file(spare)]);
}

async function create(images: Images, name: string, files: string[]): Promise<void> {
  const created = await runCli([
    "create",
    name,
    "--main",
    images.file(files[0]!),
    ...files.slice(1).flatMap((spare) => ["--spare", images.file(spare)]),
    "--backup-dir",
    images.file("backup"),
  ]);
  assert.equal(created.code, 0, created.stderr);
}

/**
 * Remaps `blocks` through the engine: the fault layer fails their writes on
 * the main disk, so each write goes to a spare slot. With `unreadable`, that
 * block's read fails too, so it becomes pending: a new generation of the
 * setup's description.
 */
async function remapThroughEngine(
  images: Images,
  blocks: readonly number[],
  unreadable?: number,
): Promise<void> {
  const main = await openPath(images.file("main.img"), { readOnly: false });
  const spares = [];
  for (const spare of SPARES) {
    spares.push((await openPath(images.file(spare), { readOnly: false })).device);
  }
  const faulty = new FaultyDevice(main.device, { blockBytes: BLOCK_BYTES, badBlocks: blocks });
  const engine = await assembleSetup(
    { device: faulty, identity: main.identity },
    await openSpares(spares),
    { readRetries: 0, metadataDelayMs: 0 },
  );
  const before = engine.remapCount;
  for (let at = 0; at < blocks.length; at += 100) {
    await Promise.all(
      blocks.slice(at, at + 100).map((block) =>
        engine.write(patternOf(block), block * BLOCK_BYTES)
      ),
    );
  }
  assert.equal(engine.remapCount, before + blocks.length);
  if (unreadable !== undefined) {
    faulty.addBadBlocks([unreadable], "read");
    await assert.rejects(
      engine.read(new Uint8Array(BLOCK_BYTES), unreadable * BLOCK_BYTES),
      DeviceIoError,
    );
    assert.deepEqual(engine.pendingBlocks, [unreadable]);
  }
  await engine.close();
}

/** Serves the setup until stopped; a clean stop is checked. */
async function serve(images: Images) {
  const socket = images.file("nbd.sock");
  const process = await startServe([
    ...spareArgs(images),
    "--main",
    images.file("main.img"),
    "--socket",
    socket,
    "--api-socket",
    images.file("api.sock"),
    "--events-db",
    images.file("events.sqlite"),
    "--backup-dir",
    images.file("backup"),
  ]);
  return {
    uri: `nbd+unix:///e2e?socket=${socket}`,
    async stop() {
      process.kill("SIGTERM");
      const run = await process.finished();
      assert.equal(run.code, 0, run.stderr);
      return run;
    },
  };
}

/**
 * 1000 remaps: 600 (filling spare 0) and a pending block, then a serve that
 * writes the backup of that generation, then 400 more that only the log of
 * spare 1 holds. Returns the remapped blocks.
 */
async function setupWithRemaps(images: Images): Promise<number[]> {
  const blocks = blockList(7919, 13);
  await create(images, "e2e", ["main.img", ...SPARES]);
  await remapThroughEngine(images, blocks.slice(0, SPARE0_SLOTS), MAIN_BLOCKS - 1);
  const served = await serve(images);
  assert.match((await served.stop()).stdout, /serving .* 600 remaps/);
  await remapThroughEngine(images, blocks.slice(SPARE0_SLOTS));
  return blocks;
}

/** Overwrites all five copies of every spare. */
async function destroyAllCopies(images: Images): Promise<void> {
  for (const spare of SPARES) {
    const file = await Deno.open(images.file(spare), { write: true });
    try {
      for (const sector of COPY_SECTORS) {
        await file.seek(sector * SECTOR_BYTES, Deno.SeekMode.Start);
        await file.write(new Uint8Array(COPY_BYTES).fill(0x5a));
      }
    } finally {
      file.close();
    }
  }
}

async function diskHashes(images: Images): Promise<string[]> {
  const hashes = [];
  for (const name of ["main.img", ...SPARES]) {
    const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(images.file(name)));
    hashes.push(
      Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join(""),
    );
  }
  return hashes;
}

async function remappedBlocks(images: Images): Promise<number[]> {
  const run = await runCli(["remaps", ...spareArgs(images), "--json"]);
  assert.equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout).remaps.map((remap: { blockIndex: number }) => remap.blockIndex);
}

/** Reads every block back through `dm-remap serve` with nbdsh and compares its pattern. */
async function assertDataReadsBack(images: Images, blocks: readonly number[]): Promise<void> {
  const served = await serve(images);
  try {
    const script = [
      "import struct",
      `blocks = [${blocks.join(", ")}]`,
      "for b in blocks:",
      `    want = struct.pack("<II", b, ${PATTERN_TAG}) * ${BLOCK_BYTES / 8}`,
      `    if h.pread(${BLOCK_BYTES}, b * ${BLOCK_BYTES}) != want:`,
      `        raise Exception("block %d does not read back" % b)`,
      `print("read back", len(blocks), "blocks")`,
    ].join("\n");
    const result = await runClient("nbdsh", ["-u", served.uri, "-c", script]);
    assertClientOk(result);
    assert.match(result.stdout, new RegExp(`read back ${blocks.length} blocks`));
  } finally {
    await served.stop();
  }
}

const sorted = (blocks: readonly number[]) => blocks.toSorted((a, b) => a - b);

Deno.test("restore rebuilds every copy from the backup and the spares' logs: 1000 of 1000 mappings, data read back with nbdsh", async () => {
  const images = await setupImages();
  try {
    const blocks = await setupWithRemaps(images);
    await destroyAllCopies(images);
    const refused = await runCli([
      "serve",
      ...spareArgs(images),
      "--main",
      images.file("main.img"),
    ]);
    assert.equal(refused.code, 4, refused.stderr);
    assert.match(refused.stderr, /No valid dm-remap metadata copy/);
    const before = await diskHashes(images);
    const restore = ["restore", "e2e", ...spareArgs(images), "--backup-dir", images.file("backup")];

    const unconfirmed = await runCli(restore);
    assert.equal(unconfirmed.code, 2, unconfirmed.stderr);
    assert.match(unconfirmed.stderr, /no terminal to confirm the write on: .* or pass --yes/);
    assert.deepEqual(await diskHashes(images), before, "nothing written without confirmation");

    const restored = await runCli([...restore, "--yes"]);
    assert.equal(restored.code, 0, restored.stderr);
    assert.match(restored.stdout, /spare0\.img: spare 0 .*600 mappings of 600 slots/);
    assert.match(restored.stdout, /spare1\.img: spare 1 .*400 mappings of \d+ slots/);
    assert.match(
      restored.stdout,
      /spare 0: the backup lists 600 of its mappings, 0 were made after/,
    );
    assert.match(
      restored.stdout,
      /spare 1: the backup lists 0 of its mappings, 400 were made after/,
    );
    assert.match(restored.stdout, /Restored 2 spares with 1000 mappings in all/);
    for (const spare of SPARES) {
      const check = await runCli(["check", images.file(spare)]);
      assert.equal(check.code, 0, check.stdout);
      assert.match(check.stdout, /5\/5 copies valid/);
    }
    assert.deepEqual(await remappedBlocks(images), sorted(blocks));
    await assertDataReadsBack(images, blocks);
  } finally {
    await images.cleanup();
  }
});

Deno.test("check --salvage proves every mapping from the logs alone and writes only with --repair: 1000 of 1000, data read back with nbdsh", async () => {
  const images = await setupImages();
  try {
    const blocks = await setupWithRemaps(images);
    await Deno.remove(images.file("backup"), { recursive: true });
    await destroyAllCopies(images);
    const before = await diskHashes(images);
    const salvage = ["check", "--salvage", ...SPARES.map((spare) => images.file(spare))];
    const scan = ["--scan-dir", images.path];

    const report = await runCli([...salvage, ...scan, "--json"]);
    assert.equal(report.code, 1, report.stderr);
    const found = JSON.parse(report.stdout);
    assert.deepEqual(
      found.spares.map((spare: { mappings: number; validCopies: number }) => [
        spare.mappings,
        spare.validCopies,
      ]),
      [[600, 0], [400, 0]],
    );
    assert.deepEqual(
      sorted(found.spares.flatMap((spare: { slotBlocks: number[] }) => spare.slotBlocks)),
      sorted(blocks),
    );
    assert.equal(found.written, false);
    assert.deepEqual(await diskHashes(images), before, "check --salvage alone writes nothing");

    const repair = [
      "--repair",
      "--main",
      images.file("main.img"),
      "--name",
      "e2e",
      "--backup-dir",
      images.file("backup"),
      ...scan,
    ];
    const oneSpare = await runCli([
      "check",
      "--salvage",
      images.file("spare0.img"),
      ...repair,
      "--yes",
    ]);
    assert.equal(oneSpare.code, 4, oneSpare.stderr);
    assert.match(oneSpare.stderr, /spare1\.img" holds the log of spare 1 .* which is not given/);
    const unconfirmed = await runCli([...salvage, ...repair]);
    assert.equal(unconfirmed.code, 2, unconfirmed.stderr);
    assert.match(unconfirmed.stderr, /no terminal to confirm the write on/);
    assert.deepEqual(await diskHashes(images), before, "refusals write nothing");

    const repaired = await runCli([...salvage, ...repair, "--yes"]);
    assert.equal(repaired.code, 1, repaired.stderr);
    assert.match(
      repaired.stdout,
      /spare0\.img: spare 0, 0\/5 copies valid; 600 mappings proven: 0 from a checkpoint/,
    );
    assert.match(repaired.stdout, /Rebuilt 2 spares of setup "e2e"/);
    assert.match(repaired.stdout, /Backup: .*\/backup\/e2e-[0-9a-f-]+\.json/);
    assert.deepEqual(await remappedBlocks(images), sorted(blocks));
    await assertDataReadsBack(images, blocks);
  } finally {
    await images.cleanup();
  }
});

Deno.test("restore refuses a backup of another setup and an older backup the logs contradict, naming why, every disk unchanged", async () => {
  const images = await setupImages();
  const other = await imageDirectory({ "main.img": MAIN_BYTES, "spare0.img": 32 * MIB });
  try {
    await create(images, "e2e", ["main.img", ...SPARES]);
    const created = await Promise.all(SPARES.map((spare) => Deno.readFile(images.file(spare))));
    // A history that is later rolled back: its backup lists 600 mappings of other blocks.
    await remapThroughEngine(images, blockList(7919, 13).slice(0, SPARE0_SLOTS), MAIN_BLOCKS - 1);
    const served = await serve(images);
    await served.stop();
    for (const [i, spare] of SPARES.entries()) {
      await Deno.writeFile(images.file(spare), created[i]!);
    }
    const blocks = blockList(4099, 7);
    await remapThroughEngine(images, blocks);
    const otherCreated = await runCli([
      "create",
      "other",
      "--main",
      other.file("main.img"),
      "--spare",
      other.file("spare0.img"),
      "--backup-dir",
      images.file("backup"),
    ]);
    assert.equal(otherCreated.code, 0, otherCreated.stderr);
    await destroyAllCopies(images);
    const before = await diskHashes(images);
    const backupDir = ["--backup-dir", images.file("backup"), "--yes"];

    const older = await runCli(["restore", "e2e", ...spareArgs(images), ...backupDir]);
    assert.equal(older.code, 4, older.stderr);
    assert.match(
      older.stderr,
      new RegExp(
        `says slot 0 of spare 0 \\(".*spare0\\.img"\\) holds block 13, the spare's own remap ` +
          `log and checkpoints say block 7: the disk's history differs from the backup's`,
      ),
    );
    const foreign = await runCli(["restore", "other", ...spareArgs(images), ...backupDir]);
    assert.equal(foreign.code, 4, foreign.stderr);
    assert.match(
      foreign.stderr,
      /spare0\.img" does not match the setup: its remap log says it is spare 0 of setup [0-9a-f-]+, but backup ".*other-[0-9a-f-]+\.json" is of setup "other"/,
    );
    const otherFile = (await Array.fromAsync(Deno.readDir(images.file("backup"))))
      .find((entry) => entry.name.startsWith("other-"))!.name;
    const mislabelled = await runCli([
      "restore",
      "e2e",
      "--from",
      images.file(`backup/${otherFile}`),
      ...spareArgs(images),
      ...backupDir,
    ]);
    assert.equal(mislabelled.code, 4, mislabelled.stderr);
    assert.match(
      mislabelled.stderr,
      /Backup ".*other-[0-9a-f-]+\.json" is of setup "other" .*, not of "e2e"/,
    );
    assert.deepEqual(await diskHashes(images), before, "refused restores write nothing");

    // The archived backup from before the rolled-back history agrees with the disks.
    const archived = (await Array.fromAsync(Deno.readDir(images.file("backup/archive"))))
      .map((entry) => entry.name).filter((name) => name.startsWith("e2e-"));
    assert.equal(archived.length, 1, "create's backup was archived when serve wrote the next");
    const restored = await runCli([
      "restore",
      "e2e",
      "--from",
      images.file(`backup/archive/${archived[0]}`),
      ...spareArgs(images),
      ...backupDir,
    ]);
    assert.equal(restored.code, 0, restored.stderr);
    assert.match(restored.stdout, /Restored 2 spares with 1000 mappings in all/);
    assert.deepEqual(await remappedBlocks(images), sorted(blocks));
  } finally {
    await other.cleanup();
    await images.cleanup();
  }
});

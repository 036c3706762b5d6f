/**
 * The CLI's safety rules on real image files, as separate processes.
 *
 * Goal: bad input gets a clear error naming the device and the fix, and
 * leaves data untouched; damaged metadata is repaired when a copy survives
 * and refused, untouched, when none does.
 * Method: sparse images in a temp directory; damage by overwriting copy
 * header sectors; compare file hashes before and after refusals.
 */

import assert from "node:assert/strict";
import { COPY_SECTORS, SECTOR_BYTES } from "../../mod/constants.ts";
import { imageDirectory, runCli, startServe } from "./cli_process.ts";

type Images = Awaited<ReturnType<typeof imageDirectory>>;

const MIB = 1024 * 1024;

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

async function corruptCopies(path: string, copyIndexes: number[]): Promise<void> {
  const file = await Deno.open(path, { write: true });
  try {
    for (const copyIndex of copyIndexes) {
      await file.seek(COPY_SECTORS[copyIndex]! * SECTOR_BYTES, Deno.SeekMode.Start);
      await file.write(new Uint8Array(SECTOR_BYTES).fill(0x5a));
    }
  } finally {
    file.close();
  }
}

/** `--spare` for each named image, then private NBD and API sockets in the directory. */
function servingArgs(images: Images, spares: string[]): string[] {
  return [
    ...spares.flatMap((spare) => ["--spare", images.file(spare)]),
    "--socket",
    images.file("nbd.sock"),
    "--api-socket",
    images.file("api.sock"),
    "--events-db",
    images.file("events.sqlite"),
    "--backup-dir",
    images.file("backup"),
  ];
}

async function createTwoSpareSetup(
  images: Images,
): Promise<void> {
  const created = await runCli([
    "create",
    "e2e",
    "--main",
    images.file("main.img"),
    "--spare",
    images.file("spare0.img"),
    "--spare",
    images.file("spare1.img"),
    "--backup-dir",
    images.file("backup"),
  ]);
  assert.equal(created.code, 0, created.stderr);
}

async function serveAndStop(images: Images): Promise<string> {
  const serve = await startServe([
    ...servingArgs(images, ["spare0.img", "spare1.img"]),
  ]);
  serve.kill("SIGTERM");
  const run = await serve.finished();
  assert.equal(run.code, 0, run.stderr);
  return run.stderr;
}

Deno.test("create refuses a spare holding an ext4 filesystem, names it and --force, and writes nothing", async () => {
  const images = await imageDirectory({ "main.img": 64 * MIB, "spare0.img": 32 * MIB });
  try {
    const mkfs = await new Deno.Command("mkfs.ext4", {
      args: ["-q", "-F", images.file("spare0.img")],
    }).output();
    assert.equal(mkfs.code, 0, new TextDecoder().decode(mkfs.stderr));
    const before = await sha256(images.file("spare0.img"));
    const refused = await runCli([
      "create",
      "e2e",
      "--main",
      images.file("main.img"),
      "--spare",
      images.file("spare0.img"),
    ]);
    assert.equal(refused.code, 4);
    assert.match(refused.stderr, /spare0\.img" holds an ext2\/3\/4 filesystem.*--force/);
    assert.equal(await sha256(images.file("spare0.img")), before);
    const forced = await runCli([
      "create",
      "e2e",
      "--main",
      images.file("main.img"),
      "--spare",
      images.file("spare0.img"),
      "--force",
      "--backup-dir",
      images.file("backup"),
    ]);
    assert.equal(forced.code, 0, forced.stderr);
  } finally {
    await images.cleanup();
  }
});

Deno.test("create refuses an undersized spare and gives the minimum size", async () => {
  const images = await imageDirectory({ "main.img": 64 * MIB, "spare0.img": 8 * MIB });
  try {
    const refused = await runCli([
      "create",
      "e2e",
      "--main",
      images.file("main.img"),
      "--spare",
      images.file("spare0.img"),
    ]);
    assert.equal(refused.code, 2);
    assert.match(
      refused.stderr,
      /spare0\.img" is too small: 8388608 bytes; a spare needs at least 14745600 bytes/,
    );
  } finally {
    await images.cleanup();
  }
});

for (const [onFirst, onSecond] of [[1, 0], [2, 1], [3, 2], [4, 4]] as const) {
  Deno.test(`serve opens with ${onFirst} and ${onSecond} of 5 copies corrupt on two spares and repairs them`, async () => {
    const images = await imageDirectory({
      "main.img": 64 * MIB,
      "spare0.img": 32 * MIB,
      "spare1.img": 32 * MIB,
    });
    try {
      await createTwoSpareSetup(images);
      await corruptCopies(images.file("spare0.img"), [0, 1, 2, 3].slice(0, onFirst));
      await corruptCopies(images.file("spare1.img"), [4, 3, 2, 1].slice(0, onSecond));
      const log = await serveAndStop(images);
      assert.match(
        log,
        new RegExp(`spare0\\.img: ${5 - onFirst}/5 copies valid, ${onFirst} repaired`),
      );
      for (const spare of ["spare0.img", "spare1.img"]) {
        const check = await runCli(["check", images.file(spare), "--json"]);
        assert.equal(check.code, 0, check.stdout + check.stderr);
        assert.equal(JSON.parse(check.stdout).validCopies, 5);
      }
    } finally {
      await images.cleanup();
    }
  });
}

Deno.test("serve refuses a spare with all 5 copies corrupt, names it, and writes nothing", async () => {
  const images = await imageDirectory({
    "main.img": 64 * MIB,
    "spare0.img": 32 * MIB,
    "spare1.img": 32 * MIB,
  });
  try {
    await createTwoSpareSetup(images);
    await corruptCopies(images.file("spare1.img"), [0, 1, 2, 3, 4]);
    const before = await Promise.all(
      ["spare0.img", "spare1.img"].map((name) => sha256(images.file(name))),
    );
    const refused = await runCli([
      "serve",
      ...servingArgs(images, ["spare0.img", "spare1.img"]),
    ]);
    assert.equal(refused.code, 4, refused.stderr);
    assert.match(
      refused.stderr,
      /No valid dm-remap metadata copy on ".*spare1\.img".*nothing was written/,
    );
    // spare0 is opened first and is healthy: nothing of it needed repair, so nothing changed.
    const after = await Promise.all(
      ["spare0.img", "spare1.img"].map((name) => sha256(images.file(name))),
    );
    assert.deepEqual(after, before);
  } finally {
    await images.cleanup();
  }
});

Deno.test("check reports invalid copies with exit 1, --repair rewrites them, then exit 0", async () => {
  const images = await imageDirectory({ "main.img": 64 * MIB, "spare0.img": 32 * MIB });
  try {
    assert.equal(
      (await runCli([
        "create",
        "e2e",
        "--main",
        images.file("main.img"),
        "--spare",
        images.file("spare0.img"),
        "--backup-dir",
        images.file("backup"),
      ])).code,
      0,
    );
    await corruptCopies(images.file("spare0.img"), [1, 3]);
    const before = await sha256(images.file("spare0.img"));
    const report = await runCli(["check", images.file("spare0.img")]);
    assert.equal(report.code, 1);
    assert.match(report.stdout, /copy 1 at sector 1024 +INVALID: no dm-remap magic/);
    assert.match(report.stdout, /3\/5 copies valid/);
    assert.equal(
      await sha256(images.file("spare0.img")),
      before,
      "check without --repair writes nothing",
    );
    assert.equal((await runCli(["check", images.file("spare0.img"), "--repair"])).code, 1);
    assert.equal((await runCli(["check", images.file("spare0.img")])).code, 0);
  } finally {
    await images.cleanup();
  }
});

Deno.test("serve refuses a main disk that is not the recorded one, and a spare of another setup", async () => {
  const images = await imageDirectory({
    "main.img": 64 * MIB,
    "other.img": 32 * MIB,
    "spare0.img": 32 * MIB,
    "spare1.img": 32 * MIB,
    "foreign.img": 32 * MIB,
  });
  try {
    await createTwoSpareSetup(images);
    const wrongMain = await runCli([
      "serve",
      ...servingArgs(images, ["spare0.img", "spare1.img"]),
      "--main",
      images.file("other.img"),
    ]);
    assert.equal(wrongMain.code, 4);
    assert.match(
      wrongMain.stderr,
      /other\.img" does not match the setup: it is not the main disk of setup "e2e".*--main/,
    );
    const foreign = await runCli([
      "create",
      "other",
      "--main",
      images.file("other.img"),
      "--spare",
      images.file("foreign.img"),
      "--backup-dir",
      images.file("backup"),
    ]);
    assert.equal(foreign.code, 0);
    const mixed = await runCli([
      "serve",
      ...servingArgs(images, ["spare0.img", "foreign.img"]),
    ]);
    assert.equal(mixed.code, 4);
    assert.match(
      mixed.stderr,
      /foreign\.img" does not match the setup: it is a spare of setup "other"/,
    );
  } finally {
    await images.cleanup();
  }
});

Deno.test("serve and remaps find a setup's spares by name in a scan directory", async () => {
  const images = await imageDirectory({
    "main.img": 64 * MIB,
    "spare0.img": 32 * MIB,
    "spare1.img": 32 * MIB,
  });
  try {
    await createTwoSpareSetup(images);
    const serve = await startServe([
      "e2e",
      "--scan-dir",
      images.path,
      "--main",
      images.file("main.img"),
      "--socket",
      images.file("nbd.sock"),
      "--api-socket",
      images.file("api.sock"),
      "--backup-dir",
      images.file("backup"),
    ]);
    serve.kill("SIGTERM");
    const run = await serve.finished();
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /spare0\.img: 5\/5 copies valid/);
    assert.match(run.stderr, /spare1\.img: 5\/5 copies valid/);
    const listed = await runCli(["remaps", "e2e", "--scan-dir", images.path, "--json"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(JSON.parse(listed.stdout).remaps, []);
    const unknown = await runCli(["remaps", "nosuch", "--scan-dir", images.path]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /No setup named "nosuch" .* name its spares with --spare/);
  } finally {
    await images.cleanup();
  }
});

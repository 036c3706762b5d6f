/**
 * The single-file deployment: the bundle runs the whole product on its own.
 *
 * Method: bundle main.ts to a temporary file with `deno bundle`, then run the
 * embedded demo from it, with no access to the source tree's modules; run it
 * again on the same state directory, which it must refuse untouched; and ask
 * the bundle its version. Then serve from the bundle, remove its file, and
 * connect again and again: each connection's worker starts after the file is
 * gone, as after switch_root for a root filesystem's server.
 */

import assert from "node:assert/strict";
import { assertClientOk, runClient } from "../clients/run_client.ts";
import { CLI_ENV, imageDirectory, startServe } from "./cli_process.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const MIB = 1024 * 1024;

/** Bundles main.ts to `path`, as scripts/build.sh does. */
async function buildBundle(path: string): Promise<void> {
  const built = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--output", path, "main.ts"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(built.code, 0, new TextDecoder().decode(built.stderr));
}

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

Deno.test("the deno bundle runs the demo end to end: remaps, status, clean stop; no second run over it", async () => {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-bundle-" });
  try {
    const bundle = `${directory}/dm-remap.js`;
    await buildBundle(bundle);
    const runBundle = (args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", bundle, ...args],
        cwd: directory,
        stdout: "piped",
        stderr: "piped",
      }).output();
    const demoArgs = [
      "demo",
      "--once",
      "--state-dir",
      `${directory}/state`,
      "--tcp",
      "127.0.0.1:0",
      "--api-tcp",
      "127.0.0.1:0",
    ];
    const run = await runBundle(demoArgs);
    const stdout = new TextDecoder().decode(run.stdout);
    assert.equal(run.code, 0, stdout + new TextDecoder().decode(run.stderr));
    assert.match(stdout, /Wrote the 8 failing blocks: 8 new remaps/);
    assert.match(stdout, /spare {2}0 .*: active, 8\/12800 slots used, 5\/5 copies valid/);
    assert.match(stdout, /Stopped cleanly/);

    const images = ["main.img", "spare0.img", "spare1.img"].map((name) =>
      `${directory}/state/${name}`
    );
    const before = await Promise.all(images.map(sha256));
    const again = await runBundle(demoArgs);
    assert.equal(again.code, 4);
    assert.match(
      new TextDecoder().decode(again.stderr),
      /^dm-remap demo: The demo's state directory ".*\/state" is not empty .* Remove it \("rm -r .*\/state"\) or give another with --state-dir\n$/,
    );
    assert.deepEqual(await Promise.all(images.map(sha256)), before);

    const { version } = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
    const versionRun = await runBundle(["--version"]);
    assert.equal(versionRun.code, 0);
    assert.equal(new TextDecoder().decode(versionRun.stdout), `dm-remap ${version}\n`);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("a server started from the bundle starts connection workers after the bundle's file is gone", async () => {
  const files = await imageDirectory({ "main.img": 64 * MIB, "spare.img": 32 * MIB });
  try {
    const bundle = files.file("dm-remap.js");
    await buildBundle(bundle);
    const created = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        bundle,
        "create",
        "unpinned",
        "--main",
        files.file("main.img"),
        "--spare",
        files.file("spare.img"),
      ],
      env: CLI_ENV,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(created.code, 0, new TextDecoder().decode(created.stderr));
    const socket = files.file("nbd.sock");
    const serve = await startServe([], {
      command: ["run", "--allow-all", bundle, "serve", "unpinned", "--socket", socket, "--no-scan"],
    });
    try {
      // The initramfs's server sees no file of it after switch_root; an upgrade replaces the file.
      await Deno.remove(bundle);
      const uri = `nbd+unix:///unpinned?socket=${socket}`;
      for (let connection = 1; connection <= 3; connection++) {
        const offset = connection * MIB;
        const written = await runClient("qemu-io", [
          "-f",
          "raw",
          uri,
          "-c",
          `write -P ${connection} ${offset} 64k`,
          "-c",
          `read -P ${connection} ${offset} 64k`,
        ]);
        assertClientOk(written);
        assert.doesNotMatch(written.stdout + written.stderr, /error|fail|Pattern verification/i);
      }
    } finally {
      serve.kill("SIGTERM");
      const stopped = await serve.finished();
      assert.equal(stopped.code, 0, stopped.stdout + stopped.stderr);
    }
  } finally {
    await files.cleanup();
  }
});

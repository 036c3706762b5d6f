/**
 * The single-file deployment: the bundle runs the whole product on its own.
 *
 * Method: bundle main.ts to a temporary file with `deno bundle`, then run the
 * embedded demo from it, with no access to the source tree's modules.
 */

import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url).pathname;

Deno.test("the deno bundle runs the demo end to end: remaps, status, clean stop", async () => {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-bundle-" });
  try {
    const bundle = `${directory}/dm-remap.js`;
    const built = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--output", bundle, "main.ts"],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(built.code, 0, new TextDecoder().decode(built.stderr));
    const run = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        bundle,
        "demo",
        "--once",
        "--state-dir",
        `${directory}/state`,
        "--tcp",
        "127.0.0.1:0",
        "--api-tcp",
        "127.0.0.1:0",
      ],
      cwd: directory,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(run.stdout);
    assert.equal(run.code, 0, stdout + new TextDecoder().decode(run.stderr));
    assert.match(stdout, /Wrote the 8 failing blocks: 8 new remaps/);
    assert.match(stdout, /spare {2}0 .*: active, 8\/12800 slots used, 5\/5 copies valid/);
    assert.match(stdout, /Stopped cleanly/);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

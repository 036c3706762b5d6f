/**
 * `dm-remap discover` as users and scripts run it.
 *
 * Goal: the command probes on workers started from the program itself,
 * prints the table or the documented JSON shape, writes nothing to any
 * candidate, and records its findings in each setup's event history.
 * Method: setups made with `create` on image files, `discover` run as a
 * process, its output and the files' SHA-256 checked.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { CLI_ENV, imageDirectory, runCli } from "./cli_process.ts";
import { hashFiles } from "../assembly/_setups.ts";

const MIB = 1024 * 1024;

Deno.test("dm-remap discover prints each setup's state and reasons, and writes nothing", async () => {
  const images = await imageDirectory({
    "gm-main.img": 64 * MIB,
    "gm-s0.img": 32 * MIB,
    "gm-s1.img": 32 * MIB,
  });
  const name = `gm${crypto.randomUUID().slice(0, 8)}`;
  try {
    const created = await runCli([
      "create",
      name,
      "--main",
      images.file("gm-main.img"),
      "--spare",
      images.file("gm-s0.img"),
      "--spare",
      images.file("gm-s1.img"),
    ]);
    assert.equal(created.code, 0, created.stderr);
    await Deno.copyFile(images.file("gm-s1.img"), images.file("gm-clone.img"));
    const before = await hashFiles(images.path);

    const json = await runCli(["discover", "--json", "--scan-dir", images.path]);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout);
    assert.equal(report.version, 1);
    const setup = report.setups.find((found: { name: string }) => found.name === name);
    assert.equal(setup.state, "conflict");
    assert.equal(setup.sparesExpected, 2);
    assert.equal(setup.sparesFound, 2);
    assert.equal(setup.main.path, images.file("gm-main.img"));
    assert.equal(setup.conflicts[0].kind, "cloned-spare");
    assert.deepEqual(setup.spares[1].stale.length, 1);
    for (const candidate of report.candidates) assert.ok(candidate.probeMs >= 0);

    await Deno.remove(images.file("gm-clone.img"));
    delete before["gm-clone.img"];
    const table = await runCli(["discover", images.file("gm-s0.img"), images.file("gm-s1.img")]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, new RegExp(`${name}\\s+\\S+\\s+complete\\s+95\\s+2/2\\s+clean`));
    assert.match(table.stdout, /-5: weak identity/);
    assert.deepEqual(await hashFiles(images.path), before);

    const history = new DatabaseSync(`${CLI_ENV.DM_REMAP_STATE_DIR}/${name}.events.sqlite`);
    const rows = history.prepare("SELECT type, message FROM events ORDER BY id").all();
    history.close();
    assert.deepEqual(rows.map((row) => row.type), ["discovered", "discovered"]);
    assert.match(String(rows[0]!.message), /conflict, confidence 35 .*is on 2 devices/);
    assert.match(String(rows[1]!.message), /complete, confidence 95/);
  } finally {
    await images.cleanup();
  }
});

Deno.test("dm-remap discover rejects a bad --timeout-ms", async () => {
  const run = await runCli(["discover", "--timeout-ms", "0", "/nonexistent"]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /--timeout-ms takes a whole number from 1 to/);
});

Deno.test("the bundle's discover probes on workers started from the bundle itself", async () => {
  const images = await imageDirectory({
    "gb-main.img": 64 * MIB,
    "gb-s0.img": 32 * MIB,
  });
  const name = `gb${crypto.randomUUID().slice(0, 8)}`;
  try {
    const created = await runCli([
      "create",
      name,
      "--main",
      images.file("gb-main.img"),
      "--spare",
      images.file("gb-s0.img"),
    ]);
    assert.equal(created.code, 0, created.stderr);
    const bundle = images.file("dm-remap.js");
    const built = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--output", bundle, new URL("../../main.ts", import.meta.url).pathname],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(built.code, 0, new TextDecoder().decode(built.stderr));
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", bundle, "discover", "--json", images.file("gb-s0.img")],
      env: CLI_ENV,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    const report = JSON.parse(new TextDecoder().decode(output.stdout));
    assert.deepEqual(
      report.setups.map((setup: { name: string; state: string }) => [setup.name, setup.state]),
      [[name, "complete"]],
    );
  } finally {
    await images.cleanup();
  }
});

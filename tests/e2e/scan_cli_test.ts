/**
 * The background scanner inside real `serve` processes.
 *
 * Goal: `serve` with the default schedule starts no pass on a new setup and
 * shows the next one due a day after `create`; the scan position is written
 * to the metadata during a pass, so a server killed with SIGKILL and started
 * again goes on with the same pass from there at once; `dm-remap scan` and `dm-remap health` drive and report it over
 * the API socket; a real NBD client (qemu-io) reads and writes while the
 * scanner runs, and every byte it wrote reads back.
 * Method: image files, `serve` as a child process, the CLI as another.
 */

import assert from "node:assert/strict";
import { assertClientOk, describeRun, runClient } from "../clients/run_client.ts";
import { imageDirectory, runCli, startServe } from "./cli_process.ts";
import { SCAN_PERSIST_INTERVAL_MS } from "../../mod/constants.ts";
import type { ScanStatus } from "../../mod/scan/mod.ts";

const MIB = 1024 * 1024;

type Images = Awaited<ReturnType<typeof imageDirectory>>;

async function createSetup(images: Images, name: string): Promise<void> {
  const created = await runCli([
    "create",
    name,
    "--main",
    images.file("main.img"),
    "--spare",
    images.file("spare0.img"),
    "--backup-dir",
    images.file("backup"),
  ]);
  assert.equal(created.code, 0, created.stderr);
}

function serve(images: Images, name: string, scanFlags: string[]) {
  return startServe([
    name,
    "--spare",
    images.file("spare0.img"),
    "--socket",
    images.file("nbd.sock"),
    "--api-socket",
    images.file("api.sock"),
    "--events-db",
    images.file("events.sqlite"),
    "--backup-dir",
    images.file("backup"),
    ...scanFlags,
  ], { scan: true });
}

async function scanStatus(images: Images, name: string): Promise<ScanStatus> {
  const run = await runCli([
    "scan",
    name,
    "status",
    "--json",
    "--api-socket",
    images.file("api.sock"),
  ]);
  assert.equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout);
}

Deno.test("serve with the default schedule starts no pass on a new setup: the first is due a day after create", async () => {
  const images = await imageDirectory({ "main.img": 64 * MIB, "spare0.img": 32 * MIB });
  try {
    const beforeCreateMs = Date.now();
    await createSetup(images, "scanlater");
    const afterCreateMs = Date.now();
    const server = await serve(images, "scanlater", []);
    try {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const status = await scanStatus(images, "scanlater");
      assert.equal(status.state, "waiting");
      assert.equal(status.settings.enabled, true);
      assert.equal(status.bytesScanned, 0, `no pass at start: ${JSON.stringify(status)}`);
      const dayMs = 24 * 3600_000;
      assert.ok(
        status.nextPassDueMs! >= beforeCreateMs + dayMs &&
          status.nextPassDueMs! <= afterCreateMs + dayMs,
        `due a day after create: ${JSON.stringify(status)}`,
      );
      const health = await runCli(["health", "scanlater", "--api-socket", images.file("api.sock")]);
      assert.equal(health.code, 0, health.stderr);
      assert.match(
        health.stdout,
        new RegExp(
          `next pass ${new Date(status.nextPassDueMs!).toISOString()} \\(in 2[34]h \\d\\dm\\)`,
        ),
      );
    } finally {
      server.kill("SIGTERM");
      await server.finished();
    }
    // --no-scan: nothing is due.
    const off = await serve(images, "scanlater", ["--no-scan"]);
    try {
      const status = await scanStatus(images, "scanlater");
      assert.equal(status.nextPassDueMs, undefined);
      const shown = await runCli([
        "scan",
        "scanlater",
        "status",
        "--api-socket",
        images.file("api.sock"),
      ]);
      assert.equal(shown.code, 0, shown.stderr);
      assert.match(shown.stdout, /automatic passes off/);
    } finally {
      off.kill("SIGTERM");
      await off.finished();
    }
  } finally {
    await images.cleanup();
  }
});

Deno.test("a serve killed with SIGKILL goes on with the same scan pass from the recorded position", async () => {
  const images = await imageDirectory({ "main.img": 64 * MIB, "spare0.img": 32 * MIB });
  try {
    await createSetup(images, "scankill");
    // 1 MiB/s: the pass outlives the first write of the position.
    const first = await serve(images, "scankill", ["--scan-rate-max", "1M", "--region-size", "1M"]);
    // The schedule's first pass is a day away: this one starts by hand.
    const started = await runCli([
      "scan",
      "scankill",
      "start",
      "--api-socket",
      images.file("api.sock"),
    ]);
    assert.equal(started.code, 0, started.stderr);
    await new Promise((resolve) => setTimeout(resolve, SCAN_PERSIST_INTERVAL_MS + 5_000));
    const before = await scanStatus(images, "scankill");
    assert.equal(before.passesCompleted, 0);
    assert.ok(before.positionBytes > 10 * MIB, `the scan moved: ${JSON.stringify(before)}`);
    first.kill("SIGKILL");
    await first.finished();

    const second = await serve(images, "scankill", ["--scan-rate-max", "16M"]);
    try {
      const deadline = Date.now() + 60_000;
      let status = await scanStatus(images, "scankill");
      while (status.passesCompleted < 1) {
        assert.ok(Date.now() < deadline, `the pass did not end: ${JSON.stringify(status)}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
        status = await scanStatus(images, "scankill");
      }
      assert.equal(status.lastPassStartedMs, before.passStartedMs, "the same pass went on");
      // From a recorded position (at most the persist interval behind what was seen), not from 0.
      assert.ok(
        status.bytesScanned >= 64 * MIB - before.positionBytes &&
          status.bytesScanned <= 64 * MIB - 20 * MIB,
        `it resumed: ${JSON.stringify(status)}`,
      );
      // The region size flag of the first run was recorded and kept.
      const health = await runCli(["health", "scankill", "--api-socket", images.file("api.sock")]);
      assert.equal(health.code, 0, health.stderr);
      assert.match(health.stdout, /health 100\/100 EXCELLENT/);
      assert.match(health.stdout, /regions of 1 MiB/);
    } finally {
      second.kill("SIGTERM");
      await second.finished();
    }
  } finally {
    await images.cleanup();
  }
});

Deno.test("qemu-io writes and verifies its data over NBD while the scanner reads the disk", async () => {
  const images = await imageDirectory({ "main.img": 64 * MIB, "spare0.img": 32 * MIB });
  try {
    await createSetup(images, "scanio");
    const server = await serve(images, "scanio", ["--scan-rate-max", "8M"]);
    try {
      const stopped = await runCli([
        "scan",
        "scanio",
        "stop",
        "--api-socket",
        images.file("api.sock"),
      ]);
      assert.equal(stopped.code, 0, stopped.stderr);
      assert.match(stopped.stdout, /Scan: paused/);
      const started = await runCli([
        "scan",
        "scanio",
        "start",
        "--api-socket",
        images.file("api.sock"),
      ]);
      assert.equal(started.code, 0, started.stderr);
      assert.match(started.stdout, /Scan: scanning/);
      const uri = `nbd+unix:///scanio?socket=${images.file("nbd.sock")}`;
      const commands = Array.from({ length: 32 }, (_, i) => [
        `write -P ${i + 1} ${i * 2}M 1M`,
        `read -P ${i + 1} ${i * 2}M 1M`,
      ]).flat();
      const result = await runClient("qemu-io", [
        "-f",
        "raw",
        uri,
        ...commands.flatMap((command) => ["-c", command]),
        ...Array.from({ length: 32 }, (_, i) => ["-c", `read -P ${i + 1} ${i * 2}M 1M`]).flat(),
      ], { timeoutMs: 120_000 });
      assertClientOk(result);
      assert.doesNotMatch(
        result.stdout + result.stderr,
        /fail|error/i,
        describeRun(result, "failed"),
      );
      const status = await scanStatus(images, "scanio");
      assert.ok(status.bytesScanned > 0, `the scanner read meanwhile: ${JSON.stringify(status)}`);
      assert.ok(status.yields > 0, "the scanner yielded to the client's requests");
    } finally {
      server.kill("SIGTERM");
      const run = await server.finished();
      assert.equal(run.code, 0, run.stderr);
    }
  } finally {
    await images.cleanup();
  }
});

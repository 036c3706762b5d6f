/**
 * Alerts, policies and the configuration file in a real `serve`.
 *
 * Goal: a scripted failure sequence (remaps, a spare failing, the setup
 * degraded, a block turning pending) reaches a real HTTP receiver on
 * 127.0.0.1 and an exec hook, with the repeat interval holding back the
 * second and third remap of the same disk and the hook's rate limit (two a
 * minute) holding back its third alert; a policy raises its alert; a
 * SIGHUP applies a live change, names the change that needs a restart, and
 * an invalid file changes nothing. Method: `dm-remap create` and `serve
 * --config` as processes over a main disk and a spare that fail in the
 * kernel (nbdkit behind nbdfuse), qemu-io as the NBD client, the status
 * API through `dm-remap status --json`, and the serve's own log lines.
 */

import assert from "node:assert/strict";
import { startFailingDisk } from "../clients/failing_disk.ts";
import { assertClientOk, runClient } from "../clients/run_client.ts";
import type { SetupStatus } from "../../mod/api/status.ts";
import { hookCalls, startWebhookReceiver, writeHookScript } from "../alerts/receivers.ts";
import { imageDirectory, runCli, startServe } from "./cli_process.ts";

const MIB = 1024 * 1024;
const KIB = 1024;

function configText(
  options: { webhook: string; hook: string; readRetries: number; apiTcp?: string },
): string {
  return `# written by alerts_cli_test.ts
log:
  level: info
serve:
  read-retries: ${options.readRetries}
${options.apiTcp === undefined ? "" : `  api:\n    tcp: ${options.apiTcp}\n`}alerts:
  repeat-interval-s: 3600
  targets:
    receiver:
      webhook: ${options.webhook}
      timeout-ms: 2000
      retries: 1
      backoff-ms: 50
    hook:
      exec: ${options.hook}
      events: [spare-failed, degraded, policy]
      rate-per-minute: 2
policies:
  pending-blocks:
    when: { pending-blocks: 1 }
    then: [alert]
`;
}

async function status(apiSocket: string): Promise<SetupStatus> {
  const run = await runCli(["status", "--api-socket", apiSocket, "--json"]);
  assert.equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout);
}

async function qemuIo(uri: string, command: string): Promise<string> {
  const result = await runClient("qemu-io", ["-f", "raw", uri, "-c", command]);
  assertClientOk(result);
  return result.stdout + result.stderr;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

Deno.test("serve --config alerts a webhook and an exec hook through remaps, a failed spare and a pending block, and reloads on SIGHUP", async () => {
  const files = await imageDirectory({ "spare1.img": 32 * MIB });
  const main = await startFailingDisk({ sizeBytes: 64 * MIB });
  const spare0 = await startFailingDisk({ sizeBytes: 32 * MIB });
  await using receiver = startWebhookReceiver();
  try {
    const hook = await writeHookScript(files.path, files.file("hook.tsv"));
    const configPath = files.file("dm-remap.yaml");
    await Deno.writeTextFile(
      configPath,
      configText({ webhook: receiver.url, hook, readRetries: 1 }),
    );
    const checked = await runCli(["config", "check", configPath]);
    assert.equal(checked.code, 0, checked.stderr);
    const created = await runCli([
      "create",
      "alerting",
      "--main",
      main.path,
      "--spare",
      spare0.path,
      "--spare",
      files.file("spare1.img"),
      "--backup-dir",
      files.file("backup"),
    ]);
    assert.equal(created.code, 0, created.stderr);
    const socket = files.file("nbd.sock");
    const apiSocket = files.file("api.sock");
    const uri = `nbd+unix:///alerting?socket=${socket}`;
    const serve = await startServe([
      "--config",
      configPath,
      "--main",
      main.path,
      "--spare",
      spare0.path,
      "--spare",
      files.file("spare1.img"),
      "--socket",
      socket,
      "--api-socket",
      apiSocket,
      "--events-db",
      files.file("events.sqlite"),
      "--backup-dir",
      files.file("backup"),
    ]);
    let finished;
    try {
      // 1. Two blocks fail to write: two remaps on spare 0; the second is held back.
      await main.setBadRanges([{ offsetBytes: 1 * MIB, lengthBytes: 8 * KIB, fail: "write" }]);
      assert.doesNotMatch(await qemuIo(uri, `write -P 0x11 ${1 * MIB} ${8 * KIB}`), /error/i);
      // 2. Spare 0 stops taking writes; the next remap fails it, degrades the setup, lands on spare 1.
      await spare0.setBadRanges([{ offsetBytes: 0, lengthBytes: 32 * MIB, fail: "write" }]);
      await main.setBadRanges([{ offsetBytes: 3 * MIB, lengthBytes: 4 * KIB, fail: "write" }]);
      assert.doesNotMatch(await qemuIo(uri, `write -P 0x22 ${3 * MIB} ${4 * KIB}`), /error/i);
      // 3. A block turns unreadable: EIO, pending, and the policy on pending blocks holds.
      assert.doesNotMatch(await qemuIo(uri, `write -P 0x33 ${5 * MIB} ${4 * KIB}`), /error/i);
      await main.setBadRanges([{ offsetBytes: 5 * MIB, lengthBytes: 4 * KIB, fail: "both" }]);
      const unreadable = await runClient("qemu-io", [
        "-f",
        "raw",
        uri,
        "-c",
        `read -P 0x33 ${5 * MIB} ${4 * KIB}`,
      ]);
      assert.match(unreadable.stdout + unreadable.stderr, /Input\/output error/);

      const kinds = [
        "started",
        "remap",
        "spare-failed",
        "degraded",
        "read-error",
        "pending",
        "policy",
      ];
      const bodies = await until("every alert kind at the receiver", () => {
        const seen = new Set(receiver.bodies.map((body) => body.kind));
        return Promise.resolve(kinds.every((kind) => seen.has(kind)) ? receiver.bodies : undefined);
      });
      const live = await status(apiSocket);
      assert.equal(live.counters.remaps, 3);
      assert.equal(live.setup.state, "degraded");
      assert.deepEqual(live.pendingBlocks, [5 * MIB / 4096]);
      // The same kind, setup and device once per repeat interval: one remap alert of three.
      const remaps = bodies.filter((body) => body.kind === "remap");
      assert.equal(remaps.length, 1);
      assert.equal(remaps[0]!.device, main.path);
      assert.equal(remaps[0]!.details, "remapped block 256 to spare 0 slot 0");
      const failed = bodies.find((body) => body.kind === "spare-failed")!;
      assert.equal(failed.device, spare0.path);
      assert.match(failed.details, /^spare 0 failed and takes no new remaps/);
      const receiverCounts = live.alerts.find((counts) => counts.name === "receiver")!;
      assert.ok(receiverCounts.suppressed >= 2, JSON.stringify(live.alerts));
      assert.equal(receiverCounts.failed, 0);
      assert.equal(receiverCounts.dropped, 0);
      const policy = live.policies.find((evaluation) => evaluation.name === "pending-blocks")!;
      assert.equal(policy.holds, true);
      assert.deepEqual(policy.actions, ["alert"]);
      assert.deepEqual(policy.reasons, ["1 pending blocks (at least 1)"]);

      // The hook ran with argv EVENT SETUP DEVICE DETAILS for the kinds it takes, two a
      // minute at most: the policy's alert, third of the minute, was held back.
      const calls = await until("the hook's two calls", async () => {
        const calls = await hookCalls(files.file("hook.tsv"));
        return calls.length >= 2 ? calls : undefined;
      });
      assert.deepEqual(calls.map((call) => call.slice(0, 3)), [
        ["spare-failed", "alerting", spare0.path],
        ["degraded", "alerting", main.path],
      ]);
      const hookCounts = live.alerts.find((counts) => counts.name === "hook")!;
      assert.deepEqual([hookCounts.suppressed, hookCounts.dropped], [1, 0]);

      // 4. SIGHUP: read retries change live; an API address waits for a restart.
      await Deno.writeTextFile(
        configPath,
        configText({ webhook: receiver.url, hook, readRetries: 5, apiTcp: "127.0.0.1:0" }),
      );
      serve.kill("SIGHUP");
      await until("the reload", async () => {
        const counts = (await status(apiSocket)).events;
        return counts["config-reloaded"] === 1 ? true : undefined;
      });
      // 5. An invalid file on SIGHUP is refused and changes nothing.
      await Deno.writeTextFile(configPath, "serve:\n  read-retries: lots\n");
      serve.kill("SIGHUP");
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal((await status(apiSocket)).events["config-reloaded"], 1);
    } finally {
      serve.kill("SIGTERM");
      finished = await serve.finished();
    }
    assert.equal(finished.code, 0, finished.stderr);
    const log = finished.stderr.split("\n").filter((line) => line !== "");
    // Every line serve wrote is one structured record.
    for (const line of log) assert.match(line, /^level=(err|warning|notice|info|debug) \S+=/);
    assert.ok(log.some((line) => line.includes("event=stopping signal=SIGTERM")));
    assert.ok(
      log.some((line) =>
        line.includes("event=config-reloaded applied=read-retries needs_restart=api.tcp")
      ),
      finished.stderr,
    );
    assert.ok(
      log.some((line) =>
        line.startsWith("level=err setup=alerting event=config-rejected") &&
        line.includes(`${configPath}:2:17: serve.read-retries: expected a whole number`)
      ),
      finished.stderr,
    );
    assert.ok(log.some((line) => /^level=notice setup=alerting event=remap block=256 /.test(line)));
    // The stop is alerted too, before serve exits.
    assert.ok(receiver.bodies.some((body) => body.kind === "stopped"));
  } finally {
    await main.stop();
    await spare0.stop();
    await files.cleanup();
  }
});

/**
 * Goal: the configuration commands as an operator runs them: `config check`
 * prints every problem with its position and exits 2 (usage), `config show`
 * gives each effective value with its source, `alert test` reaches a real
 * receiver and fails with 69 (unavailable) when the target does not answer.
 * Method: `dm-remap` as a process, a webhook receiver on 127.0.0.1.
 */

import assert from "node:assert/strict";
import { startDeadWebhook, startWebhookReceiver } from "../alerts/receivers.ts";
import { imageDirectory, runCli } from "./cli_process.ts";

Deno.test("dm-remap config check reports each problem with file, line and column, and exits 2", async () => {
  const files = await imageDirectory({});
  try {
    const path = files.file("bad.yaml");
    await Deno.writeTextFile(path, "serve:\n  read-retries: 99\n  colour: red\n");
    const run = await runCli(["config", "check", path]);
    assert.equal(run.code, 2);
    assert.equal(
      run.stderr.trim(),
      `dm-remap config: Invalid configuration "${path}": fix 2 problem(s):\n` +
        `  ${path}:2:17: serve.read-retries: expected a whole number from 0 to 16, got 99\n` +
        `  ${path}:3:3: serve: unknown key "colour": expected one of nbd, api, export, read-retries, ` +
        "events-db, backup-dir, buffered, scan-dir, alerts, policies, policy-interval-s, scan, allocation",
    );
    const missing = await runCli(["config", "check", "--config", files.file("none.yaml")]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /Cannot read the configuration ".*none.yaml": no such file/);
  } finally {
    await files.cleanup();
  }
});

Deno.test("dm-remap config show --json gives each value with its source, DM_REMAP_CONFIG naming the file", async () => {
  const files = await imageDirectory({});
  try {
    const path = files.file("dm-remap.yaml");
    await Deno.writeTextFile(
      path,
      "serve:\n  read-retries: 5\nsetups:\n  vault:\n    buffered: true\n",
    );
    const run = await runCli(["config", "show", "vault", "--json"], {
      env: { DM_REMAP_CONFIG: path },
    });
    assert.equal(run.code, 0, run.stderr);
    const shown = JSON.parse(run.stdout);
    const byKey = new Map(
      shown.effective.map((setting: { key: string }) => [setting.key, setting]),
    );
    assert.deepEqual(byKey.get("read-retries"), {
      key: "read-retries",
      value: 5,
      source: `${path}:2:17 (serve.read-retries)`,
      live: true,
    });
    assert.deepEqual(byKey.get("buffered"), {
      key: "buffered",
      value: true,
      source: `${path}:5:15 (setups.vault.buffered)`,
      live: false,
    });
    assert.equal((byKey.get("events-db") as { source: string }).source, "default");
  } finally {
    await files.cleanup();
  }
});

Deno.test("dm-remap alert test sends a test alert to a real receiver, and exits 69 when none answers", async () => {
  const files = await imageDirectory({});
  await using receiver = startWebhookReceiver();
  using dead = startDeadWebhook();
  try {
    const path = files.file("dm-remap.yaml");
    await Deno.writeTextFile(
      path,
      `alerts:\n  targets:\n    ops:\n      webhook: ${receiver.url}\n      events: [degraded]\n` +
        `    gone:\n      webhook: ${dead.url}\n      timeout-ms: 200\n      retries: 1\n      backoff-ms: 10\n`,
    );
    const sent = await runCli(["alert", "test", "ops", "--config", path, "--setup", "vault"]);
    assert.equal(sent.code, 0, sent.stderr);
    assert.equal(sent.stdout.trim(), `sent a test alert to target "ops" (${receiver.url})`);
    // A test alert passes the target's kind filter: it tests the path, not the filter.
    assert.deepEqual(
      receiver.bodies.map((body) => [body.kind, body.setup, body.details]),
      [["test", "vault", "test alert from dm-remap alert test ops"]],
    );
    const failed = await runCli(["alert", "test", "gone", "--config", path]);
    assert.equal(failed.code, 69);
    assert.match(failed.stderr, /Cannot POST the alert to ".*" \(target "gone"\).*within 200 ms/);
    const unknown = await runCli(["alert", "test", "pager", "--config", path]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /Cannot find alert target "pager" in ".*": it defines ops, gone/);
  } finally {
    await files.cleanup();
  }
});

/**
 * Goal: alerts reach real receivers (an HTTP server on 127.0.0.1 and an exec
 * hook), per kind, with retries on a failing webhook; a dead webhook never
 * makes `raise()` wait, fills only its own bounded queue, and its drops and
 * failures are counted and logged; `stop()` is bounded. Method: an
 * `AlertDispatcher` with real targets from `receivers.ts`.
 */

import assert from "node:assert/strict";
import type { AlertTargetSettings } from "../../mod/alerts/alert.ts";
import { AlertDispatcher } from "../../mod/alerts/alert_dispatcher.ts";
import { ALERT_DRAIN_MS_MAX, ALERT_QUEUE_MAX } from "../../mod/constants.ts";
import { StructuredLog } from "../../mod/log/structured_log.ts";
import { hookCalls, startDeadWebhook, startWebhookReceiver, writeHookScript } from "./receivers.ts";

function target(
  name: string,
  destination: AlertTargetSettings["destination"],
  extra: Partial<AlertTargetSettings> = {},
): AlertTargetSettings {
  return {
    name,
    destination,
    kinds: [],
    timeoutMs: 2_000,
    retries: 0,
    backoffMs: 10,
    ratePerMinute: 1_000,
    repeatIntervalMs: 0,
    ...extra,
  };
}

function testLog(lines: string[]): StructuredLog {
  return new StructuredLog({ write: (line) => lines.push(line), journal: false });
}

Deno.test("AlertDispatcher sends each alert to the webhook and the exec hook that take its kind", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-alerts-" });
  await using receiver = startWebhookReceiver();
  try {
    const hook = await writeHookScript(dir, `${dir}/calls.tsv`);
    const lines: string[] = [];
    const dispatcher = new AlertDispatcher({
      spareNearlyFullPercent: 90,
      targets: [
        target("web", { webhook: receiver.url }),
        target("hook", { exec: hook }, { kinds: ["degraded"] }),
      ],
    }, { log: testLog(lines) });
    dispatcher.raise({
      kind: "remap",
      setup: "big",
      device: "/dev/sdb",
      details: "remapped block 7",
    });
    dispatcher.raise({
      kind: "degraded",
      setup: "big",
      device: "/dev/sdb",
      details: "setup degraded: x y",
    });
    await dispatcher.stop();
    const bodies = await receiver.received(2);
    assert.deepEqual(bodies.map((body) => [body.kind, body.setup, body.device, body.details]), [
      ["remap", "big", "/dev/sdb", "remapped block 7"],
      ["degraded", "big", "/dev/sdb", "setup degraded: x y"],
    ]);
    // The hook got only the kind it takes, with the details as one argument.
    assert.deepEqual(await hookCalls(`${dir}/calls.tsv`), [
      ["degraded", "big", "/dev/sdb", "setup degraded: x y", "0"],
    ]);
    assert.deepEqual(dispatcher.counts().map((c) => [c.name, c.sent, c.failed]), [["web", 2, 0], [
      "hook",
      1,
      0,
    ]]);
    assert.deepEqual(lines, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AlertDispatcher retries a webhook that answers 500, then counts and logs the failure", async () => {
  await using receiver = startWebhookReceiver();
  receiver.status = 500;
  const lines: string[] = [];
  const dispatcher = new AlertDispatcher({
    spareNearlyFullPercent: 90,
    targets: [target("web", { webhook: receiver.url }, { retries: 2, backoffMs: 5 })],
  }, { log: testLog(lines) });
  dispatcher.raise({ kind: "pending", setup: "big", device: "/dev/sdb", details: "block 3" });
  await dispatcher.stop();
  assert.equal(receiver.bodies.length, 3, "one attempt and two retries");
  assert.deepEqual(dispatcher.counts().map((c) => [c.sent, c.failed]), [[0, 1]]);
  assert.equal(lines.length, 1);
  assert.match(
    lines[0]!,
    /^level=warning event=alert-failed target=web kind=pending msg=".*answered 500/,
  );
});

Deno.test("AlertDispatcher.raise() never waits for a dead webhook, and drops past the queue bound", async () => {
  using dead = startDeadWebhook();
  const lines: string[] = [];
  const dispatcher = new AlertDispatcher({
    spareNearlyFullPercent: 90,
    targets: [target("dead", { webhook: dead.url }, { timeoutMs: 60_000 })],
  }, { log: testLog(lines) });
  const total = ALERT_QUEUE_MAX + 50;
  const startMs = performance.now();
  for (let i = 0; i < total; i++) {
    dispatcher.raise({ kind: "remap", setup: "big", device: `/dev/sd${i}`, details: `block ${i}` });
  }
  const raiseMs = performance.now() - startMs;
  assert.ok(raiseMs < 200, `raising ${total} alerts took ${raiseMs} ms`);
  // One is being sent (it left the queue), ALERT_QUEUE_MAX wait, the rest are dropped.
  assert.equal(dispatcher.counts()[0]!.dropped, total - ALERT_QUEUE_MAX - 1);
  assert.match(lines[0]!, /event=alert-dropped target=dead/);
  const stopMs = performance.now();
  await dispatcher.stop();
  const stoppedMs = performance.now() - stopMs;
  assert.ok(stoppedMs < ALERT_DRAIN_MS_MAX + 1_000, `stop took ${stoppedMs} ms`);
  assert.equal(dispatcher.counts()[0]!.dropped, total - 1);
  assert.ok(dead.accepted >= 1, "the dead webhook was really connected to");
});

Deno.test("AlertDispatcher.replace() sends to the new targets and keeps counts by name", async () => {
  await using first = startWebhookReceiver();
  await using second = startWebhookReceiver();
  const dispatcher = new AlertDispatcher({
    spareNearlyFullPercent: 90,
    targets: [target("web", { webhook: first.url })],
  }, { log: testLog([]) });
  dispatcher.raise({ kind: "remap", setup: "big", device: "/dev/sdb", details: "one" });
  await first.received(1);
  dispatcher.replace({
    spareNearlyFullPercent: 50,
    targets: [target("web", { webhook: second.url })],
  });
  dispatcher.raise({ kind: "remap", setup: "big", device: "/dev/sdb", details: "two" });
  await dispatcher.stop();
  assert.deepEqual(second.bodies.map((body) => body.details), ["two"]);
  assert.equal(dispatcher.counts()[0]!.sent, 2);
  assert.equal(dispatcher.spareNearlyFullPercent, 50);
});

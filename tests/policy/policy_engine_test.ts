/**
 * Goal: policies act when their conditions start to hold, not again while
 * they keep holding, and again after they stopped; conditions and actions
 * whose input or actuator does not exist yet are reported, never guessed.
 * Method: a `PolicyEngine` over inputs the test changes, recording alerts.
 */

import assert from "node:assert/strict";
import type { PolicyInputs, PolicySettings } from "../../mod/policy/policy.ts";
import { PolicyEngine } from "../../mod/policy/policy_engine.ts";

const RULES: PolicySettings[] = [
  { name: "pending", when: { pendingBlocksAtLeast: 2 }, then: ["alert"] },
  { name: "full", when: { spareUsedPercentAtLeast: 50, degraded: false }, then: ["alert"] },
  { name: "health", when: { healthScoreBelow: 40 }, then: ["alert", "start-scan"] },
  { name: "drain", when: { degraded: true }, then: ["stop-allocating"] },
];

function rig() {
  const inputs: PolicyInputs = {
    pendingBlocks: 0,
    degraded: false,
    spares: [{ index: 0, state: "active", usedPercent: 10 }],
  };
  const alerts: string[] = [];
  let nowMs = 1_000;
  const engine = new PolicyEngine({
    inputs: () => inputs,
    actuators: { alert: (policy, details) => alerts.push(`${policy}: ${details}`) },
    now: () => nowMs,
  });
  engine.configure(RULES, 60_000);
  return { inputs, alerts, engine, tick: () => nowMs += 1_000 };
}

Deno.test("PolicyEngine alerts when pending blocks reach the threshold, once while it holds", () => {
  const { inputs, alerts, engine, tick } = rig();
  try {
    engine.evaluate("start");
    assert.deepEqual(alerts, []);
    inputs.pendingBlocks = 2;
    tick();
    engine.evaluate("pending");
    inputs.pendingBlocks = 3;
    engine.evaluate("pending");
    assert.deepEqual(alerts, ['pending: policy "pending" holds: 2 pending blocks (at least 2)']);
    inputs.pendingBlocks = 0;
    engine.evaluate("remap");
    inputs.pendingBlocks = 5;
    engine.evaluate("pending");
    assert.equal(alerts.length, 2, "a condition that held again acts again");
    const pending = engine.evaluations.find((evaluation) => evaluation.name === "pending")!;
    assert.deepEqual(
      [pending.holds, pending.trigger, pending.actions, pending.reasons],
      [true, "pending", ["alert"], ["5 pending blocks (at least 2)"]],
    );
  } finally {
    engine.stop();
  }
});

Deno.test("PolicyEngine needs every condition of a policy: spare usage and not degraded", () => {
  const { inputs, alerts, engine } = rig();
  try {
    inputs.spares = [{ index: 0, state: "active", usedPercent: 60 }];
    inputs.degraded = true;
    engine.evaluate("remap");
    assert.deepEqual(alerts, []);
    inputs.degraded = false;
    engine.evaluate("remap");
    assert.deepEqual(alerts, [
      'full: policy "full" holds: fullest active spare 60.0% used (at least 50%); setup is not degraded',
    ]);
  } finally {
    engine.stop();
  }
});

Deno.test("PolicyEngine reports conditions and actions that arrive with the scanner and spare pool", () => {
  const { inputs, alerts, engine } = rig();
  try {
    inputs.degraded = true;
    engine.evaluate("degraded");
    const byName = new Map(engine.evaluations.map((evaluation) => [evaluation.name, evaluation]));
    assert.deepEqual(byName.get("health")!.unavailable, [
      "condition health-score-below: arrives with the scanner",
      "action start-scan: arrives with the scanner",
    ]);
    assert.equal(byName.get("health")!.holds, false, "an unavailable input never holds");
    assert.equal(byName.get("drain")!.holds, true);
    assert.deepEqual(byName.get("drain")!.actions, [], "no actuator, no action claimed");
    assert.deepEqual(byName.get("drain")!.unavailable, [
      "action stop-allocating: arrives with the spare pool",
    ]);
    assert.deepEqual(alerts, []);
  } finally {
    engine.stop();
  }
});

Deno.test("PolicyEngine uses a scanner's inputs and actuators once they are given", () => {
  const started: string[] = [];
  const stopped: number[][] = [];
  const engine = new PolicyEngine({
    inputs: () => ({
      pendingBlocks: 0,
      degraded: true,
      healthScore: 30,
      spares: [{ index: 0, state: "active", usedPercent: 5 }, {
        index: 1,
        state: "failed",
        usedPercent: 0,
      }],
    }),
    actuators: {
      alert: () => {},
      startScan: (policy) => started.push(policy),
      stopAllocating: (_policy, spares) => stopped.push([...spares]),
    },
  });
  try {
    engine.configure(RULES, 60_000);
    engine.evaluate("interval");
    assert.deepEqual(started, ["health"]);
    assert.deepEqual(stopped, [[0]]);
    assert.ok(engine.evaluations.every((evaluation) => evaluation.unavailable.length === 0));
  } finally {
    engine.stop();
  }
});

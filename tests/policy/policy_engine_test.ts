/**
 * Goal: policies act when their conditions start to hold, not again while
 * they keep holding, and again after they stopped; the scanner's conditions
 * (health score, findings) start scans; `stop-allocating` points at the
 * spares its conditions name or else the failing ones, follows spares that
 * come to match, and is lifted when the policy stops holding or is removed;
 * conditions and actions whose input or actuator a server lacks are
 * reported, never guessed. Method: a `PolicyEngine` over inputs the test
 * changes, recording what the actuators are asked.
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
    spares: [{ index: 0, state: "active", usedPercent: 10, errors: 0 }],
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
    inputs.spares = [{ index: 0, state: "active", usedPercent: 60, errors: 0 }];
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

Deno.test("PolicyEngine reports conditions and actions a server without a scanner or spare pool lacks", () => {
  const { inputs, alerts, engine } = rig();
  try {
    inputs.degraded = true;
    engine.evaluate("degraded");
    const byName = new Map(engine.evaluations.map((evaluation) => [evaluation.name, evaluation]));
    assert.deepEqual(byName.get("health")!.unavailable, [
      "condition health-score-below: this server has no scanner",
      "action start-scan: this server has no scanner",
    ]);
    assert.equal(byName.get("health")!.holds, false, "an unavailable input never holds");
    assert.equal(byName.get("drain")!.holds, true);
    assert.deepEqual(byName.get("drain")!.actions, [], "no actuator, no action claimed");
    assert.deepEqual(byName.get("drain")!.unavailable, [
      "action stop-allocating: this server has no spare pool",
    ]);
    assert.deepEqual(alerts, []);
  } finally {
    engine.stop();
  }
});

/** An engine with every actuator, recording what it is asked. */
function actingRig(rules: PolicySettings[], inputs: PolicyInputs) {
  const started: string[] = [];
  const stops: [string, number[]][] = [];
  const engine = new PolicyEngine({
    inputs: () => inputs,
    actuators: {
      alert: () => {},
      startScan: (policy) => started.push(policy),
      stopAllocating: (policy, spares) => stops.push([policy, [...spares]]),
    },
  });
  engine.configure(rules, 60_000);
  return { engine, started, stops };
}

function spare(index: number, usedPercent: number, errors: number): PolicyInputs["spares"][0] {
  return { index, state: "active", usedPercent, errors };
}

Deno.test("PolicyEngine starts a scan when the health score falls below the threshold, once per fall", () => {
  const inputs: PolicyInputs = { pendingBlocks: 0, degraded: false, spares: [], healthScore: 100 };
  const rules: PolicySettings[] = [
    { name: "rescan", when: { healthScoreBelow: 60 }, then: ["start-scan"] },
  ];
  const { engine, started } = actingRig(rules, inputs);
  try {
    engine.evaluate("start");
    assert.deepEqual(started, []);
    inputs.healthScore = 59;
    engine.evaluate("pending");
    engine.evaluate("interval");
    assert.deepEqual(started, ["rescan"]);
    const [evaluation] = engine.evaluations;
    assert.deepEqual(
      [evaluation!.holds, evaluation!.reasons, evaluation!.actions, evaluation!.unavailable],
      [true, ["health score 59 (below 60)"], ["start-scan"], []],
    );
    inputs.healthScore = 60;
    engine.evaluate("interval");
    inputs.healthScore = 10;
    engine.evaluate("interval");
    assert.deepEqual(started, ["rescan", "rescan"]);
  } finally {
    engine.stop();
  }
});

Deno.test("PolicyEngine stops allocating on the failing spares when scan findings reach the threshold, and lifts it after", () => {
  const inputs: PolicyInputs = {
    pendingBlocks: 0,
    degraded: false,
    spares: [spare(0, 10, 0), spare(1, 10, 3), spare(2, 10, 0)],
    scanFindings: 1,
  };
  const rules: PolicySettings[] = [
    { name: "findings", when: { scanFindingsAtLeast: 2 }, then: ["stop-allocating"] },
  ];
  const { engine, stops } = actingRig(rules, inputs);
  try {
    engine.evaluate("start");
    assert.deepEqual(stops, []);
    inputs.scanFindings = 2;
    engine.evaluate("scan-pass-completed");
    assert.deepEqual(stops, [["findings", [1]]], "only the spare with errors");
    assert.deepEqual(engine.evaluations[0]!.actions, ["stop-allocating on spares 1"]);
    assert.deepEqual(engine.evaluations[0]!.reasons, [
      "2 bad blocks found by the last scan pass (at least 2)",
    ]);
    // While it holds, a spare that starts failing is stopped too.
    inputs.spares = [spare(0, 10, 1), spare(1, 10, 3), spare(2, 10, 0)];
    engine.evaluate("read-error");
    assert.deepEqual(stops.at(-1), ["findings", [0, 1]]);
    inputs.scanFindings = 0;
    engine.evaluate("scan-pass-completed");
    assert.deepEqual(stops.at(-1), ["findings", []], "lifted when the policy stops holding");
    const count = stops.length;
    engine.evaluate("interval");
    assert.equal(stops.length, count, "nothing to lift twice");
  } finally {
    engine.stop();
  }
});

Deno.test("PolicyEngine stops allocating on the spares its spare conditions name", () => {
  const inputs: PolicyInputs = {
    pendingBlocks: 0,
    degraded: false,
    spares: [spare(0, 85, 0), spare(1, 20, 5), spare(2, 90, 2), {
      index: 3,
      state: "failed",
      usedPercent: 99,
      errors: 9,
    }],
  };
  const rules: PolicySettings[] = [
    { name: "full", when: { spareUsedPercentAtLeast: 80 }, then: ["stop-allocating"] },
    { name: "erring", when: { spareErrorsAtLeast: 2 }, then: ["stop-allocating"] },
    { name: "both", when: { spareUsedPercentAtLeast: 80, spareErrorsAtLeast: 2 }, then: [] },
  ];
  const { engine, stops } = actingRig(rules, inputs);
  try {
    engine.evaluate("remap");
    assert.deepEqual(stops, [["full", [0, 2]], ["erring", [1, 2]]]);
    assert.deepEqual(engine.evaluations.map((evaluation) => evaluation.reasons), [
      ["fullest active spare 90.0% used (at least 80%)"],
      ["most I/O errors on an active spare: 5 (at least 2)"],
      [
        "fullest active spare 90.0% used (at least 80%)",
        "most I/O errors on an active spare: 5 (at least 2)",
      ],
    ]);
    // A reload without the policy lets its spares take slots again; the other keeps its stop.
    engine.configure([rules[1]!], 60_000);
    assert.deepEqual(stops.at(-1), ["full", []]);
    assert.deepEqual(engine.evaluations.map((evaluation) => evaluation.name), ["erring"]);
  } finally {
    engine.stop();
  }
});

Deno.test("PolicyEngine says when stop-allocating finds no spare to stop", () => {
  const inputs: PolicyInputs = {
    pendingBlocks: 3,
    degraded: false,
    spares: [spare(0, 10, 0)],
  };
  const rules: PolicySettings[] = [
    { name: "pending", when: { pendingBlocksAtLeast: 1 }, then: ["stop-allocating"] },
  ];
  const { engine, stops } = actingRig(rules, inputs);
  try {
    engine.evaluate("pending");
    assert.deepEqual(stops, [["pending", []]]);
    assert.deepEqual(engine.evaluations[0]!.actions, ["stop-allocating: no spare to stop"]);
  } finally {
    engine.stop();
  }
});

/**
 * The health rule: which setups are ok and which are degraded, and why.
 *
 * Method: table rows of scenario → expected status and reasons, judged by
 * `healthOf()` on a status built from the fixture.
 */

import assert from "node:assert/strict";
import { healthOf } from "../../mod/api/routes/health.ts";
import type { SetupStatus } from "../../mod/api/status.ts";
import { spareFixture, statusFixture } from "./fixtures.ts";

const base = statusFixture();
const degradedState = { ...base.setup, state: "degraded" as const };

/** A health section whose scrub of spare 1 is in `state` after 6 failures. */
function scrubHealth(state: "degraded" | "retrying"): SetupStatus["health"] {
  return {
    smart: null,
    scrub: {
      intervalMs: 3_600_000,
      passes: 7,
      spares: [
        { spareIndex: 0, state: "ok", lastRepairs: [], repairsTotal: 0, failures: 0 },
        {
          spareIndex: 1,
          state,
          lastRepairs: [],
          repairsTotal: 0,
          failures: 6,
          lastError: "copy 2 after rewrite: unreadable",
        },
      ],
    },
    forecast: {
      state: "no-trend",
      slotsFree: 100,
      remapsPerDay: 0,
      spanDays: 7,
      reasons: [],
      summary: "",
    },
  };
}

Deno.test("healthOf() is ok exactly when it gives no reason, and names each reason", () => {
  const rows: [
    scenario: string,
    status: SetupStatus,
    expected: "ok" | "pending" | "degraded" | "failed",
    reasons: string[],
  ][] = [
    ["clean setup with free slots", base, "ok", []],
    [
      "pending blocks alone (unreadable until the write that remaps them)",
      statusFixture({ pendingBlocks: [4, 8], counters: { ...base.counters, pending: 2 } }),
      "pending",
      ["2 blocks are pending: unreadable on the main disk, and read as errors until the client rewrites them"],
    ],
    [
      "one pending block on a degraded setup",
      statusFixture({
        setup: { ...base.setup, state: "degraded" },
        pendingBlocks: [4],
        counters: { ...base.counters, pending: 1 },
      }),
      "degraded",
      [
        'Setup "vault" is in the degraded state',
        "1 block is pending: unreadable on the main disk, and read as errors until the client rewrites it",
      ],
    ],
    [
      "one spare full, another with room",
      statusFixture({ spares: [spareFixture(0, { slotsUsed: 100 }), spareFixture(1)] }),
      "ok",
      [],
    ],
    [
      "the metadata scrub gave up on a spare",
      statusFixture({ health: scrubHealth("degraded") }),
      "degraded",
      [
        "Spare 1's metadata could not be repaired by the scrub (6 failures in a row: copy 2 " +
        "after rewrite: unreadable): replace the spare",
      ],
    ],
    [
      "the metadata scrub retries a spare",
      statusFixture({ health: scrubHealth("retrying") }),
      "ok",
      [],
    ],
    [
      "spare opened with 3 of 5 copies (repaired since)",
      statusFixture({ spares: [spareFixture(0, { validCopies: 3 })] }),
      "ok",
      [],
    ],
    ["setup state degraded", statusFixture({ setup: degradedState }), "degraded", [
      'Setup "vault" is in the degraded state',
    ]],
    [
      "one of two spares failed",
      statusFixture({ spares: [spareFixture(0), spareFixture(1, { state: "failed" })] }),
      "degraded",
      ['Spare 1 "/dev/spare1" has failed'],
    ],
    [
      "every active spare full",
      statusFixture({
        spares: [
          spareFixture(0, { slotsUsed: 100 }),
          spareFixture(1, { slotCount: 20, slotsUsed: 20 }),
        ],
      }),
      "degraded",
      ["No active spare has a free slot: add a spare"],
    ],
    [
      "the only spare with room has failed",
      statusFixture({
        spares: [spareFixture(0, { slotsUsed: 100 }), spareFixture(1, { state: "failed" })],
      }),
      "degraded",
      ['Spare 1 "/dev/spare1" has failed', "No active spare has a free slot: add a spare"],
    ],
    [
      "main disk gone (failed wins over degraded)",
      statusFixture({
        setup: { ...base.setup, state: "failed", failure: 'the main disk "/dev/sda" is gone' },
        spares: [spareFixture(0, { state: "failed" })],
      }),
      "failed",
      [
        'Setup "vault" has failed: the main disk "/dev/sda" is gone',
        'Spare 0 "/dev/spare0" has failed',
        "No active spare has a free slot: add a spare",
      ],
    ],
    [
      "everything at once",
      statusFixture({ setup: degradedState, spares: [spareFixture(0, { state: "failed" })] }),
      "degraded",
      [
        'Setup "vault" is in the degraded state',
        'Spare 0 "/dev/spare0" has failed',
        "No active spare has a free slot: add a spare",
      ],
    ],
  ];
  for (const [scenario, status, expected, reasons] of rows) {
    const health = healthOf(status);
    assert.equal(health.status, expected, scenario);
    assert.deepEqual(health.reasons, reasons, scenario);
  }
});

Deno.test("healthOf() counts active and failed spares, free slots of active spares, and pending blocks", () => {
  const health = healthOf(statusFixture({
    spares: [
      spareFixture(0, { slotsUsed: 90 }),
      spareFixture(1, { state: "failed", slotsUsed: 0 }),
      spareFixture(2, { slotsUsed: 1 }),
    ],
    pendingBlocks: [3],
    counters: { ...base.counters, pending: 1 },
  }));
  assert.deepEqual(health.spares, { active: 2, failed: 1, slotsFree: 10 + 99 });
  assert.equal(health.pendingBlocks, 1);
  assert.deepEqual(health.setup, { name: "vault", uuid: base.setup.uuid, state: "clean" });
});

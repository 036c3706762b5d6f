/**
 * forecastSparePool(): synthetic histories (remaps spread evenly, in a
 * burst, accelerating; none; with pending blocks and SMART rises) → the
 * expected days, the range and the reasons a person reads.
 */

import assert from "node:assert/strict";
import { type ForecastEvent, forecastSparePool } from "../../mod/health/forecast.ts";

const DAY_MS = 86_400_000;
const NOW_MS = 100 * DAY_MS;

/** `count` remaps spread evenly over the `days` before NOW_MS, plus a start event then. */
function evenRemaps(count: number, days: number): ForecastEvent[] {
  const events: ForecastEvent[] = [{ type: "started", timeMs: NOW_MS - days * DAY_MS }];
  for (let i = 0; i < count; i++) {
    events.push({
      type: "remap",
      timeMs: NOW_MS - days * DAY_MS + (i + 0.5) * days * DAY_MS / count,
    });
  }
  return events;
}

Deno.test("forecastSparePool(): 12 remaps a day for 7 days, 480 slots free → about 40 days", () => {
  const forecast = forecastSparePool({
    nowMs: NOW_MS,
    events: evenRemaps(84, 7),
    slotCount: 1000,
    slotsUsed: 520,
    pendingCount: 0,
  });
  assert.equal(forecast.state, "forecast");
  assert.equal(forecast.remapsPerDay, 12);
  // n = 84 ± 2√84 ≈ 18.3: rates 14.6 and 9.4 a day.
  assert.deepEqual(forecast.daysLeft, { low: 32, expected: 40, high: 52 });
  assert.equal(
    forecast.summary,
    "12 new remaps/day over 7 days; pool full in about 40 days (32–52)",
  );
  assert.deepEqual(forecast.reasons, [
    "84 new remaps in the last 7 days: 12/day",
    "480 of 1000 slots free on the working spares",
  ]);
});

Deno.test("forecastSparePool(): events older than the window are not counted", () => {
  const old = evenRemaps(500, 30).filter((event) => event.timeMs < NOW_MS - 7 * DAY_MS);
  const forecast = forecastSparePool({
    nowMs: NOW_MS,
    events: [...old, ...evenRemaps(14, 7)],
    historyStartMs: NOW_MS - 30 * DAY_MS,
    slotCount: 1000,
    slotsUsed: 0,
    pendingCount: 0,
  });
  assert.equal(forecast.remapsPerDay, 2);
  assert.equal(forecast.spanDays, 7);
  assert.equal(forecast.daysLeft?.expected, 500);
});

Deno.test("forecastSparePool(): a history younger than the window measures over its own age", () => {
  const forecast = forecastSparePool({
    nowMs: NOW_MS,
    events: evenRemaps(20, 2),
    slotCount: 400,
    slotsUsed: 100,
    pendingCount: 0,
  });
  assert.equal(forecast.spanDays, 2);
  assert.equal(forecast.remapsPerDay, 10);
  assert.equal(forecast.daysLeft?.expected, 30);
  assert.match(forecast.summary, /^10 new remaps\/day over 2 days; pool full in about 30 days/);
});

Deno.test("forecastSparePool(): pending blocks take their slots first", () => {
  const forecast = forecastSparePool({
    nowMs: NOW_MS,
    events: evenRemaps(70, 7),
    slotCount: 200,
    slotsUsed: 100,
    pendingCount: 30,
  });
  assert.equal(forecast.slotsFree, 70);
  assert.equal(forecast.daysLeft?.expected, 7);
  assert.ok(forecast.reasons.includes("30 pending blocks will each take a slot when rewritten"));
});

Deno.test("forecastSparePool(): no remap in the window is no trend, not a date", () => {
  const forecast = forecastSparePool({
    nowMs: NOW_MS,
    events: [{ type: "started", timeMs: NOW_MS - 9 * DAY_MS }, {
      type: "pending",
      timeMs: NOW_MS - DAY_MS,
    }],
    slotCount: 100,
    slotsUsed: 10,
    pendingCount: 0,
  });
  assert.equal(forecast.state, "no-trend");
  assert.equal(forecast.daysLeft, undefined);
  assert.equal(forecast.summary, "0 new remaps/day over 7 days; no trend, pool not filling");
  assert.ok(forecast.reasons.includes("no remap in the window: no trend to extend"));
});

Deno.test("forecastSparePool(): pending blocks beyond the free slots mean full now", () => {
  const forecast = forecastSparePool({
    nowMs: NOW_MS,
    events: evenRemaps(3, 7),
    slotCount: 100,
    slotsUsed: 98,
    pendingCount: 5,
  });
  assert.equal(forecast.state, "full");
  assert.equal(forecast.slotsFree, 0);
  assert.deepEqual(forecast.daysLeft, { low: 0, expected: 0, high: 0 });
});

Deno.test("forecastSparePool(): a few remaps leave the far end open", () => {
  const forecast = forecastSparePool({
    nowMs: NOW_MS,
    events: evenRemaps(2, 7),
    slotCount: 100,
    slotsUsed: 0,
    pendingCount: 0,
  });
  // 2 - 2√2 < 0: the slow rate may be zero.
  assert.equal(forecast.daysLeft?.high, null);
  assert.match(forecast.summary, /\(\d+–∞\)$/);
});

Deno.test("forecastSparePool(): an accelerating rate pulls the near end in", () => {
  const events = [
    ...evenRemaps(4, 7).filter((event) => event.timeMs < NOW_MS - 3.5 * DAY_MS),
    ...evenRemaps(40, 3.5).filter((event) => event.type === "remap"),
  ];
  const forecast = forecastSparePool({
    nowMs: NOW_MS,
    events,
    slotCount: 1000,
    slotsUsed: 0,
    pendingCount: 0,
  });
  const steady = forecastSparePool({
    nowMs: NOW_MS,
    events: evenRemaps(42, 7),
    slotCount: 1000,
    slotsUsed: 0,
    pendingCount: 0,
  });
  assert.ok(forecast.reasons.some((reason) => reason.startsWith("the rate is rising: 11/day")));
  assert.ok(
    forecast.daysLeft!.low < steady.daysLeft!.low,
    `${forecast.daysLeft!.low} < ${steady.daysLeft!.low}`,
  );
});

Deno.test("forecastSparePool(): rising SMART counters halve the near end and are named", () => {
  const input = {
    nowMs: NOW_MS,
    events: evenRemaps(84, 7),
    slotCount: 1000,
    slotsUsed: 520,
    pendingCount: 0,
  };
  const plain = forecastSparePool(input);
  const worse = forecastSparePool({
    ...input,
    smartRises: ["5 Reallocated_Sector_Ct rose 0→12 since 1970-04-03T00:00:00.000Z"],
  });
  assert.equal(worse.daysLeft?.expected, plain.daysLeft?.expected);
  assert.equal(worse.daysLeft?.low, Math.floor(480 / ((84 + 2 * Math.sqrt(84)) / 7 * 2)));
  assert.ok(
    worse.reasons.includes(
      "SMART: 5 Reallocated_Sector_Ct rose 0→12 since 1970-04-03T00:00:00.000Z",
    ),
  );
});

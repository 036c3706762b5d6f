/**
 * When the spare pool runs out, from how fast it has been filling, with a
 * range and the reasons a person can check.
 *
 * Method (a pure function; the service feeds it the event history):
 * - Demand is slots taken: the `remap` events in the window (default the last
 *   {@link FORECAST_WINDOW_DAYS} days, or since the history began when it is
 *   younger). Blocks pending now will each take a slot when rewritten, so they
 *   are subtracted from the free slots first.
 * - The rate is n remaps over the span. Remaps arrive in bursts, so the range
 *   treats n as a Poisson count: n ± 2√n gives the slow and fast rates, the
 *   ends of the range (a slow rate of zero leaves the far end open).
 * - A rate that is accelerating (the second half of the window at least twice
 *   the first, with 6 or more remaps) sets the near end from the second half.
 * - SMART counters that rose (reallocations, pending sectors, media errors)
 *   say the disk is getting worse: the near end assumes the fast rate doubles.
 * - No remap in the window: no trend to extend, no date, and the reasons say so.
 *
 * @example Twelve remaps a day for a week
 * ```ts
 * import assert from "node:assert/strict";
 * import { forecastSparePool } from "./forecast.ts";
 *
 * const dayMs = 86_400_000;
 * const events = Array.from({ length: 84 }, (_, i) => ({ type: "remap", timeMs: i * dayMs / 12 }));
 * const forecast = forecastSparePool({
 *   nowMs: 7 * dayMs, events, slotCount: 1000, slotsUsed: 520, pendingCount: 0,
 * });
 * assert.equal(forecast.daysLeft?.expected, 40);
 * assert.match(forecast.summary, /^12 new remaps\/day over 7 days; pool full in about 40 days/);
 * ```
 *
 * @module
 */

import { assert } from "../assert.ts";
import { FORECAST_WINDOW_DAYS } from "../constants.ts";

const DAY_MS = 86_400_000;
/** The shortest span a rate is computed over, so one early remap is not a huge rate. */
const SPAN_MS_MIN = 3_600_000;

/** One event of the history, as the forecast reads it. */
export interface ForecastEvent {
  type: string;
  timeMs: number;
}

/** What the forecast is computed from. */
export interface ForecastInput {
  nowMs: number;
  /** The history's events, any order; those outside the window are ignored. */
  events: readonly ForecastEvent[];
  /**
   * When the history began: a younger history measures its rate over its own
   * age, not the whole window. @default the oldest of `events`
   */
  historyStartMs?: number;
  /** Slots of the spares that take new remaps. */
  slotCount: number;
  slotsUsed: number;
  /** Blocks pending now: each takes a slot when it is rewritten. */
  pendingCount: number;
  /** SMART rises of the main disk, in words ("5 Reallocated_Sector_Ct rose 0→12 since …"). @default [] */
  smartRises?: readonly string[];
  /** @default FORECAST_WINDOW_DAYS */
  windowDays?: number;
}

/** Days until the pool is full: soonest, expected, latest (null: no end in sight). */
export interface DaysLeft {
  low: number;
  expected: number;
  high: number | null;
}

/** The forecast and why. */
export interface SparePoolForecast {
  /** `full`: no slot left for the blocks already pending; `no-trend`: nothing to extend. */
  state: "forecast" | "no-trend" | "full";
  slotsFree: number;
  /** Remaps per day over the span. */
  remapsPerDay: number;
  /** The days the rate was measured over. */
  spanDays: number;
  daysLeft?: DaysLeft;
  reasons: string[];
  /** One line: "12 new remaps/day over 7 days; pool full in about 40 days (29–59)". */
  summary: string;
}

/**
 * Forecasts when the spare pool is full.
 *
 * @param input The history, the pool and the SMART trend.
 * @returns The forecast with its range and reasons.
 */
export function forecastSparePool(input: ForecastInput): SparePoolForecast {
  assert(input.slotsUsed >= 0 && input.slotsUsed <= input.slotCount, "slots used in range");
  const windowMs = (input.windowDays ?? FORECAST_WINDOW_DAYS) * DAY_MS;
  const startMs = input.nowMs - windowMs;
  const inWindow = input.events.filter((event) =>
    event.timeMs >= startMs && event.timeMs <= input.nowMs
  );
  const oldestMs = input.historyStartMs ??
    input.events.reduce((oldest, event) => Math.min(oldest, event.timeMs), input.nowMs);
  const spanMs = Math.max(Math.min(windowMs, input.nowMs - oldestMs), SPAN_MS_MIN);
  const spanDays = spanMs / DAY_MS;
  const remapTimes = inWindow.filter((event) => event.type === "remap").map((e) => e.timeMs);
  const count = remapTimes.length;
  const rate = count / spanDays;
  const slotsFree = input.slotCount - input.slotsUsed - input.pendingCount;
  const reasons: string[] = [];
  const over = `${count} new remap${count === 1 ? "" : "s"} in the last ${days(spanDays)}`;
  reasons.push(`${over}: ${perDay(rate)}/day`);
  reasons.push(
    `${input.slotCount - input.slotsUsed} of ${input.slotCount} slots free on the working spares`,
  );
  if (input.pendingCount > 0) {
    reasons.push(
      `${input.pendingCount} pending block${input.pendingCount === 1 ? "" : "s"} will each ` +
        "take a slot when rewritten",
    );
  }
  const head = `${perDay(rate)} new remaps/day over ${days(spanDays)}`;
  const base = { slotsFree: Math.max(slotsFree, 0), remapsPerDay: rate, spanDays, reasons };
  if (slotsFree <= 0) {
    return {
      ...base,
      state: "full",
      daysLeft: { low: 0, expected: 0, high: 0 },
      summary: `${head}; pool full now`,
    };
  }
  if (count === 0) {
    reasons.push("no remap in the window: no trend to extend");
    return { ...base, state: "no-trend", summary: `${head}; no trend, pool not filling` };
  }
  let fastRate = (count + 2 * Math.sqrt(count)) / spanDays;
  const slowRate = Math.max(count - 2 * Math.sqrt(count), 0) / spanDays;
  const secondHalfRate = acceleratingRate(remapTimes, { nowMs: input.nowMs, spanMs });
  if (secondHalfRate !== undefined) {
    reasons.push(`the rate is rising: ${perDay(secondHalfRate)}/day in the second half`);
    fastRate = Math.max(fastRate, secondHalfRate);
  }
  for (const rise of input.smartRises ?? []) reasons.push(`SMART: ${rise}`);
  if ((input.smartRises ?? []).length > 0) {
    reasons.push("the disk's SMART counters are rising: the near end assumes the rate doubles");
    fastRate *= 2;
  }
  const daysLeft: DaysLeft = {
    low: Math.floor(slotsFree / fastRate),
    expected: Math.round(slotsFree / rate),
    high: slowRate > 0 ? Math.ceil(slotsFree / slowRate) : null,
  };
  const range = `${daysLeft.low}–${daysLeft.high ?? "∞"}`;
  return {
    ...base,
    state: "forecast",
    daysLeft,
    summary: `${head}; pool full in about ${daysLeft.expected} days (${range})`,
  };
}

/** The second half's rate, when it is at least twice the first's over 6 or more remaps. */
function acceleratingRate(
  times: readonly number[],
  window: { nowMs: number; spanMs: number },
): number | undefined {
  if (times.length < 6) return undefined;
  const middleMs = window.nowMs - window.spanMs / 2;
  const second = times.filter((timeMs) => timeMs >= middleMs).length;
  const first = times.length - second;
  if (second < 2 * Math.max(first, 1)) return undefined;
  return second / (window.spanMs / 2 / DAY_MS);
}

function perDay(rate: number): string {
  return rate >= 10 ? String(Math.round(rate)) : String(Math.round(rate * 10) / 10);
}

function days(spanDays: number): string {
  if (spanDays < 1) return `${Math.round(spanDays * 24)} hours`;
  const rounded = Math.round(spanDays * 10) / 10;
  return `${rounded} day${rounded === 1 ? "" : "s"}`;
}

/**
 * How much a disk's SMART data says it is at risk, with every input named.
 *
 * The rules, strongest first (the level is the highest rule that matches):
 *
 * | input                                                      | level      |
 * | ---------------------------------------------------------- | ---------- |
 * | the disk's own verdict is FAILING, or an attribute failing now | critical |
 * | 197 pending or 198 offline-uncorrectable sectors > 0       | high       |
 * | NVMe critical warning set, or spare below its threshold    | high       |
 * | the newest self-test failed                                | high       |
 * | 5 reallocated or 187 reported-uncorrectable > 0            | elevated   |
 * | NVMe media errors > 0, or percentage used ≥ 90             | elevated   |
 * | 188 command timeouts or 199 CRC errors > 0                 | low        |
 * | temperature ≥ 60 °C                                        | low        |
 *
 * Then the trend: a media counter (5, 187, 197, 198, NVMe media errors) that
 * rose since the previous reading of the same disk (same serial) raises the
 * level one step, to at least `elevated`: Pinheiro et al. (FAST '07) found
 * drives far likelier to fail soon after their first new reallocation or scan
 * error. A rise of 188 or 199 (cable, link) raises it to at least `low`.
 *
 * @example A reallocation since the last reading
 * ```ts
 * import assert from "node:assert/strict";
 * import { assessSmartRisk } from "./smart_risk.ts";
 * import type { SmartOk } from "./smart_report.ts";
 *
 * const base: SmartOk = {
 *   state: "ok", device: "/dev/sda", protocol: "ata", kind: "hdd", serial: "S1", passed: true,
 *   counters: { reallocatedSectors: 0 }, attributes: [], failingAttributes: [], selfTests: [],
 *   timeMs: 0,
 * };
 * const risk = assessSmartRisk({ ...base, counters: { reallocatedSectors: 12 }, timeMs: 1 }, base);
 * assert.equal(risk.level, "high");
 * assert.match(risk.reasons.join("\n"), /5 Reallocated_Sector_Ct rose 0→12 since/);
 * ```
 *
 * @module
 */

import {
  COUNTER_NAMES,
  type SmartCounters,
  type SmartOk,
  type SmartReading,
} from "./smart_report.ts";

/** Risk levels, lowest first. */
export const SMART_RISK_LEVELS = ["none", "low", "elevated", "high", "critical"] as const;

/** How much SMART says the disk is at risk. */
export type SmartRiskLevel = typeof SMART_RISK_LEVELS[number];

/** A counter that rose between two readings of the same disk. */
export interface SmartRise {
  counter: keyof SmartCounters;
  name: string;
  from: number;
  to: number;
  sinceMs: number;
}

/** The level and every input that set it. */
export interface SmartRisk {
  level: SmartRiskLevel;
  /** One line per rule that matched, e.g. "197 Current_Pending_Sector is 1". */
  reasons: string[];
  /** Counters that rose since the previous reading. */
  rising: SmartRise[];
}

/** The temperature from which a disk counts as hot. */
export const SMART_HOT_C = 60;
/** The NVMe endurance used from which wear counts. */
export const SMART_WORN_PERCENT = 90;

/** Counters whose rise means the media is going. */
const MEDIA_COUNTERS: readonly (keyof SmartCounters)[] = [
  "reallocatedSectors",
  "reportedUncorrectable",
  "pendingSectors",
  "offlineUncorrectable",
  "mediaErrors",
];
/** Counters whose rise points at the link, not the media. */
const LINK_COUNTERS: readonly (keyof SmartCounters)[] = ["commandTimeouts", "crcErrors"];

/**
 * Judges one reading, against the previous reading of the same disk when given.
 *
 * @param current The new reading.
 * @param previous The last reading before it (ignored unless it is of the same disk).
 * @returns The level and its reasons; `none` with a reason for a device without SMART.
 */
export function assessSmartRisk(current: SmartReading, previous?: SmartReading): SmartRisk {
  if (current.state === "no-smart") {
    return { level: "none", reasons: [`no SMART: ${current.reason}`], rising: [] };
  }
  const found: { level: SmartRiskLevel; reason: string }[] = [];
  const rule = (level: SmartRiskLevel, reason: string) => found.push({ level, reason });
  const counters = current.counters;
  const name = (key: keyof SmartCounters) => COUNTER_NAMES[key];
  if (!current.passed) rule("critical", "the disk's own SMART verdict is FAILING");
  for (const attribute of current.failingAttributes) {
    rule("critical", `${attribute} is at or below its threshold now`);
  }
  for (const key of ["pendingSectors", "offlineUncorrectable"] as const) {
    if ((counters[key] ?? 0) > 0) rule("high", `${name(key)} is ${counters[key]}`);
  }
  if ((counters.criticalWarning ?? 0) !== 0) {
    rule("high", `${name("criticalWarning")} is ${counters.criticalWarning}`);
  }
  const spare = counters.availableSparePercent;
  const threshold = counters.availableSpareThresholdPercent;
  if (spare !== undefined && threshold !== undefined && threshold > 0 && spare < threshold) {
    rule("high", `NVMe available spare ${spare}% is below its threshold ${threshold}%`);
  }
  const newestTest = current.selfTests[0];
  if (newestTest !== undefined && !newestTest.passed) {
    rule("high", `the newest self-test (${newestTest.type}) failed: ${newestTest.status}`);
  }
  for (const key of ["reallocatedSectors", "reportedUncorrectable", "mediaErrors"] as const) {
    if ((counters[key] ?? 0) > 0) rule("elevated", `${name(key)} is ${counters[key]}`);
  }
  if ((counters.percentageUsed ?? 0) >= SMART_WORN_PERCENT) {
    rule("elevated", `${name("percentageUsed")} is ${counters.percentageUsed}%`);
  }
  for (const key of LINK_COUNTERS) {
    if ((counters[key] ?? 0) > 0) rule("low", `${name(key)} is ${counters[key]}`);
  }
  if ((current.temperatureC ?? 0) >= SMART_HOT_C) {
    rule("low", `temperature ${current.temperatureC} °C is at or above ${SMART_HOT_C} °C`);
  }
  let level = found.reduce<SmartRiskLevel>((top, match) => higher(top, match.level), "none");
  const rising = risesOf(current, previous);
  const reasons = found.map((match) => match.reason);
  for (const rise of rising) {
    reasons.push(
      `${rise.name} rose ${rise.from}→${rise.to} since ${new Date(rise.sinceMs).toISOString()}`,
    );
  }
  if (rising.some((rise) => MEDIA_COUNTERS.includes(rise.counter))) {
    level = higher(stepUp(level), "elevated");
  } else if (rising.length > 0) {
    level = higher(level, "low");
  }
  return { level, reasons, rising };
}

/** Whether `b` is a higher level than `a`. */
export function isHigherRisk(a: SmartRiskLevel, b: SmartRiskLevel): boolean {
  return SMART_RISK_LEVELS.indexOf(b) > SMART_RISK_LEVELS.indexOf(a);
}

/** Counters that grew since the previous reading of the same disk. */
function risesOf(current: SmartOk, previous: SmartReading | undefined): SmartRise[] {
  if (previous === undefined || previous.state !== "ok") return [];
  // Compare a disk only with itself: a swapped disk starts a new series.
  if (current.serial === undefined || current.serial !== previous.serial) return [];
  const rises: SmartRise[] = [];
  for (const counter of [...MEDIA_COUNTERS, ...LINK_COUNTERS]) {
    const from = previous.counters[counter];
    const to = current.counters[counter];
    if (from !== undefined && to !== undefined && to > from) {
      rises.push({ counter, name: COUNTER_NAMES[counter], from, to, sinceMs: previous.timeMs });
    }
  }
  return rises;
}

function higher(a: SmartRiskLevel, b: SmartRiskLevel): SmartRiskLevel {
  return isHigherRisk(a, b) ? b : a;
}

function stepUp(level: SmartRiskLevel): SmartRiskLevel {
  const index = Math.min(SMART_RISK_LEVELS.indexOf(level) + 1, SMART_RISK_LEVELS.length - 1);
  return SMART_RISK_LEVELS[index]!;
}

/**
 * Keeps a failing disk from sending thousands of alerts: per target, at most
 * `ratePerMinute` alerts in any 60 s window, and the same alert (kind,
 * setup, device) again only after `repeatIntervalMs`. What is held back is
 * counted, and the next alert of that key that goes out says how many were.
 *
 * Time comes from `now()`, so tests step it.
 *
 * @example The repeat interval holds back the second remap of a disk
 * ```ts
 * import assert from "node:assert/strict";
 * import { AlertLimiter } from "./alert_limiter.ts";
 *
 * let nowMs = 0;
 * const limiter = new AlertLimiter({ ratePerMinute: 10, repeatIntervalMs: 60_000, now: () => nowMs });
 * const key = { kind: "remap", setup: "big", device: "/dev/sdb" } as const;
 * assert.deepEqual(limiter.admit(key), { send: true, suppressedCount: 0 });
 * assert.deepEqual(limiter.admit(key), { send: false });
 * nowMs = 60_000;
 * assert.deepEqual(limiter.admit(key), { send: true, suppressedCount: 1 });
 * ```
 *
 * @module
 */

import { assert } from "../assert.ts";
import type { AlertKind } from "./alert.ts";

/** Options of {@link AlertLimiter}. */
export interface AlertLimiterOptions {
  ratePerMinute: number;
  repeatIntervalMs: number;
  /** @default Date.now */
  now?: () => number;
}

/** What identifies "the same alert". */
export interface AlertKey {
  kind: AlertKind;
  setup: string;
  device: string;
}

/** The limiter's answer: send (saying how many like it were held back) or hold back. */
export type Admission = { send: true; suppressedCount: number } | { send: false };

const WINDOW_MS = 60_000;

/** The rate limit and the repeat interval of one target. */
export class AlertLimiter {
  readonly #ratePerMinute: number;
  readonly #repeatIntervalMs: number;
  readonly #now: () => number;
  /**
   * When the last `ratePerMinute` alerts went, as a ring: `#sentMs[#oldest]`
   * is the oldest once the ring is full, so the window check is O(1) per
   * alert whatever the rate.
   */
  readonly #sentMs: number[];
  #oldest = 0;
  /**
   * Per key: when it was last sent, and how many were held back since.
   * Bounded by kinds × devices of the setups that share the target.
   */
  readonly #byKey = new Map<string, { lastSentMs: number; suppressedCount: number }>();
  /** Every alert held back, for the metrics. */
  suppressedTotal = 0;

  constructor(options: AlertLimiterOptions) {
    assert(options.ratePerMinute >= 1, "a target sends at least one alert a minute");
    this.#ratePerMinute = options.ratePerMinute;
    this.#sentMs = [];
    this.#repeatIntervalMs = options.repeatIntervalMs;
    this.#now = options.now ?? Date.now;
  }

  /** Decides about one alert, and records it as sent when it may go. */
  admit(key: AlertKey): Admission {
    const nowMs = this.#now();
    const full = this.#sentMs.length === this.#ratePerMinute;
    const overRate = full && this.#sentMs[this.#oldest]! > nowMs - WINDOW_MS;
    const id = `${key.kind}\u0000${key.setup}\u0000${key.device}`;
    const last = this.#byKey.get(id);
    const repeated = last !== undefined && nowMs - last.lastSentMs < this.#repeatIntervalMs;
    if (repeated || overRate) {
      this.suppressedTotal++;
      if (last !== undefined) last.suppressedCount++;
      else this.#byKey.set(id, { lastSentMs: -Infinity, suppressedCount: 1 });
      return { send: false };
    }
    if (full) {
      this.#sentMs[this.#oldest] = nowMs;
      this.#oldest = (this.#oldest + 1) % this.#ratePerMinute;
    } else this.#sentMs.push(nowMs);
    this.#byKey.set(id, { lastSentMs: nowMs, suppressedCount: 0 });
    return { send: true, suppressedCount: last?.suppressedCount ?? 0 };
  }
}

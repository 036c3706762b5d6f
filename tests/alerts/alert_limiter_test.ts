/**
 * Goal: a failing disk does not send thousands of alerts. Method: an
 * `AlertLimiter` with a stepped clock, rows of (time, alert) → sent or held
 * back, and the held-back count carried by the next alert of that key.
 */

import assert from "node:assert/strict";
import { type AlertKey, AlertLimiter } from "../../mod/alerts/alert_limiter.ts";

const REMAP_SDB: AlertKey = { kind: "remap", setup: "big", device: "/dev/sdb" };
const REMAP_SDC: AlertKey = { kind: "remap", setup: "big", device: "/dev/sdc" };
const DEGRADED: AlertKey = { kind: "degraded", setup: "big", device: "/dev/sdb" };

Deno.test("AlertLimiter holds back a repeat within the interval and counts it in the next one", () => {
  let nowMs = 0;
  const limiter = new AlertLimiter({
    ratePerMinute: 100,
    repeatIntervalMs: 10_000,
    now: () => nowMs,
  });
  const rows: [number, AlertKey, ReturnType<AlertLimiter["admit"]>][] = [
    [0, REMAP_SDB, { send: true, suppressedCount: 0 }],
    [1_000, REMAP_SDB, { send: false }],
    [2_000, REMAP_SDC, { send: true, suppressedCount: 0 }],
    [3_000, DEGRADED, { send: true, suppressedCount: 0 }],
    [9_999, REMAP_SDB, { send: false }],
    [10_000, REMAP_SDB, { send: true, suppressedCount: 2 }],
    [10_001, REMAP_SDB, { send: false }],
  ];
  for (const [timeMs, key, expected] of rows) {
    nowMs = timeMs;
    assert.deepEqual(limiter.admit(key), expected, `${key.kind} ${key.device} at ${timeMs} ms`);
  }
  assert.equal(limiter.suppressedTotal, 3);
});

Deno.test("AlertLimiter sends at most ratePerMinute alerts in any minute", () => {
  let nowMs = 0;
  const limiter = new AlertLimiter({ ratePerMinute: 3, repeatIntervalMs: 0, now: () => nowMs });
  const sent = () => {
    const devices = Array.from({ length: 10 }, (_, i) => `/dev/sd${i}`);
    return devices.filter((device) => limiter.admit({ kind: "remap", setup: "s", device }).send)
      .length;
  };
  assert.equal(sent(), 3);
  nowMs = 59_999;
  assert.equal(sent(), 0);
  nowMs = 60_000;
  assert.equal(sent(), 3);
  assert.equal(limiter.suppressedTotal, 7 + 10 + 7);
});

/**
 * SmartHistory: readings survive a reopen of the database, are keyed by the
 * disk's serial (never its path), and the table stays bounded.
 */

import assert from "node:assert/strict";
import { diskKeyOf, SmartHistory } from "../../mod/health/smart_history.ts";
import type { SmartOk } from "../../mod/health/smart_report.ts";

function reading(serial: string | undefined, reallocated: number, timeMs: number): SmartOk {
  return {
    state: "ok",
    device: "/dev/sda",
    protocol: "ata",
    kind: "hdd",
    serial,
    passed: true,
    counters: { reallocatedSectors: reallocated },
    attributes: [],
    failingAttributes: [],
    selfTests: [],
    timeMs,
  };
}

Deno.test("SmartHistory keeps readings per disk across a reopen", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/events.sqlite`;
    const first = SmartHistory.open(path);
    first.record(reading("A", 0, 1));
    first.record(reading("B", 5, 2));
    first.record(reading("A", 3, 3));
    first.close();
    const again = SmartHistory.open(path);
    assert.equal(again.latest("serial:A")?.counters.reallocatedSectors, 3);
    assert.equal(again.latest("serial:B")?.counters.reallocatedSectors, 5);
    assert.equal(again.latest("serial:C"), undefined);
    assert.deepEqual(again.since("serial:A", 0, 10).map((r) => r.timeMs), [1, 3]);
    assert.deepEqual(again.since("serial:A", 2, 10).map((r) => r.timeMs), [3]);
    again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SmartHistory does not keep a reading without a serial", () => {
  const history = SmartHistory.open(":memory:");
  const anonymous = reading(undefined, 1, 1);
  assert.equal(diskKeyOf(anonymous), undefined);
  history.record(anonymous);
  assert.equal(history.latest("serial:undefined"), undefined);
  history.close();
});

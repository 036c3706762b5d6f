/**
 * The fault model's helpers: the seeded PRNG and the rate checks.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkFaultRates, seededRandom, zeroFaultCounters } from "../../mod/fault/fault_model.ts";

Deno.test("seededRandom() gives the same sequence for a seed, in [0, 1)", () => {
  const a = seededRandom(7);
  const b = seededRandom(7);
  const c = seededRandom(8);
  const first = Array.from({ length: 1000 }, () => a());
  assert.deepEqual(Array.from({ length: 1000 }, () => b()), first);
  assert.notDeepEqual(Array.from({ length: 1000 }, () => c()), first);
  assert.ok(first.every((value) => value >= 0 && value < 1));
  const mean = first.reduce((sum, value) => sum + value, 0) / first.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean} is near 0.5`);
});

Deno.test("checkFaultRates() fills defaults and rejects values outside [0, 1]", () => {
  assert.deepEqual(checkFaultRates({}), { readEio: 0, writeEio: 0, flushEio: 0 });
  assert.deepEqual(checkFaultRates({ writeEio: 1 }), { readEio: 0, writeEio: 1, flushEio: 0 });
  for (const rate of [-0.1, 1.1, Number.NaN]) {
    assert.throws(() => checkFaultRates({ readEio: rate }), RangeError, String(rate));
  }
});

Deno.test("zeroFaultCounters() starts every counter at zero", () => {
  assert.ok(Object.values(zeroFaultCounters()).every((count) => count === 0));
});

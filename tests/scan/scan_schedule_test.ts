/**
 * The scanner's schedule: on by default, the first pass one interval after
 * the setup's creation, each next one an interval after the last complete
 * pass ended, a pass in progress resumed at once after a restart, and off
 * with `enabled: false` (`--no-scan`) while `scan start` still works.
 *
 * Method: a setup over memory devices (tests/remap/harness.ts) and a
 * scanner whose wall clock the test sets (tests/sim/manual_clock.ts); the
 * waiting scanner reads that clock again every few milliseconds, so a day
 * passes in one step. The passes themselves read a small disk in real time.
 */

import assert from "node:assert/strict";
import { makeHarness } from "../remap/harness.ts";
import { manualClock } from "../sim/manual_clock.ts";
import {
  parseScanRecord,
  resolveScanSettings,
  SCAN_SETTINGS_DEFAULT,
  Scanner,
  type ScannerOptions,
  type ScanStatus,
} from "../../mod/scan/mod.ts";
import type { RemapDevice } from "../../mod/remap/remap_device.ts";

const MIB = 1024 * 1024;
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** The setup's creation on the test's clock. */
const CREATED_MS = 1_800_000_000_000;

function scannerOf(
  engine: RemapDevice,
  clock: ReturnType<typeof manualClock>,
  options: Partial<ScannerOptions> = {},
): Scanner {
  return new Scanner(engine, {
    settings: { ...SCAN_SETTINGS_DEFAULT, rateMaxBytesPerS: 1024 * MIB, regionBytes: MIB },
    createdMs: CREATED_MS,
    now: clock.now,
    scheduleCheckMs: 5,
    ...options,
  });
}

/** Waits (real time) until the scanner's status satisfies `done`. */
async function until(scanner: Scanner, done: (status: ScanStatus) => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!done(scanner.status())) {
    assert.ok(Date.now() < deadline, `waited in vain: ${JSON.stringify(scanner.status())}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Lets a waiting scanner look at its clock many times; asserts it read nothing. */
async function assertNoPass(scanner: Scanner, why: string): Promise<void> {
  const before = scanner.status().bytesScanned;
  await new Promise((resolve) => setTimeout(resolve, 150));
  const status = scanner.status();
  assert.equal(status.state, "waiting", why);
  assert.equal(status.bytesScanned, before, why);
}

Deno.test("the default schedule is on; a new setup's first pass is due one interval after its creation, not at start", async () => {
  assert.equal(SCAN_SETTINGS_DEFAULT.enabled, true);
  assert.equal(SCAN_SETTINGS_DEFAULT.intervalMs, DAY_MS);
  const { engine } = await makeHarness({ mainBytes: MIB });
  // `serve` starts an hour after `create`.
  const clock = manualClock(CREATED_MS + HOUR_MS);
  const scanner = scannerOf(engine, clock);
  try {
    await scanner.start();
    await assertNoPass(scanner, "starting serve starts no pass");
    assert.equal(scanner.status().nextPassDueMs, CREATED_MS + DAY_MS);
    clock.set(CREATED_MS + DAY_MS - 1);
    await assertNoPass(scanner, "a millisecond early");
    clock.set(CREATED_MS + DAY_MS);
    await until(scanner, (status) => status.passesCompleted === 1);
    const status = scanner.status();
    assert.equal(status.lastPassStartedMs, CREATED_MS + DAY_MS);
    assert.equal(status.bytesScanned, MIB);
  } finally {
    await scanner.stop();
    await engine.close();
  }
});

Deno.test("the next pass is due one interval after the last pass completed, not after it started", async () => {
  const { engine } = await makeHarness({ mainBytes: MIB });
  const clock = manualClock(CREATED_MS + DAY_MS);
  // 2 MiB/s: the pass takes about half a second, long enough to move the clock meanwhile.
  const scanner = scannerOf(engine, clock, {
    settings: { ...SCAN_SETTINGS_DEFAULT, rateMaxBytesPerS: 2 * MIB, regionBytes: MIB },
  });
  try {
    await scanner.start();
    // Due at start: the pass began, and its rate cap makes it last past this turn.
    assert.equal(scanner.status().state, "scanning");
    // The pass runs for three hours of the clock.
    clock.advance(3 * HOUR_MS);
    await until(scanner, (status) => status.passesCompleted === 1);
    const first = scanner.status();
    assert.equal(first.lastPassStartedMs, CREATED_MS + DAY_MS);
    assert.equal(first.lastPassCompletedMs, CREATED_MS + DAY_MS + 3 * HOUR_MS);
    const dueMs = first.lastPassCompletedMs! + DAY_MS;
    assert.equal(first.nextPassDueMs, dueMs);
    // An interval after the start has passed, not one after the end.
    clock.set(dueMs - 1);
    await assertNoPass(scanner, "due an interval after the end of the last pass");
    clock.set(dueMs);
    await until(scanner, (status) => status.passesCompleted === 2);
    assert.equal(scanner.status().lastPassStartedMs, dueMs);
  } finally {
    await scanner.stop();
    await engine.close();
  }
});

Deno.test("a pass in progress goes on at once after a restart, from its recorded position, whatever the schedule says", async () => {
  const harness = await makeHarness({ mainBytes: 8 * MIB });
  const clock = manualClock(CREATED_MS + HOUR_MS);
  const scanner = scannerOf(harness.engine, clock, {
    settings: { ...SCAN_SETTINGS_DEFAULT, rateMaxBytesPerS: 4 * MIB, regionBytes: MIB },
    persistIntervalMs: 50,
  });
  await scanner.start();
  // `scan start` an hour after create; the schedule's first pass is not due for a day.
  scanner.startPass();
  await until(scanner, (status) => status.positionBytes >= 2 * MIB);
  const passStartedMs = scanner.status().passStartedMs;
  assert.equal(passStartedMs, CREATED_MS + HOUR_MS);
  await scanner.stop();
  const stoppedAt = scanner.status().positionBytes;
  const engine = await harness.reopen();
  try {
    const recorded = parseScanRecord(engine.spares[0]!.store!.payload.scan);
    assert.ok(recorded);
    assert.equal(recorded.positionBytes, stoppedAt);
    // Restarted an hour later: the schedule alone would wait until a day after create.
    clock.advance(HOUR_MS);
    const again = scannerOf(engine, clock, { recorded });
    await again.start();
    assert.equal(again.status().state, "scanning");
    await until(again, (status) => status.passesCompleted === 1);
    const status = again.status();
    assert.equal(status.lastPassStartedMs, passStartedMs, "the same pass went on");
    assert.equal(status.bytesScanned, 8 * MIB - stoppedAt, "from the recorded position");
    assert.equal(status.nextPassDueMs, CREATED_MS + 2 * HOUR_MS + DAY_MS);
    await again.stop();
  } finally {
    await engine.close();
  }
});

Deno.test("with the schedule off no pass starts on its own, and scan start still starts one at once", async () => {
  const { engine } = await makeHarness({ mainBytes: MIB });
  const clock = manualClock(CREATED_MS + 30 * DAY_MS);
  const scanner = scannerOf(engine, clock, {
    settings: resolveScanSettings({ enabled: false }, {
      ...SCAN_SETTINGS_DEFAULT,
      rateMaxBytesPerS: 1024 * MIB,
      regionBytes: MIB,
    }),
  });
  try {
    await scanner.start();
    await assertNoPass(scanner, "thirty days after creation, the schedule off");
    assert.equal(scanner.status().nextPassDueMs, undefined);
    scanner.startPass();
    await until(scanner, (status) => status.passesCompleted === 1);
    clock.advance(30 * DAY_MS);
    await assertNoPass(scanner, "thirty days after that pass, the schedule off");
    assert.equal(scanner.status().nextPassDueMs, undefined);
    assert.equal(scanner.record().settings.enabled, false, "the choice is recorded");
  } finally {
    await scanner.stop();
    await engine.close();
  }
});

Deno.test("parseScanRecord(): an old record's enabled false was the old default and is dropped; a new record's is kept", () => {
  const old = {
    version: 1,
    settings: { enabled: false, intervalMs: 12 * HOUR_MS, rateMaxBytesPerS: MIB, regionBytes: MIB },
    positionBytes: 0,
    passesCompleted: 2,
    regions: [],
  };
  const upgraded = parseScanRecord(old)!;
  assert.equal(upgraded.settings.enabled, undefined);
  const settings = resolveScanSettings({}, upgraded.settings);
  assert.equal(settings.enabled, true, "the schedule turns on");
  assert.equal(settings.intervalMs, 12 * HOUR_MS, "the other recorded settings stay");
  assert.equal(resolveScanSettings({ enabled: false }, upgraded.settings).enabled, false);
  const chosen = parseScanRecord({ ...old, scheduleOnByDefault: true })!;
  assert.equal(resolveScanSettings({}, chosen.settings).enabled, false, "a recorded --no-scan");
});

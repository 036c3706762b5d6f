/**
 * MetadataScrubber over a real engine (memory disks behind the fault layer,
 * tests/remap/harness.ts): corrupt copies and log sectors are repaired while
 * the engine remaps, with nothing acknowledged lost; a spare whose metadata
 * cannot be read back is retried with a doubling backoff and then reported
 * degraded, while the others keep their schedule. The clock is injected and
 * scrubDue() called directly, so every step is deterministic.
 */

import assert from "node:assert/strict";
import { COPY_SECTORS, SECTOR_BYTES } from "../../mod/constants.ts";
import type { HealthEvent } from "../../mod/events/setup_event.ts";
import { SpareStore } from "../../mod/metadata/spare_store.ts";
import { MetadataScrubber } from "../../mod/service/metadata_scrubber.ts";
import { makeHarness } from "../remap/harness.ts";
import { manualClock } from "../sim/manual_clock.ts";

const MINUTE_MS = 60_000;

Deno.test("MetadataScrubber repairs copies and a log sector damaged while remaps commit", async () => {
  const harness = await makeHarness({ spareCount: 2 });
  const { engine, faulty, spares, blockBytes } = harness;
  const events: HealthEvent[] = [];
  const scrubber = new MetadataScrubber(engine, { publish: (event) => events.push(event) });
  // Remaps on spare 0: blocks whose main-disk writes fail.
  faulty.addBadBlocks([8 * 8, 9 * 8, 10 * 8], "write");
  const write = (blockIndex: number, fill: number) =>
    engine.write(new Uint8Array(blockBytes).fill(fill), blockIndex * blockBytes, { fua: true });
  await write(8, 1);
  // Damage behind the engine's back: copy 1 and copy 4 of spare 0, and its first log sector.
  const layout = engine.spares[0]!.layout;
  for (const offsetBytes of [COPY_SECTORS[1]! * SECTOR_BYTES, COPY_SECTORS[4]! * SECTOR_BYTES]) {
    await spares[0]!.write(new Uint8Array(SECTOR_BYTES).fill(0xee), offsetBytes);
  }
  await spares[0]!.write(new Uint8Array(SECTOR_BYTES).fill(0xee), layout.logOffsetBytes);
  // The scrub and two more remaps race; the engine's metadata queue orders them.
  await Promise.all([scrubber.scrubDue(), write(9, 2), write(10, 3)]);
  assert.deepEqual(events.map((event) => event.type), ["metadata-repaired"]);
  const repaired = events[0] as Extract<HealthEvent, { type: "metadata-repaired" }>;
  assert.equal(repaired.spareIndex, 0);
  assert.ok(repaired.repairs.some((line) => line.startsWith("copy 1: ")));
  assert.ok(repaired.repairs.some((line) => line.startsWith("copy 4: ")));
  assert.ok(repaired.repairs.some((line) => line.startsWith("remap table: the log replays")));
  const status = scrubber.status();
  assert.deepEqual(status.spares.map((spare) => spare.state), ["repaired", "ok"]);
  assert.equal(status.passes, 1);

  // Every remap, the one logged in the damaged sector included, opens from the disk alone.
  const { store, report } = await SpareStore.open(spares[0]!, { repair: false });
  assert.equal(report.validCopies, 5);
  assert.deepEqual([...store.slotBlocks].sort((a, b) => a - b), [8, 9, 10]);
  const reopened = await harness.reopen();
  for (const [blockIndex, fill] of [[8, 1], [9, 2], [10, 3]] as const) {
    const data = new Uint8Array(blockBytes);
    await reopened.read(data, blockIndex * blockBytes);
    assert.ok(data.every((byte) => byte === fill), `block ${blockIndex} reads what was written`);
  }
});

Deno.test("MetadataScrubber retries a failing spare with a doubling backoff, then reports it degraded", async () => {
  const harness = await makeHarness({ spareCount: 2 });
  const clock = manualClock();
  const events: HealthEvent[] = [];
  const calls: number[] = [];
  const target = {
    get spares() {
      return harness.engine.spares;
    },
    scrubMetadata(spareIndex: number) {
      calls.push(spareIndex);
      return harness.engine.scrubMetadata(spareIndex);
    },
  };
  const scrubber = new MetadataScrubber(target, {
    intervalMs: 60 * MINUTE_MS,
    retryBaseMs: MINUTE_MS,
    retriesMax: 3,
    publish: (event) => events.push(event),
    now: clock.now,
  });
  // Spare 1's copy 2 cannot be read: every scrub rewrites it and fails to read it back.
  harness.faultySpares[1]!.addBadBlocks([COPY_SECTORS[2]!], "read");

  await scrubber.scrubDue();
  assert.deepEqual(calls, [0, 1]);
  const retries: number[] = [];
  for (const waitMs of [MINUTE_MS, 2 * MINUTE_MS, 4 * MINUTE_MS]) {
    // Just before the retry is due: nothing is scrubbed.
    clock.advance(waitMs - 1);
    calls.length = 0;
    await scrubber.scrubDue();
    assert.deepEqual(calls, []);
    clock.advance(1);
    await scrubber.scrubDue();
    assert.deepEqual(calls, [1]);
    retries.push(waitMs);
  }
  const failed = events.filter((event) => event.type === "metadata-scrub-failed");
  assert.deepEqual(failed.map((event) => [event.attempt, event.retryInMs]), [
    [1, MINUTE_MS],
    [2, 2 * MINUTE_MS],
    [3, 4 * MINUTE_MS],
  ]);
  const degraded = events.filter((event) => event.type === "metadata-degraded");
  assert.equal(degraded.length, 1);
  assert.equal(degraded[0]!.spareIndex, 1);
  assert.equal(degraded[0]!.attempts, 4);
  assert.match(degraded[0]!.reason, /copy 2 after rewrite: unreadable/);

  // Given up: never scrubbed again; spare 0 keeps its hourly schedule; the engine still serves spare 1.
  clock.advance(60 * MINUTE_MS);
  calls.length = 0;
  await scrubber.scrubDue();
  assert.deepEqual(calls, [0]);
  const status = scrubber.status();
  assert.deepEqual(status.spares.map((spare) => [spare.state, spare.failures]), [
    ["ok", 0],
    ["degraded", 4],
  ]);
  assert.equal(status.spares[1]!.nextScrubMs, undefined);
  assert.equal(harness.engine.spares[1]!.state, "active");
});

Deno.test("MetadataScrubber skips a spare the engine failed", async () => {
  const harness = await makeHarness({ spareCount: 2 });
  const events: HealthEvent[] = [];
  // Spare 0's writes fail: the first remap fails it, and the remap goes to spare 1.
  harness.faultySpares[0]!.setRates({ writeEio: 1 });
  harness.faulty.addBadBlocks([0], "write");
  await harness.engine.write(new Uint8Array(harness.blockBytes), 0, { fua: true });
  assert.equal(harness.engine.spares[0]!.state, "failed");
  const scrubber = new MetadataScrubber(harness.engine, { publish: (event) => events.push(event) });
  await scrubber.scrubDue();
  assert.deepEqual(scrubber.status().spares.map((spare) => spare.state), ["failed-spare", "ok"]);
  assert.deepEqual(events, []);
});

Deno.test("MetadataScrubber.start() scrubs on open and again when the interval has passed", async () => {
  const harness = await makeHarness();
  const events: HealthEvent[] = [];
  await harness.spares[0]!.write(new Uint8Array(SECTOR_BYTES), COPY_SECTORS[3]! * SECTOR_BYTES);
  const scrubber = new MetadataScrubber(harness.engine, {
    intervalMs: 1_000,
    publish: (event) => events.push(event),
  });
  await scrubber.start();
  try {
    assert.deepEqual(events.map((event) => event.type), ["metadata-repaired"], "the scrub on open");
    // Damaged while serving: the periodic scrub finds it without being asked.
    await harness.spares[0]!.write(new Uint8Array(SECTOR_BYTES), COPY_SECTORS[0]! * SECTOR_BYTES);
    const deadline = Date.now() + 10_000;
    while (events.length < 2 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(events.length, 2, "the periodic scrub repaired the copy");
    assert.match(
      (events[1] as Extract<HealthEvent, { type: "metadata-repaired" }>).repairs[0]!,
      /^copy 0: /,
    );
    assert.ok(scrubber.status().passes >= 2);
  } finally {
    await scrubber.stop();
  }
  const { report } = await SpareStore.open(harness.spares[0]!, { repair: false });
  assert.equal(report.validCopies, 5);
});

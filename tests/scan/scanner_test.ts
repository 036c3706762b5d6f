/**
 * The background scanner against the data rules, with the fault layer.
 *
 * Method: a setup over memory devices (tests/remap/harness.ts) whose main
 * disk is behind the fault layer; blocks are made weak (they read only on a
 * retry), slow, or dead; a scanner runs full passes, and each test checks
 * the remap table, the pending list, the bytes a client reads, and the
 * region records. Real time, small disks, a fast rate cap.
 */

import assert from "node:assert/strict";
import { type Harness, makeHarness, pattern, readBack } from "../remap/harness.ts";
import {
  parseScanRecord,
  Scanner,
  type ScannerOptions,
  type ScanTarget,
} from "../../mod/scan/mod.ts";
import { SCAN_CHUNK_SECTORS_MIN, SCAN_YIELD_MS_MAX } from "../../mod/constants.ts";
import type { ScanEvent } from "../../mod/events/setup_event.ts";

const KIB = 1024;
const MIB = 1024 * KIB;
const BLOCK = 4096;

function settings(overrides: Partial<ScannerOptions["settings"]> = {}) {
  return {
    enabled: true,
    intervalMs: 3_600_000,
    rateMaxBytesPerS: 1024 * MIB,
    regionBytes: MIB,
    ...overrides,
  };
}

function blockRange(blockIndex: number) {
  return { offsetBytes: blockIndex * BLOCK, lengthBytes: BLOCK };
}

/** Starts a scanner and waits until it has completed `passes` passes. */
async function scanPasses(
  harness: Harness,
  options: Partial<ScannerOptions> & { passes?: number } = {},
): Promise<{ scanner: Scanner; events: ScanEvent[] }> {
  const events: ScanEvent[] = [];
  const scanner = new Scanner(harness.engine, {
    settings: settings(),
    slowFloorMs: 100,
    onEvent: (event) => events.push(event),
    onError: (error) =>
      events.push({ type: "relocation-failed", blockIndex: -1, reason: `${error}` }),
    ...options,
  });
  await scanner.start();
  // As `scan start`: the schedule's first pass is an interval after the setup's creation.
  scanner.startPass();
  const deadline = Date.now() + 20_000;
  while (scanner.status().passesCompleted < (options.passes ?? 1)) {
    assert.ok(
      Date.now() < deadline,
      `scan passes did not complete: ${JSON.stringify(scanner.status())}`,
    );
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return { scanner, events };
}

Deno.test("Scanner relocates a block that reads only on a retry; when it dies later no client read fails", async () => {
  const harness = await makeHarness();
  const { engine, faulty } = harness;
  const data = pattern(BLOCK, 1);
  await engine.write(data, 100 * BLOCK);
  faulty.setWeak(blockRange(100));
  const { scanner, events } = await scanPasses(harness);
  await scanner.stop();
  assert.ok(engine.lookup(100), "the weak block is on a spare");
  assert.deepEqual(
    events.filter((event) => event.type === "relocated").map((event) => event.blockIndex),
    [100],
  );
  const region = scanner.health().regions.find((r) => r.regionIndex === 0)!;
  assert.equal(region.inputs.retriedReads, 1);
  assert.equal(region.inputs.relocations, 1);
  assert.equal(region.score, 90);
  // The block now dies on the main disk: the client never notices.
  faulty.clearWeakAndSlow();
  faulty.setBad(blockRange(100), "both");
  assert.deepEqual(await readBack(engine, 100 * BLOCK, BLOCK), data);
  assert.equal(engine.counters.readErrors, 0);
  assert.deepEqual(engine.pendingBlocks, []);
  await engine.close();
});

Deno.test("Scanner relocates a block that reads far slower than the disk's baseline", async () => {
  const harness = await makeHarness();
  const { engine, faulty } = harness;
  const data = pattern(BLOCK, 2);
  await engine.write(data, 300 * BLOCK);
  faulty.setSlow(blockRange(300), 400);
  const { scanner, events } = await scanPasses(harness);
  await scanner.stop();
  assert.ok(engine.lookup(300), "the slow block is on a spare");
  const relocated = events.filter((event) => event.type === "relocated");
  assert.deepEqual(relocated.map((event) => [event.blockIndex, event.reason]), [[300, "slow"]]);
  assert.equal(scanner.health().regions[0]!.inputs.slowReads, 1);
  faulty.clearWeakAndSlow();
  faulty.setBad(blockRange(300), "both");
  assert.deepEqual(await readBack(engine, 300 * BLOCK, BLOCK), data);
  await engine.close();
});

Deno.test("Scanner judges no read slow before it has learnt the disk's baseline", async () => {
  const harness = await makeHarness({ mainBytes: MIB });
  const { engine, faulty } = harness;
  // In the first chunk of the first pass: no baseline yet, so no judgement.
  faulty.setSlow(blockRange(1), 300);
  const { scanner } = await scanPasses(harness, { passes: 1 });
  assert.equal(engine.lookup(1), undefined, "not judged slow without a baseline");
  const deadline = Date.now() + 20_000;
  scanner.startPass();
  while (scanner.status().passesCompleted < 2) {
    assert.ok(Date.now() < deadline, "the second pass did not end");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await scanner.stop();
  assert.ok(engine.lookup(1), "relocated once the baseline was learnt");
  await engine.close();
});

Deno.test("Scanner judges latency only on quiet reads: a slow block under a client's load waits for a quiet pass", async () => {
  const harness = await makeHarness({ mainBytes: MIB });
  const { engine, faulty } = harness;
  faulty.setSlow(blockRange(200), 300);
  // A client reads the slow block without pause: every scan read of it overlaps a request.
  let loaded = true;
  const client = (async () => {
    while (loaded) await readBack(engine, 200 * BLOCK, BLOCK);
  })();
  const { scanner } = await scanPasses(harness, {
    settings: settings({ intervalMs: 1_000 }),
    passes: 1,
  });
  try {
    assert.equal(engine.lookup(200), undefined, "no relocation judged under load");
    assert.ok(scanner.status().yields > 0, "the scanner yielded to the client");
  } finally {
    loaded = false;
    await client;
  }
  // The next pass, an interval after that one ended, is quiet from its start: its first chunks
  // teach the baseline (none was learnt under load) and may reach the block before that is done;
  // the one after it judges the block.
  const deadline = Date.now() + 20_000;
  while (scanner.status().passesCompleted < 3) {
    assert.ok(Date.now() < deadline, "the third pass did not end");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await scanner.stop();
  assert.ok(engine.lookup(200), "relocated once a quiet pass saw it slow");
  await engine.close();
});

Deno.test("Scanner makes a dead block pending, re-reads its neighbourhood first and raises the region's risk", async () => {
  const harness = await makeHarness();
  const { engine, faulty } = harness;
  faulty.setBad(blockRange(600), "read");
  faulty.setWeak(blockRange(603));
  faulty.setWeak(blockRange(605));
  const { scanner, events } = await scanPasses(harness);
  await scanner.stop();
  assert.deepEqual(engine.pendingBlocks, [600]);
  assert.equal(engine.lookup(600), undefined, "a dead block is never invented onto a spare");
  assert.ok(engine.lookup(603) && engine.lookup(605), "weak neighbours are on spares");
  assert.deepEqual(
    events.filter((event) => event.type === "relocated").map((event) => event.blockIndex).sort(),
    [603, 605],
  );
  const report = scanner.health();
  // Block 600 is in region 2 (1 MiB regions of 256 blocks).
  const region = report.regions[0]!;
  assert.equal(region.regionIndex, 2);
  assert.equal(region.inputs.readErrors, 1);
  assert.equal(region.inputs.retriedReads, 2);
  assert.equal(region.inputs.clusteredBlocks, 2);
  assert.equal(region.score, 100 - 30 - 20 - 10);
  assert.equal(region.risk, "critical");
  assert.equal(report.setup.score, 40);
  assert.equal(report.setup.inputs.pendingBlocks, 1);
  // What policies read as the last pass's findings: the dead block and its two weak neighbours.
  assert.deepEqual([report.scan.findingsLastPass, report.scan.findingsThisPass], [3, 0]);
  await engine.close();
});

Deno.test("Scanner relocates a pending block that reads again (a flaky one) at the end of a pass; a dead one stays pending", async () => {
  const harness = await makeHarness();
  const { engine, faulty } = harness;
  const flaky = pattern(BLOCK, 21);
  await engine.write(flaky, 300 * BLOCK);
  await engine.write(pattern(BLOCK, 22), 700 * BLOCK);
  // Both fail for a while: a client read makes them pending.
  faulty.setBad(blockRange(300), "read");
  faulty.setBad(blockRange(700), "read");
  await assert.rejects(readBack(engine, 300 * BLOCK, BLOCK));
  await assert.rejects(readBack(engine, 700 * BLOCK, BLOCK));
  assert.deepEqual(engine.pendingBlocks, [300, 700]);
  // Block 300 reads again; block 700 stays dead.
  faulty.removeBadBlocks(Array.from({ length: BLOCK / 512 }, (_, i) => 300 * (BLOCK / 512) + i));
  const { scanner, events } = await scanPasses(harness);
  await scanner.stop();
  assert.ok(engine.lookup(300), "the block that reads again is on a spare");
  assert.deepEqual(engine.pendingBlocks, [700]);
  assert.equal(engine.lookup(700), undefined, "a dead block is never invented onto a spare");
  assert.deepEqual(
    events.filter((event) => event.type === "relocated").map((event) => event.blockIndex),
    [300],
  );
  assert.equal(
    harness.events.filter((event) => event.type === "remap-failed").length,
    0,
    "a dead pending block is probed, not pushed through a remap that fails",
  );
  // The flaky block dies for good: the client reads the copy.
  faulty.setBad(blockRange(300), "both");
  assert.deepEqual(await readBack(engine, 300 * BLOCK, BLOCK), flaky);
  const region = scanner.health().regions.find((r) => r.regionIndex === 1)!;
  assert.equal(region.inputs.retriedReads, 1);
  assert.equal(region.inputs.relocations, 1);
  await engine.close();
});

Deno.test("RemapDevice.relocate(): a client write that completed after the scanner's read wins", async () => {
  const { engine, faulty } = await makeHarness();
  await engine.write(pattern(BLOCK, 3), 40 * BLOCK);
  faulty.setWeak(blockRange(40));
  const [run] = await engine.scanRead(blockRange(40), new Uint8Array(BLOCK));
  assert.equal(run!.attempts, 2, "the scanner saw a weak block");
  const newer = pattern(BLOCK, 4);
  await engine.write(newer, 40 * BLOCK);
  assert.equal(await engine.relocate(40), true);
  assert.ok(engine.lookup(40));
  assert.deepEqual(await readBack(engine, 40 * BLOCK, BLOCK), newer);
  await engine.close();
});

Deno.test("RemapDevice.relocate(): a client write arriving while the block is copied waits and wins", async () => {
  const { engine, faulty } = await makeHarness();
  await engine.write(pattern(BLOCK, 5), 50 * BLOCK);
  // The copy's read of the main disk takes 300 ms: the write lands in the middle of it.
  faulty.setSlow(blockRange(50), 300);
  const order: string[] = [];
  const relocation = engine.relocate(50).then((moved) => order.push(`relocated ${moved}`));
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(faulty.counters.slowBlockReads, 1, "the copy is reading the block");
  const newer = pattern(BLOCK, 6);
  const write = engine.write(newer, 50 * BLOCK).then(() => order.push("written"));
  await Promise.all([relocation, write]);
  assert.deepEqual(order, ["relocated true", "written"]);
  faulty.clearWeakAndSlow();
  faulty.setBad(blockRange(50), "both");
  assert.deepEqual(await readBack(engine, 50 * BLOCK, BLOCK), newer);
  await engine.close();
});

Deno.test("RemapDevice.relocate() leaves a block a client write remapped first as it is", async () => {
  const { engine, faulty } = await makeHarness();
  faulty.setBad(blockRange(60), "write");
  const newer = pattern(BLOCK, 7);
  await engine.write(newer, 60 * BLOCK);
  const location = engine.lookup(60);
  assert.ok(location);
  assert.equal(await engine.relocate(60), true);
  assert.deepEqual(engine.lookup(60), location);
  assert.deepEqual(await readBack(engine, 60 * BLOCK, BLOCK), newer);
  await engine.close();
});

Deno.test("Scanner never reads a remapped block on the main disk, and a pending one only in its recheck at the end of a pass", async () => {
  const harness = await makeHarness();
  const { engine, faulty } = harness;
  faulty.setBad(blockRange(70), "write");
  await engine.write(pattern(BLOCK, 8), 70 * BLOCK);
  assert.ok(engine.lookup(70));
  faulty.setBad(blockRange(80), "read");
  await assert.rejects(readBack(engine, 80 * BLOCK, BLOCK));
  assert.deepEqual(engine.pendingBlocks, [80]);
  // Any read of either block on the main disk would now fail and be counted.
  faulty.setBad(blockRange(70), "both");
  const failedBefore = faulty.counters.badBlockReads;
  const { scanner } = await scanPasses(harness);
  await scanner.stop();
  // Block 80 once, with its one retry (readRetries 1); block 70 never.
  assert.equal(faulty.counters.badBlockReads, failedBefore + 2);
  assert.equal(scanner.health().setup.inputs.pendingBlocks, 1);
  await engine.close();
});

Deno.test("Scanner position, pass start and findings survive a restart", async () => {
  const harness = await makeHarness({ mainBytes: 8 * MIB });
  harness.faulty.setWeak(blockRange(10));
  const scanner = new Scanner(harness.engine, {
    settings: settings({ rateMaxBytesPerS: 2 * MIB }),
    persistIntervalMs: 50,
  });
  await scanner.start();
  scanner.startPass();
  while (scanner.status().positionBytes < 2 * MIB) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const before = scanner.status();
  assert.equal(before.state, "scanning");
  // Written at intervals while the pass runs, not only at stop.
  const recordedBefore = parseScanRecord(harness.engine.spares[0]!.store!.payload.scan)!;
  assert.ok(recordedBefore.positionBytes >= MIB, "the position was written during the pass");
  await scanner.stop();
  const stoppedAt = scanner.status().positionBytes;
  const engine = await harness.reopen();
  const recorded = parseScanRecord(engine.spares[0]!.store!.payload.scan);
  assert.ok(recorded);
  assert.equal(recorded.positionBytes, stoppedAt);
  assert.equal(recorded.passStartedMs, before.passStartedMs);
  assert.equal(recorded.regions[0]!.retriedReads, 1);
  assert.deepEqual([recorded.findingsThisPass, recorded.findingsLastPass], [1, 0]);
  const again = new Scanner(engine, { settings: settings(), recorded });
  assert.equal(again.status().positionBytes, stoppedAt);
  await again.start();
  while (again.status().passesCompleted < 1) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const status = again.status();
  assert.equal(status.lastPassStartedMs, before.passStartedMs, "the same pass went on");
  assert.deepEqual(
    [status.findingsLastPass, status.findingsThisPass],
    [1, 0],
    "found before the restart",
  );
  assert.ok(again.status().bytesScanned <= 8 * MIB - stoppedAt + 2 * MIB);
  assert.equal(again.health().regions[0]!.inputs.retriedReads, 1);
  await again.stop();
  await engine.close();
});

Deno.test("Scanner stop pauses a pass where it is, and start goes on from there", async () => {
  const harness = await makeHarness({ mainBytes: 8 * MIB });
  const scanner = new Scanner(harness.engine, {
    settings: settings({ rateMaxBytesPerS: 4 * MIB }),
  });
  await scanner.start();
  scanner.startPass();
  while (scanner.status().positionBytes < MIB) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await scanner.stopPass();
  const paused = scanner.status();
  assert.equal(paused.state, "paused");
  await new Promise((resolve) => setTimeout(resolve, 300));
  const later = scanner.status();
  assert.ok(later.positionBytes - paused.positionBytes <= 1 * MIB, "at most the chunk in flight");
  assert.equal(later.state, "paused");
  scanner.startPass();
  while (scanner.status().passesCompleted < 1) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.equal(scanner.status().lastPassStartedMs, paused.passStartedMs);
  await scanner.stop();
  await harness.engine.close();
});

Deno.test("Scanner keeps its rate cap on an idle disk: a pass of 4 MiB at 4 MiB/s takes about a second", async () => {
  const harness = await makeHarness();
  const { scanner } = await scanPasses(harness, {
    settings: settings({ rateMaxBytesPerS: 4 * MIB }),
  });
  const status = scanner.status();
  const passMs = status.lastPassCompletedMs! - status.lastPassStartedMs!;
  // Every chunk but the last waits for its share: 4 MiB less the last 32 KiB, at 4 MiB/s.
  assert.ok(passMs >= 900, `a pass of 4 MiB at 4 MiB/s took ${passMs} ms`);
  await scanner.stop();
  await harness.engine.close();
});

Deno.test("Scanner under a foreground that never drains: reads its smallest chunks, after a few looks and one sleep each", async () => {
  const harness = await makeHarness();
  const { engine } = harness;
  let looks = 0;
  let reads = 0;
  // The engine, with a client request always in flight (a deep queue that never drains).
  const busy: ScanTarget = {
    sizeBytes: engine.sizeBytes,
    blockBytes: engine.blockBytes,
    get foregroundInFlight() {
      looks++;
      return 1;
    },
    get foregroundRequests() {
      return engine.foregroundRequests;
    },
    get pendingBlocks() {
      return engine.pendingBlocks;
    },
    scanRead: (range, buffer) => {
      reads++;
      return engine.scanRead(range, buffer);
    },
    relocate: (blockIndex) => engine.relocate(blockIndex),
    isPending: (blockIndex) => engine.isPending(blockIndex),
    markPending: (blockIndexes) => engine.markPending(blockIndexes),
    probePending: (blockIndex, buffer) => engine.probePending(blockIndex, buffer),
    recordScan: (record) => engine.recordScan(record),
  };
  // Every sleep is a timer: a wake-up of the server's event loop.
  let timers = 0;
  const realSetTimeout = globalThis.setTimeout;
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    timers++;
    return realSetTimeout(...args);
  }) as typeof setTimeout;
  const scanner = new Scanner(busy, { settings: settings() });
  await scanner.start();
  scanner.startPass();
  try {
    await new Promise((resolve) => realSetTimeout(resolve, 8 * SCAN_YIELD_MS_MAX));
    globalThis.setTimeout = realSetTimeout;
    assert.ok(reads >= 3, `the scanner reads under load too (${reads} reads)`);
    assert.equal(
      scanner.status().chunkSectors,
      SCAN_CHUNK_SECTORS_MIN,
      "it reads its smallest chunk",
    );
    // The first wait doubles (2, 4, 8, ... ms: 7 looks before it reads anyway); each later one
    // is a single sleep of the longest wait (2 looks); and two looks around each read. A look
    // every 2 ms would be 50 a chunk.
    assert.ok(looks <= 5 * reads + 5, `${looks} looks at the foreground for ${reads} reads`);
    // The first wait's 7 sleeps, then one before each later read and one begun after the
    // last: the rate cap's wait is inside the foreground's, not a second sleep after each
    // read (with one, 18 sleeps for 6 reads), and no timer fires before its deadline (one
    // that did would need a look more to sleep the rest: up to 17 sleeps for 7 reads).
    assert.ok(timers <= reads + 7, `${timers} sleeps for ${reads} reads`);
  } finally {
    globalThis.setTimeout = realSetTimeout;
    await scanner.stop();
    await engine.close();
  }
});

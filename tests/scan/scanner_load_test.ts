/**
 * A scan pass over a large dead region under a client's writes: the clients
 * are answered within a bound while the scanner marks the region pending.
 *
 * Method: a setup over memory devices (tests/remap/harness.ts) whose spare
 * takes OP_MS for every write and flush, as a disk does, so metadata writes
 * cost what they cost in a VM; 32 MiB of the main disk is dead. The scanner
 * runs at an unthrottled rate cap while a client writes blocks of the dead
 * region one at a time (each write is a remap: a group commit on the spare);
 * the same writes without the scanner, first, give what such a write costs.
 * Checked: every write is answered and reads back; the scanner marked blocks
 * pending meanwhile; the setup-state writes (copy 0 of the spare) stay within
 * one a second for the scanner and one per delayed state write, not one per
 * chunk or per client commit; the median write costs at most 1.5 times (plus
 * 5 ms) what it costs alone; the scanner read at most its paced number of
 * blocks one by one; and no client write waited longer than LATENCY_MS_MAX.
 */

import assert from "node:assert/strict";
import { makeHarness, pattern, readBack } from "../remap/harness.ts";
import type { RemapDevice } from "../../mod/remap/remap_device.ts";
import { Scanner } from "../../mod/scan/mod.ts";
import { SCAN_INSPECT_BLOCKS_PER_S_BUSY } from "../../mod/constants.ts";

const MIB = 1024 * 1024;
const BLOCK = 4096;
/** What each spare write and each spare flush takes. */
const OP_MS = 3;
const DEAD_FIRST_BLOCK = 1024;
const DEAD_BLOCKS = 8192;
const CLIENT_WRITES = 120;
/**
 * The longest a client write may take: no stall. Its own group commit (slot
 * write, flush, log write, flush) plus the one background change it may wait
 * for (a setup-state write: 5 copies, each written and flushed) is about
 * 14 OP_MS; on a machine shared with other work timers run late, so the
 * bound is 20 times that. (Before the background lane the worst was about
 * the same; what it changed shows in the median and the state writes.)
 */
const LATENCY_MS_MAX = 20 * 14 * OP_MS;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Writes a pattern to each block, one at a time, and returns each write's time. */
async function writeEach(
  engine: RemapDevice,
  blocks: readonly number[],
  seed: number,
): Promise<number[]> {
  const latenciesMs: number[] = [];
  for (const [i, blockIndex] of blocks.entries()) {
    const startMs = performance.now();
    await engine.write(pattern(BLOCK, seed + i), blockIndex * BLOCK);
    latenciesMs.push(performance.now() - startMs);
  }
  return latenciesMs;
}

function median(values: readonly number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
}

Deno.test("a scan pass marking a large dead region pending keeps client writes within a bound and writes the metadata a bounded number of times", async () => {
  const harness = await makeHarness({ mainBytes: 64 * MIB, spareSlots: 2 * CLIENT_WRITES + 64 });
  // Every spare write and flush takes OP_MS; writes of copy 0 count the setup-state writes.
  const spare = harness.spares[0]!;
  let stateWrites = 0;
  const write = spare.write.bind(spare);
  const flush = spare.flush.bind(spare);
  spare.write = async (data, offsetBytes, options) => {
    if (offsetBytes === 0) stateWrites++;
    await sleep(OP_MS);
    return write(data, offsetBytes, options);
  };
  spare.flush = async () => {
    await sleep(OP_MS);
    return flush();
  };
  // The delayed state write as serve has it (RemapDeviceOptions default);
  // the first engine stays idle (closing it would close the devices).
  const engine = await harness.reopen({ metadataDelayMs: 1000 });
  harness.faulty.setBad(
    { offsetBytes: DEAD_FIRST_BLOCK * BLOCK, lengthBytes: DEAD_BLOCKS * BLOCK },
    "both",
  );
  // Spread over the dead region, one set for each phase.
  const blocksOf = (phase: number) =>
    Array.from(
      { length: CLIENT_WRITES },
      (_, i) => DEAD_FIRST_BLOCK + ((i * 67 + phase * 31) % DEAD_BLOCKS),
    );
  // Without the scanner: what a remapping write costs here.
  const alone = await writeEach(engine, blocksOf(0), 1);

  const scanner = new Scanner(engine, {
    settings: {
      enabled: true,
      intervalMs: 3_600_000,
      rateMaxBytesPerS: 1024 * MIB,
      regionBytes: MIB,
    },
  });
  await scanner.start();
  scanner.startPass();
  // The scanner reaches the dead region first, alone.
  const pendingEvents = () =>
    harness.events.reduce(
      (sum, event) => sum + (event.type === "pending" ? event.blockCount ?? 1 : 0),
      0,
    );
  while (pendingEvents() === 0) await sleep(5);
  const startMs = performance.now();
  const stateWritesBefore = stateWrites;
  const pendingBefore = pendingEvents();
  const loaded = await writeEach(engine, blocksOf(1), 1001);
  const elapsedS = (performance.now() - startMs) / 1000;
  const stateWritesDuring = stateWrites - stateWritesBefore;
  const pendingDuring = pendingEvents() - pendingBefore;
  const status = scanner.status();
  await scanner.stop();

  for (const [i, blockIndex] of blocksOf(1).entries()) {
    assert.deepEqual(await readBack(engine, blockIndex * BLOCK, BLOCK), pattern(BLOCK, 1001 + i));
  }
  const report = `alone: median ${median(alone).toFixed(0)} ms; with the scanner: ` +
    `${CLIENT_WRITES} writes in ${elapsedS.toFixed(2)} s, median ${
      median(loaded).toFixed(0)
    } ms, ` +
    `worst ${Math.max(...loaded).toFixed(0)} ms; ${stateWritesDuring} state writes; ` +
    `${pendingDuring} blocks became pending; scanner yields ${status.yields}`;
  console.log(report);
  // The scanner's record: once a second; the delayed write of the pending
  // blocks the client's remaps cleared: once a second; the final write at stop.
  assert.ok(
    stateWritesDuring <= 2 * Math.ceil(elapsedS) + 2,
    `state writes bounded per second, not one per commit: ${report}`,
  );
  assert.ok(
    median(loaded) <= 1.5 * median(alone) + 5,
    `a client write costs about what it costs alone: ${report}`,
  );
  assert.ok(
    Math.max(...loaded) <= LATENCY_MS_MAX,
    `every write within ${LATENCY_MS_MAX} ms: ${report}`,
  );
  assert.ok(pendingDuring > 0, `the scanner marked blocks meanwhile: ${report}`);
  // Under load the scanner reads at most SCAN_INSPECT_BLOCKS_PER_S_BUSY blocks a second one by one.
  assert.ok(
    pendingDuring <= SCAN_INSPECT_BLOCKS_PER_S_BUSY * (elapsedS + 1),
    `pending marks paced: ${report}`,
  );
  await engine.close();
});

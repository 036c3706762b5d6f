/**
 * The remap engine when a disk vanishes while it serves.
 *
 * Goal: a main disk or spare that is gone (`"ENODEV"`) is never taken for
 * bad blocks. Main disk gone: the request and every later one fail with EIO,
 * the setup is failed, the data plane's workers are told, and nothing is
 * written to the spares for blocks that were not failing. Spare gone: it
 * takes no new slots, the setup reports it failed, and requests touching its
 * slots fail with EIO, never the main disk's stale data. Method: the memory
 * setup of `harness.ts`, with `FaultyDevice.remove()` pulling a disk.
 */

import assert from "node:assert/strict";
import { DeviceIoError } from "../../mod/errors.ts";
import { EngineStateReader } from "../../mod/remap/shared_state.ts";
import { makeHarness, pattern, readBack } from "./harness.ts";

const KIB = 1024;

/** "ok", or the error's code. */
async function outcome(request: Promise<unknown>): Promise<string> {
  try {
    await request;
    return "ok";
  } catch (error) {
    if (!(error instanceof DeviceIoError)) throw error;
    return error.code;
  }
}

Deno.test("RemapDevice fails the setup with EIO when the main disk is gone, remapping and pending nothing", async () => {
  const { engine, faulty, faultySpares, spares, events } = await makeHarness({ spareCount: 2 });
  faulty.setBad({ offsetBytes: 8 * KIB, lengthBytes: 4 * KIB }, "write");
  await engine.write(pattern(4 * KIB, 1), 8 * KIB); // block 2 remapped while the disk was there
  const spareBytesBefore = spares.map((spare) =>
    spare.peek({ offsetBytes: 0, lengthBytes: spare.sizeBytes }).slice()
  );
  const reader = new EngineStateReader(engine.sharedState.buffers);
  assert.equal(reader.failed, false);
  faulty.remove();
  const outcomes = [
    await outcome(engine.write(pattern(16 * KIB, 2), 64 * KIB)),
    await outcome(engine.read(new Uint8Array(16 * KIB), 128 * KIB)),
    await outcome(engine.read(new Uint8Array(4 * KIB), 8 * KIB)), // the remapped block too
    await outcome(engine.writeZeroes({ offsetBytes: 0, lengthBytes: 8 * KIB })),
    await outcome(engine.discard({ offsetBytes: 0, lengthBytes: 8 * KIB })),
    await outcome(engine.flush()),
  ];
  assert.deepEqual(outcomes, ["EIO", "EIO", "EIO", "EIO", "EIO", "EIO"]);
  assert.equal(engine.remapCount, 1, "no block remapped for a vanished disk");
  assert.deepEqual(engine.pendingBlocks, []);
  assert.match(engine.failure ?? "", /the main disk "main" is gone/);
  assert.equal(reader.failed, true, "the workers are told to send everything to the engine");
  assert.deepEqual(events.filter((event) => event.type === "main-failed").length, 1);
  assert.equal(
    events.some((event) => event.type === "pending" || event.type === "read-error"),
    false,
  );
  spares.forEach((spare, index) => {
    assert.deepEqual(
      spare.peek({ offsetBytes: 0, lengthBytes: spare.sizeBytes }),
      spareBytesBefore[index],
      `nothing written to spare ${index}`,
    );
  });
  assert.deepEqual(faultySpares.map((spare) => spare.counters.removedRequests), [0, 0]);
  await engine.close();
});

Deno.test("RemapDevice answers every write of a burst whose remap finds the main disk gone", async () => {
  const { engine, faulty } = await makeHarness();
  // Partial writes to failing blocks must read the rest of the block: the disk vanishes first.
  faulty.setBad({ offsetBytes: 0, lengthBytes: 64 * KIB }, "write");
  const writes = [0, 4, 8, 12].map((block) => engine.write(pattern(KIB, block), block * 4 * KIB));
  // Each write fails twice (whole, then block by block) and waits for the
  // group commit, which starts in a later task: pull the disk in between.
  while (faulty.counters.badBlockWrites < 8) await Promise.resolve();
  faulty.remove();
  assert.deepEqual(await Promise.all(writes.map(outcome)), ["EIO", "EIO", "EIO", "EIO"]);
  assert.equal(engine.remapCount, 0);
  assert.deepEqual(engine.pendingBlocks, []);
  await engine.close();
});

Deno.test("RemapDevice fails a spare that is gone: its slots read EIO, a write moves its block, new remaps go to the next spare", async () => {
  const { engine, faulty, faultySpares, main, events } = await makeHarness({ spareCount: 2 });
  faulty.setBad({ offsetBytes: 0, lengthBytes: 64 * KIB }, "write");
  const remapped = pattern(4 * KIB, 3);
  await engine.write(remapped, 0);
  assert.deepEqual(engine.lookup(0), { spareIndex: 0, slotIndex: 0 });
  faultySpares[0]!.remove();
  // The main disk still holds the block's old bytes: they must never be returned.
  assert.equal(await outcome(engine.read(new Uint8Array(4 * KIB), 0)), "EIO");
  assert.equal(engine.spares[0]!.state, "failed");
  assert.ok(events.some((event) => event.type === "spare-failed" && event.spareIndex === 0));
  // The other spare's metadata records the failure soon, with no write to prompt it.
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(engine.spares[1]!.store!.payload.spares[0]!.state, "failed");
  // A whole-block write to a block on the gone spare remaps it again (format version 2).
  const rewritten = pattern(4 * KIB, 4);
  await engine.write(rewritten, 0);
  assert.deepEqual(engine.lookup(0), { spareIndex: 1, slotIndex: 0 });
  assert.deepEqual(await readBack(engine, 0, 4 * KIB), rewritten);
  // A partial write cannot be composed: the rest of the block is on the gone spare.
  faulty.setBad({ offsetBytes: 8 * KIB, lengthBytes: 4 * KIB }, "write");
  const next = pattern(4 * KIB, 5);
  await engine.write(next, 4 * KIB);
  assert.deepEqual(engine.lookup(1), { spareIndex: 1, slotIndex: 1 });
  assert.deepEqual(await readBack(engine, 4 * KIB, 4 * KIB), next);
  assert.equal(engine.failure, undefined, "a spare gone degrades the setup, it does not fail it");
  assert.equal(engine.degraded, true, "a failed spare degrades the setup");
  assert.ok(events.some((event) => event.type === "degraded"));
  await engine.flush(); // the gone spare takes no writes, so a flush does not wait on it
  assert.notDeepEqual(main.peek({ offsetBytes: 0, lengthBytes: 4 * KIB }), remapped);
  await engine.close();
});

Deno.test("RemapDevice fails a spare that vanishes during a remap and places the block on the next", async () => {
  const { engine, faulty, faultySpares } = await makeHarness({ spareCount: 2 });
  faulty.setBad({ offsetBytes: 0, lengthBytes: 64 * KIB }, "write");
  faultySpares[0]!.remove();
  const data = pattern(4 * KIB, 6);
  await engine.write(data, 0);
  assert.deepEqual(engine.lookup(0), { spareIndex: 1, slotIndex: 0 });
  assert.equal(engine.spares[0]!.state, "failed");
  assert.deepEqual(await readBack(engine, 0, 4 * KIB), data);
  await engine.close();
});

/**
 * The spare set: which spare a new remap takes its slots from, and what the
 * engine does with a placement other than the default.
 *
 * Method: spares created over memory devices, filled to a chosen number of
 * used slots through their remap log and given a state; table rows of spares
 * → the slots granted. Then the engine over the same kind of setup, with a
 * placement that picks another spare or none.
 */

import assert from "node:assert/strict";
import { AssertionError } from "../../mod/assert.ts";
import { createSetup } from "../../mod/assembly/create.ts";
import { MemoryDevice } from "../../mod/device/memory_device.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import {
  type SpareMember,
  type SparePlacement,
  SpareSet,
  type SpareState,
} from "../../mod/remap/spare_set.ts";
import { makeHarness, memoryIdentity, pattern, readBack } from "./harness.ts";

const BLOCK_BYTES = 4096;
/** Slots of a spare of the minimum size. */
const SLOT_COUNT = 16;

/** One spare of a row: how many of its slots are used, and its state. */
interface SpareRow {
  slotsUsed: number;
  state: SpareState;
}

/** Spares of 16 slots each, with their slots filled and their states set as the rows say. */
async function sparesLike(rows: SpareRow[]): Promise<SpareMember[]> {
  const main = new MemoryDevice("main", 1024 * 1024);
  const devices = rows.map((_, i) => new MemoryDevice(`spare${i}`, minimumSpareBytes(BLOCK_BYTES)));
  const stores = await createSetup({
    name: "test",
    main: { device: main, identity: memoryIdentity(main) },
    spares: devices.map((device) => ({ device, path: device.name })),
    blockBytes: BLOCK_BYTES,
  });
  assert.equal(stores[0]!.payload.layout.slotCount, SLOT_COUNT);
  return Promise.all(rows.map(async (row, index) => {
    const store = stores[index]!;
    if (row.slotsUsed > 0) {
      await store.appendRemaps(Array.from({ length: row.slotsUsed }, (_, block) => block));
    }
    return { index, device: store.device, store, layout: store.payload.layout, state: row.state };
  }));
}

const FREE: SpareRow = { slotsUsed: 0, state: "active" };
const FULL: SpareRow = { slotsUsed: SLOT_COUNT, state: "active" };
const FAILED: SpareRow = { slotsUsed: 0, state: "failed" };

const rows: {
  scenario: string;
  spares: SpareRow[];
  blockCount: number;
  granted: { spareIndex: number; firstSlotIndex: number; slotCount: number } | undefined;
}[] = [
  {
    scenario: "two free spares: the first",
    spares: [FREE, FREE],
    blockCount: 3,
    granted: { spareIndex: 0, firstSlotIndex: 0, slotCount: 3 },
  },
  {
    scenario: "a partly used spare: its next free slot",
    spares: [{ slotsUsed: 5, state: "active" }, FREE],
    blockCount: 2,
    granted: { spareIndex: 0, firstSlotIndex: 5, slotCount: 2 },
  },
  {
    scenario: "more blocks than free slots: as many as fit",
    spares: [{ slotsUsed: 12, state: "active" }, FREE],
    blockCount: 10,
    granted: { spareIndex: 0, firstSlotIndex: 12, slotCount: 4 },
  },
  {
    scenario: "a full spare first: the next one",
    spares: [FULL, FREE],
    blockCount: 1,
    granted: { spareIndex: 1, firstSlotIndex: 0, slotCount: 1 },
  },
  {
    scenario: "a failed spare first: the next one",
    spares: [FAILED, { slotsUsed: 3, state: "active" }],
    blockCount: 1,
    granted: { spareIndex: 1, firstSlotIndex: 3, slotCount: 1 },
  },
  {
    scenario: "failed and full spares before a free one: the free one",
    spares: [FAILED, FULL, FREE],
    blockCount: 20,
    granted: { spareIndex: 2, firstSlotIndex: 0, slotCount: SLOT_COUNT },
  },
  {
    scenario: "a failed spare with free slots and a full one: none",
    spares: [FAILED, FULL],
    blockCount: 1,
    granted: undefined,
  },
  {
    scenario: "every spare full: none",
    spares: [FULL, FULL, FULL],
    blockCount: 1,
    granted: undefined,
  },
];

for (const row of rows) {
  Deno.test(`SpareSet.chooseSlots() with ${row.scenario}`, async () => {
    const spares = new SpareSet(await sparesLike(row.spares));
    const grant = spares.chooseSlots({ blockCount: row.blockCount });
    assert.deepEqual(
      grant && {
        spareIndex: grant.spare.index,
        firstSlotIndex: grant.firstSlotIndex,
        slotCount: grant.slotCount,
      },
      row.granted,
    );
  });
}

Deno.test("SpareSet.chooseSlots() asks the placement among the spares that can take a slot", async () => {
  const offered: number[][] = [];
  const lastFirst: SparePlacement = {
    choose(candidates, request) {
      assert.equal(request.blockCount, 2);
      offered.push(candidates.map((candidate) => candidate.index));
      return candidates.at(-1)?.index;
    },
  };
  const spares = new SpareSet(await sparesLike([FREE, FAILED, FULL, FREE, FREE]), {
    placement: lastFirst,
  });
  assert.equal(spares.chooseSlots({ blockCount: 2 })?.spare.index, 4);
  assert.deepEqual(offered, [[0, 3, 4]]);
});

Deno.test("SpareSet.chooseSlots() grants nothing when the placement chooses no spare", async () => {
  const spares = new SpareSet(await sparesLike([FREE]), { placement: { choose: () => undefined } });
  assert.equal(spares.chooseSlots({ blockCount: 1 }), undefined);
});

Deno.test("SpareSet.chooseSlots() refuses a placement that picks a spare which cannot take a slot", async () => {
  const spares = new SpareSet(await sparesLike([FULL, FREE]), { placement: { choose: () => 0 } });
  assert.throws(() => spares.chooseSlots({ blockCount: 1 }), AssertionError);
});

Deno.test("SpareSet.markFailed() takes a spare out of placement and metadata, keeping it a member", async () => {
  const spares = new SpareSet(await sparesLike([FREE, FREE]));
  spares.markFailed(0);
  assert.deepEqual(spares.members.map((spare) => spare.state), ["failed", "active"]);
  assert.deepEqual(spares.working.map((spare) => spare.index), [1]);
  assert.equal(spares.chooseSlots({ blockCount: 1 })?.spare.index, 1);
  assert.equal(spares.get(0).state, "failed");
  assert.throws(() => spares.markFailed(0), AssertionError);
});

Deno.test("RemapDevice places remaps where its placement option says", async () => {
  const harness = await makeHarness({ spareCount: 3 });
  // The engine harness assembled is left as after a crash: the same spares
  // are assembled again with the placement under test.
  const engine = await harness.reopen({
    placement: { choose: (candidates) => candidates.at(-1)?.index },
  });
  harness.faulty.setBad({ offsetBytes: 0, lengthBytes: 512 }, "write");
  const data = pattern(4 * 1024, 1);
  await engine.write(data, 0);
  assert.deepEqual(engine.lookup(0), { spareIndex: 2, slotIndex: 0 });
  assert.deepEqual(await readBack(engine, 0, 4 * 1024), data);
  await engine.close();
});

Deno.test("RemapDevice fails the write as with spares exhausted when the placement grants no slot", async () => {
  const harness = await makeHarness({ spareCount: 2 });
  // The engine harness assembled is left as after a crash: the same spares
  // are assembled again with the placement under test.
  const engine = await harness.reopen({ placement: { choose: () => undefined } });
  harness.faulty.setBad({ offsetBytes: 0, lengthBytes: 512 }, "write");
  await assert.rejects(engine.write(pattern(4 * 1024, 2), 0), /add a spare/);
  assert.equal(engine.degraded, true);
  assert.equal(engine.remapCount, 0);
  assert.ok(harness.events.some((event) => event.type === "degraded"));
  await engine.close();
});

Deno.test("SpareSet.stopAllocating() keeps new slots off the stopped spares while another can take them", async () => {
  const spares = new SpareSet(await sparesLike([FREE, FREE, FREE]));
  spares.stopAllocating([0, 2]);
  assert.deepEqual(spares.allocationStopped, [0, 2]);
  assert.equal(spares.chooseSlots({ blockCount: 1 })?.spare.index, 1);
  // Stopped spares stay members that take metadata.
  assert.deepEqual(spares.working.map((spare) => spare.index), [0, 1, 2]);
  spares.stopAllocating([]);
  assert.equal(spares.chooseSlots({ blockCount: 1 })?.spare.index, 0);
  assert.throws(() => spares.stopAllocating([3]), AssertionError);
});

Deno.test("SpareSet.stopAllocating() falls back to a stopped spare when no other can take a slot", async () => {
  const spares = new SpareSet(await sparesLike([FREE, FULL, FAILED]));
  spares.stopAllocating([0]);
  // A remap onto the stopped spare serves the client; refusing it would be EIO.
  assert.equal(spares.chooseSlots({ blockCount: 2 })?.spare.index, 0);
});

Deno.test("RemapDevice.stopAllocating() sends new remaps to the other spares and keeps serving", async () => {
  const harness = await makeHarness({ spareCount: 2 });
  const engine = harness.engine;
  engine.stopAllocating([0]);
  assert.deepEqual(engine.allocationStopped, [0]);
  harness.faulty.setBad({ offsetBytes: 0, lengthBytes: 512 }, "write");
  const data = pattern(4 * 1024, 3);
  await engine.write(data, 0);
  assert.deepEqual(engine.lookup(0), { spareIndex: 1, slotIndex: 0 });
  assert.deepEqual(await readBack(engine, 0, 4 * 1024), data);
  engine.stopAllocating([]);
  harness.faulty.setBad({ offsetBytes: 8192, lengthBytes: 512 }, "write");
  await engine.write(pattern(4 * 1024, 4), 8192);
  assert.deepEqual(engine.lookup(2), { spareIndex: 0, slotIndex: 0 });
  await engine.close();
});

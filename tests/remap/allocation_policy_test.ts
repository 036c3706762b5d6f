/**
 * Goal: each allocation policy puts new remaps where it says, the engine
 * switches policy while serving, and the setup's metadata keeps it.
 * Method: placements over candidate rows (the spec as a table), then the
 * real engine over memory devices with three spares.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type AllocationPolicy, placementFor } from "../../mod/remap/allocation_policy.ts";
import { makeHarness, pattern } from "./harness.ts";

const BLOCK = 4096;

Deno.test("placementFor() chooses as each policy says", () => {
  const rows: {
    policy: AllocationPolicy;
    candidates: { index: number; slotsFree: number; errors: number }[];
    chosen: number[];
  }[] = [
    {
      policy: "fill-first",
      candidates: [{ index: 0, slotsFree: 1, errors: 0 }, { index: 2, slotsFree: 9, errors: 0 }],
      chosen: [0, 0, 0],
    },
    {
      policy: "round-robin",
      candidates: [
        { index: 0, slotsFree: 1, errors: 0 },
        { index: 1, slotsFree: 1, errors: 0 },
        { index: 2, slotsFree: 1, errors: 0 },
      ],
      chosen: [0, 1, 2, 0],
    },
    {
      policy: "most-free",
      candidates: [{ index: 0, slotsFree: 3, errors: 0 }, { index: 1, slotsFree: 7, errors: 5 }],
      chosen: [1],
    },
    {
      policy: "health-weighted",
      candidates: [{ index: 0, slotsFree: 3, errors: 0 }, { index: 1, slotsFree: 7, errors: 5 }],
      chosen: [0],
    },
    {
      policy: "health-weighted",
      candidates: [{ index: 0, slotsFree: 3, errors: 2 }, { index: 1, slotsFree: 7, errors: 5 }],
      chosen: [0],
    },
  ];
  for (const row of rows) {
    const placement = placementFor(row.policy);
    const chosen = row.chosen.map(() => placement.choose(row.candidates, { blockCount: 1 }));
    assert.deepEqual(chosen, row.chosen, row.policy);
  }
});

Deno.test("RemapDevice.setAllocationPolicy() applies to the next remap and is kept in the metadata", async () => {
  const harness = await makeHarness({ spareCount: 3 });
  const { engine, faulty } = harness;
  const remap = async (blockIndex: number) => {
    faulty.setBad({ offsetBytes: blockIndex * BLOCK, lengthBytes: BLOCK }, "write");
    await engine.write(pattern(BLOCK, blockIndex), blockIndex * BLOCK);
    return engine.lookup(blockIndex)!.spareIndex;
  };
  assert.equal(engine.allocationPolicy, "fill-first");
  assert.deepEqual([await remap(10), await remap(11)], [0, 0]);
  await engine.setAllocationPolicy("round-robin");
  assert.deepEqual([await remap(20), await remap(21), await remap(22)], [0, 1, 2]);
  await engine.setAllocationPolicy("most-free");
  // Spare 0 holds 3 remaps, 1 and 2 one each: the lower of the two emptiest.
  assert.equal(await remap(30), 1);
  await engine.flush();
  const reopened = await harness.reopen();
  assert.equal(reopened.allocationPolicy, "most-free");
  await reopened.close();
});

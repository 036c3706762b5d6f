/**
 * The one planner over the remap table: for any table, pending list and
 * request, the runs cover every byte of the request exactly once, each byte
 * lands where a block-by-block model says (the main disk at its own offset,
 * a remapped block's bytes in its slot at `slotOffsetBytes`, a pending block
 * in a run of its own), and neighbours on one disk are merged as far as the
 * caller's segment limit allows. Method: fast-check over random tables and
 * requests, checked against the model byte range by byte range; plus rows
 * for the merges the worker's performance depends on.
 */

import assert, { deepStrictEqual as assertEquals } from "node:assert/strict";
import fc from "fast-check";
import { computeLayout, slotOffsetBytes } from "../../mod/metadata/spare_layout.ts";
import { RequestPlanner, type Run } from "../../mod/remap/plan.ts";
import { RemapTable, RemapTableReader } from "../../mod/remap/remap_table.ts";

const BLOCK_BYTES = 4096;
const LAYOUTS = [
  computeLayout(64 * 1024 * 1024, BLOCK_BYTES)!,
  computeLayout(32 * 1024 * 1024, BLOCK_BYTES)!,
];

function plannerOf(segmentsMax: number): RequestPlanner {
  return new RequestPlanner({
    blockBytes: BLOCK_BYTES,
    layoutOf: (spareIndex) => LAYOUTS[spareIndex]!,
    segmentsMax,
  });
}

/** Where a request byte lives, per the model: [disk, offset on it, pending]. */
function modelOf(table: RemapTable, pending: Set<number>, offsetBytes: number): string {
  const block = Math.floor(offsetBytes / BLOCK_BYTES);
  const location = table.lookup(block);
  if (location) {
    const slot = slotOffsetBytes(LAYOUTS[location.spareIndex]!, location.slotIndex);
    return `spare${location.spareIndex}@${slot + offsetBytes - block * BLOCK_BYTES}`;
  }
  return `${pending.has(block) ? "pending" : "main"}@${offsetBytes}`;
}

/** Where each run puts each of the request's bytes, sampled every 512 bytes. */
function placementsOf(runs: Run[]): Map<number, string> {
  const placed = new Map<number, string>();
  for (const run of runs) {
    const segments = run.segments ?? [run.bufferOffset, run.lengthBytes];
    let onDisk = run.offsetBytes;
    for (let i = 0; i < segments.length; i += 2) {
      for (let at = 0; at < segments[i + 1]!; at += 512) {
        const disk = run.kind === "slot" ? `spare${run.spareIndex}` : run.kind;
        assert(!placed.has(segments[i]! + at), "no byte is planned twice");
        placed.set(segments[i]! + at, `${disk}@${onDisk + at}`);
      }
      onDisk += segments[i + 1]!;
    }
  }
  return placed;
}

Deno.test("RequestPlanner.plan() puts every byte where the table and the pending list say, once", () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.integer({ min: 0, max: 300 }), { maxLength: 120 }),
      fc.uniqueArray(fc.integer({ min: 0, max: 300 }), { maxLength: 10 }),
      fc.integer({ min: 0, max: 250 * 8 }),
      fc.integer({ min: 1, max: 50 * 8 }),
      fc.constantFrom(1, 2, 64),
      fc.boolean(),
      (remapped, pendingBlocks, startSector, sectorCount, segmentsMax, reader) => {
        const table = new RemapTable();
        // Consecutive slots for consecutive inserts, as a bad patch remapped in order.
        remapped.forEach((block, i) =>
          table.insert(block, { spareIndex: i % 3 === 2 ? 1 : 0, slotIndex: i })
        );
        const pending = new Set(pendingBlocks.filter((block) => !table.has(block)));
        const range = { offsetBytes: startSector * 512, lengthBytes: sectorCount * 512 };
        const runs = plannerOf(segmentsMax).plan(range, {
          remapCount: table.size,
          table: reader ? new RemapTableReader(table.arrays) : table,
          pending,
        });
        const placed = placementsOf(runs);
        assertEquals(placed.size, sectorCount, "every sector planned");
        for (let at = 0; at < range.lengthBytes; at += 512) {
          assertEquals(placed.get(at), modelOf(table, pending, range.offsetBytes + at));
        }
        for (const run of runs) {
          assert((run.segments?.length ?? 2) <= 2 * segmentsMax, "segments within the limit");
          if (run.kind === "pending") assert(run.lengthBytes <= BLOCK_BYTES, "one block each");
        }
      },
    ),
  );
});

Deno.test("RequestPlanner.plan() merges neighbours on one disk: main-disk runs, consecutive slots, vectored slots", () => {
  const table = new RemapTable();
  // Every 4th block of 0..31 remapped, in order: slots 0..7 are consecutive.
  for (let i = 0; i < 8; i++) table.insert(4 * i + 1, { spareIndex: 0, slotIndex: i });
  table.insert(100, { spareIndex: 0, slotIndex: 8 });
  table.insert(101, { spareIndex: 0, slotIndex: 9 });
  const source = { remapCount: table.size, table };
  const rows: { segmentsMax: number; first: number; count: number; expected: string[] }[] = [
    // No remaps in the range: one main-disk run.
    { segmentsMax: 64, first: 200, count: 100, expected: ["main"] },
    // Two remapped neighbours in neighbouring slots: one slot run.
    { segmentsMax: 1, first: 99, count: 4, expected: ["main", "slot", "main"] },
    // Every 4th block remapped: without vectors one run per piece...
    {
      segmentsMax: 1,
      first: 0,
      count: 8,
      expected: ["main", "slot", "main", "slot", "main"],
    },
    // ...with vectors the slots are one vectored run.
    { segmentsMax: 64, first: 0, count: 8, expected: ["main", "slot", "main", "main"] },
  ];
  for (const row of rows) {
    const runs = plannerOf(row.segmentsMax).plan({
      offsetBytes: row.first * BLOCK_BYTES,
      lengthBytes: row.count * BLOCK_BYTES,
    }, source);
    assertEquals(runs.map((run) => run.kind), row.expected, JSON.stringify(row));
  }
  const vectored = plannerOf(64).plan({ offsetBytes: 0, lengthBytes: 8 * BLOCK_BYTES }, source);
  assertEquals(vectored[1]!.segments, [BLOCK_BYTES, BLOCK_BYTES, 5 * BLOCK_BYTES, BLOCK_BYTES]);
  assertEquals(vectored[1]!.offsetBytes, slotOffsetBytes(LAYOUTS[0]!, 0));
});

Deno.test("RequestPlanner.plan() refuses a slot outside its spare's layout", () => {
  const table = new RemapTable();
  table.insert(3, { spareIndex: 0, slotIndex: LAYOUTS[0]!.slotCount });
  assert.throws(
    () =>
      plannerOf(1).plan({ offsetBytes: 0, lengthBytes: 8 * BLOCK_BYTES }, {
        remapCount: table.size,
        table,
      }),
    /slot index in range/,
  );
});

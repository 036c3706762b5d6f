/**
 * The in-memory remap table: every remapped block is found with its slot,
 * every other block is not, whatever the pattern of blocks (runs of
 * neighbours, which hash to neighbouring buckets, strides, indices past
 * 2^32), through growth, and the same from a reader on the shared arrays.
 * The extent summary never calls an extent with a remap clear, and on a disk
 * it covers, calls every other extent clear.
 */

import assert, { deepStrictEqual as assertEquals } from "node:assert/strict";
import fc from "fast-check";
import {
  RemapTable,
  RemapTableReader,
  SUMMARY_EXTENT_BLOCKS,
} from "../../mod/remap/remap_table.ts";

/** Blocks remapped in patterns a failing disk produces: scattered, runs of neighbours, strides. */
const remappedBlocks = fc.oneof(
  fc.uniqueArray(fc.integer({ min: 0, max: 2 ** 40 }), { maxLength: 3000 }),
  fc.record({
    start: fc.integer({ min: 0, max: 2 ** 33 }),
    length: fc.integer({ min: 1, max: 5000 }),
    stride: fc.integer({ min: 1, max: 300 }),
  }).map(({ start, length, stride }) => Array.from({ length }, (_, i) => start + i * stride)),
);

Deno.test("remap table: every remapped block is found with its slot, and no other block is", () => {
  fc.assert(
    fc.property(remappedBlocks, fc.integer({ min: 0, max: 2 ** 33 }), (blocks, probe) => {
      const table = new RemapTable();
      blocks.forEach((block, slot) =>
        table.insert(block, { spareIndex: slot % 8, slotIndex: slot })
      );
      assertEquals(table.size, blocks.length);
      const reader = new RemapTableReader(table.arrays);
      blocks.forEach((block, slot) => {
        assertEquals(table.lookup(block), { spareIndex: slot % 8, slotIndex: slot });
        const bucket = reader.bucketOf(block);
        assert(bucket >= 0, `block ${block} found by the reader`);
        assertEquals([reader.spareAt(bucket), reader.slotAt(bucket)], [slot % 8, slot]);
        assert(!reader.extentIsClear(block), `block ${block}'s extent is marked`);
      });
      const remapped = new Set(blocks);
      for (const neighbour of [probe, probe + 1, ...blocks.slice(0, 50).map((b) => b + 1)]) {
        if (remapped.has(neighbour)) continue;
        assertEquals(table.lookup(neighbour), undefined, `block ${neighbour} is not remapped`);
        assertEquals(reader.bucketOf(neighbour), -1);
      }
    }),
    { numRuns: 60 },
  );
});

Deno.test("remap table: a run of a million neighbouring blocks stays at most half full and is found", () => {
  const table = new RemapTable();
  const count = 1_000_000;
  for (let block = 0; block < count; block++) {
    table.insert(block + 2 ** 32, { spareIndex: 0, slotIndex: block });
  }
  assert(table.size <= table.arrays.keys.length / 2, "load factor at most one half");
  for (let block = 0; block < count; block += 997) {
    assertEquals(table.lookup(block + 2 ** 32)?.slotIndex, block);
  }
  assertEquals(table.lookup(2 ** 32 - 1), undefined);
  assertEquals(table.lookup(2 ** 32 + count), undefined);
});

Deno.test("remap table: on a disk the summary covers, exactly the extents holding a remap are not clear", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 2 ** 30 }),
      fc.uniqueArray(fc.nat(), { maxLength: 400 }),
      (blockCount, picks) => {
        const blocks = picks.map((pick) => pick % blockCount);
        const table = new RemapTable(0, blockCount);
        new Set(blocks).forEach((block, slot) =>
          table.insert(block, { spareIndex: 0, slotIndex: slot })
        );
        const reader = new RemapTableReader(table.arrays);
        const marked = new Set(blocks.map((block) => Math.floor(block / SUMMARY_EXTENT_BLOCKS)));
        const extents = Math.ceil(blockCount / SUMMARY_EXTENT_BLOCKS);
        const probes = [0, extents - 1, ...[...marked].flatMap((e) => [e - 1, e, e + 1])]
          .filter((extent) => extent >= 0 && extent < extents);
        for (const extent of probes) {
          const edge = Math.min(
            extent * SUMMARY_EXTENT_BLOCKS + SUMMARY_EXTENT_BLOCKS - 1,
            blockCount - 1,
          );
          for (const block of [extent * SUMMARY_EXTENT_BLOCKS, edge]) {
            assertEquals(
              reader.extentIsClear(block),
              !marked.has(extent),
              `extent ${extent}, block ${block}`,
            );
          }
        }
      },
    ),
    { numRuns: 100 },
  );
});

Deno.test("remap table: the summary of a 16 TiB disk (2^32 blocks of 4 KiB) takes 8 MiB", () => {
  const table = new RemapTable(0, 2 ** 32);
  assertEquals(table.arrays.summary.byteLength, 8 * 2 ** 20);
  table.insert(2 ** 32 - 1, { spareIndex: 0, slotIndex: 0 });
  const reader = new RemapTableReader(table.arrays);
  assert(!reader.extentIsClear(2 ** 32 - SUMMARY_EXTENT_BLOCKS));
  assert(reader.extentIsClear(2 ** 32 - SUMMARY_EXTENT_BLOCKS - 1));
});

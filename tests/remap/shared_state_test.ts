/** The engine's state as workers see it: the cross-thread gate, table handover and pending list. */

import assert from "node:assert/strict";
import { RemapTable } from "../../mod/remap/remap_table.ts";
import { EngineStatePublisher, EngineStateReader } from "../../mod/remap/shared_state.ts";

function pair(table = new RemapTable()) {
  const publisher = new EngineStatePublisher(table);
  return { table, publisher, reader: new EngineStateReader(publisher.buffers) };
}

Deno.test("shared state: a closed gate keeps requests out until it reopens", async () => {
  const { publisher, reader } = pair();
  await publisher.close();
  assert.equal(reader.tryEnter(), false);
  let opened = 0;
  publisher.onOpen(() => opened++);
  publisher.open();
  assert.equal(opened, 1);
  assert.equal(reader.tryEnter(), true);
  reader.leave();
});

Deno.test("shared state: closing waits until every request inside has left", async () => {
  const { publisher, reader } = pair();
  assert.equal(reader.tryEnter(), true);
  assert.equal(reader.tryEnter(), true);
  let closed = false;
  const closing = publisher.close().then(() => closed = true);
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(closed, false, "two requests are still inside");
  reader.leave();
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(closed, false, "one request is still inside");
  reader.leave();
  await closing;
  assert.equal(closed, true);
  publisher.open();
});

Deno.test("shared state: after the table grows, a reader stays out until it adopts the new arrays", async () => {
  const { table, publisher, reader } = pair();
  await publisher.close();
  for (let block = 0; block < 600; block++) {
    table.insert(block * 7, { spareIndex: 0, slotIndex: block });
  }
  publisher.open();
  assert.equal(reader.tryEnter(), false, "old arrays");
  reader.adopt(publisher.buffers);
  assert.equal(reader.tryEnter(), true);
  const bucket = reader.table.bucketOf(599 * 7);
  assert.equal(reader.table.slotAt(bucket), 599);
  assert.equal(reader.table.bucketOf(1), -1);
  assert.equal(reader.remapCount, 600);
  reader.leave();
});

Deno.test("shared state: arrays that were replaced again before they arrived keep the reader out", async () => {
  const { table, publisher, reader } = pair();
  const grow = async (from: number) => {
    await publisher.close();
    for (let block = from; block < from * 2; block++) {
      table.insert(block, { spareIndex: 0, slotIndex: block });
    }
    publisher.open();
  };
  await grow(512); // the first grow: generation 1
  const first = publisher.buffers;
  await grow(1024); // a second grow before the worker took the first handover
  reader.adopt(first);
  assert.equal(reader.tryEnter(), false, "generation-1 arrays miss the blocks inserted since");
  reader.adopt(publisher.buffers);
  assert.equal(reader.tryEnter(), true);
  assert.notEqual(reader.table.bucketOf(2047), -1);
  reader.leave();
});

Deno.test("shared state: the pending list answers range queries", () => {
  const { publisher, reader } = pair();
  assert.equal(reader.anyPending(0, 1_000_000), false);
  publisher.publishPending(new Set([9, 5, 1_000_000]));
  assert.equal(reader.anyPending(5, 5), true);
  assert.equal(reader.anyPending(6, 8), false);
  assert.equal(reader.anyPending(0, 4), false);
  assert.equal(reader.anyPending(0, 100), true);
  assert.equal(reader.anyPending(10, 999_999), false);
  assert.equal(reader.anyPending(999_999, 2_000_000), true);
  publisher.publishPending([]);
  assert.equal(reader.anyPending(0, 2_000_000), false);
});

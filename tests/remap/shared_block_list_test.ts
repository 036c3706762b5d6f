/** The shared sorted block list behind the pending list and the fault layer's bad blocks. */

import assert from "node:assert/strict";
import { SharedBlockListReader, SharedBlockListWriter } from "../../mod/shared_block_list.ts";

Deno.test("shared block list: a range is listed exactly when a published block lies in it", () => {
  const writer = new SharedBlockListWriter(8);
  const reader = new SharedBlockListReader(writer.buffers);
  writer.publish(new Set([40, 10, 20]));
  const listed = (first: number, last: number) => reader.anyBetween(first, last);
  for (let first = 0; first < 50; first++) {
    for (let last = first; last < 50; last++) {
      const expected = [10, 20, 40].some((block) => first <= block && block <= last);
      assert.equal(listed(first, last), expected, `[${first}, ${last}]`);
    }
  }
});

Deno.test("shared block list: more blocks than it holds, or everything, lists every range", () => {
  const writer = new SharedBlockListWriter(2);
  const reader = new SharedBlockListReader(writer.buffers);
  writer.publish([1, 2, 3]);
  assert.equal(reader.everything, true);
  assert.equal(reader.anyBetween(100, 100), true, "too many to list: everything counts");
  writer.publish([1]);
  assert.equal(reader.everything, false);
  assert.equal(reader.anyBetween(100, 100), false);
  writer.publishEverything();
  assert.equal(reader.anyBetween(100, 100), true);
  writer.publish([]);
  assert.equal(reader.anyBetween(0, 1e12), false);
});

Deno.test("shared block list: a reader on another thread sees what was published", async () => {
  const writer = new SharedBlockListWriter(4);
  writer.publish([7]);
  const source = `
    import { SharedBlockListReader } from "${new URL(
    "../../mod/shared_block_list.ts",
    import.meta.url,
  )}";
    self.onmessage = (event) => {
      const reader = new SharedBlockListReader(event.data);
      self.postMessage([reader.anyBetween(7, 7), reader.anyBetween(0, 6)]);
    };`;
  const worker = new Worker(
    URL.createObjectURL(new Blob([source], { type: "application/javascript" })),
    { type: "module" },
  );
  const answer = new Promise((resolve) => worker.onmessage = (event) => resolve(event.data));
  worker.postMessage(writer.buffers);
  assert.deepEqual(await answer, [true, false]);
  worker.terminate();
});

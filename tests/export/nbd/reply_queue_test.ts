/**
 * `ReplyQueue`: replies are written whole, never interleaved, small ones
 * batched, large ones alone, and a dead stream drops the rest.
 *
 * Method: a recording writer whose writes can be held open, to see what the
 * queue does while a write is under way.
 */

import assert from "node:assert/strict";
import type { ByteWriter } from "../../../mod/export/nbd/byte_stream.ts";
import {
  REPLY_BATCH_BYTES_MAX,
  REPLY_COPY_BYTES_MAX,
  ReplyQueue,
} from "../../../mod/export/nbd/reply_queue.ts";
import { gate } from "./_harness.ts";

function recorder(): ByteWriter & {
  writes: Uint8Array[];
  hold?: Promise<void>;
  active: number;
  activeMax: number;
} {
  const writer = {
    writes: [] as Uint8Array[],
    hold: undefined as Promise<void> | undefined,
    active: 0,
    activeMax: 0,
    async write(data: Uint8Array): Promise<void> {
      writer.active++;
      writer.activeMax = Math.max(writer.activeMax, writer.active);
      writer.writes.push(data);
      await writer.hold;
      writer.active--;
    },
  };
  return writer;
}

function reply(lengthBytes: number, fill: number): Uint8Array {
  return new Uint8Array(lengthBytes).fill(fill);
}

Deno.test("ReplyQueue writes replies queued in one turn as one write, in order", async () => {
  const writer = recorder();
  const queue = new ReplyQueue(writer);
  const results = await Promise.all([1, 2, 3, 4].map((fill) => queue.send(reply(16, fill))));
  assert.deepEqual(results, [true, true, true, true]);
  assert.equal(writer.writes.length, 1);
  assert.deepEqual(
    writer.writes[0],
    new Uint8Array([...reply(16, 1), ...reply(16, 2), ...reply(16, 3), ...reply(16, 4)]),
  );
});

Deno.test("ReplyQueue writes a large reply on its own and never runs two writes at once", async () => {
  const writer = recorder();
  const held = gate();
  writer.hold = held.promise;
  const queue = new ReplyQueue(writer);
  const big = reply(REPLY_COPY_BYTES_MAX, 9);
  const sent = [queue.send(reply(16, 1)), queue.send(big), queue.send(reply(16, 2))];
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(writer.writes.length, 1, "the second write waits for the first");
  sent.push(queue.send(reply(16, 3)));
  held.open();
  await Promise.all(sent);
  assert.equal(writer.activeMax, 1);
  assert.deepEqual(writer.writes.map((write) => write.length), [16, REPLY_COPY_BYTES_MAX, 32]);
  assert.equal(writer.writes[1]!.buffer, big.buffer, "the large reply was not copied");
});

Deno.test("ReplyQueue caps a batch at REPLY_BATCH_BYTES_MAX", async () => {
  const writer = recorder();
  const queue = new ReplyQueue(writer);
  const pieceBytes = REPLY_COPY_BYTES_MAX - 1;
  const count = Math.ceil((2 * REPLY_BATCH_BYTES_MAX) / pieceBytes);
  await Promise.all(
    Array.from({ length: count }, (_, index) => queue.send(reply(pieceBytes, index))),
  );
  for (const write of writer.writes) assert.ok(write.length <= REPLY_BATCH_BYTES_MAX);
  assert.equal(writer.writes.reduce((sum, write) => sum + write.length, 0), count * pieceBytes);
});

Deno.test("ReplyQueue reports false for every reply once a write fails, and keeps the error", async () => {
  const failure = new Deno.errors.BrokenPipe("peer gone");
  const queue = new ReplyQueue({ write: () => Promise.reject(failure) });
  assert.deepEqual(await Promise.all([queue.send(reply(16, 1)), queue.send(reply(16, 2))]), [
    false,
    false,
  ]);
  assert.equal(await queue.send(reply(16, 3)), false);
  assert.equal(queue.failed, true);
  assert.equal(queue.failure, failure);
});

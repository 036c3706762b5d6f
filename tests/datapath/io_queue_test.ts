/**
 * The data path's two disk I/O queues, `AioBatch` (Linux AIO) and
 * `UringBatch` (io_uring), keep the same contract (`datapath/io_queue.ts`).
 *
 * Goal: every submitted request completes once with its bytes (or -errno),
 * data lands where asked (plain, vectored, RWF_DSYNC writes; plain and
 * vectored reads; fdatasync), completions that arrive after submit signal
 * the eventfd, a lone request runs synchronously, `reapAll` waits.
 * Method: each queue on a file opened O_DIRECT on the host's disk
 * (/var/tmp), 32 writes of distinct patterns in one batch, then reads
 * back, compared byte for byte.
 */

import assert from "node:assert/strict";
import { alignedBytes } from "../../mod/aligned_bytes.ts";
import { AioBatch } from "../../mod/datapath/aio_batch.ts";
import type { IoQueue, IoQueueOpener } from "../../mod/datapath/io_queue.ts";
import { UringBatch } from "../../mod/datapath/uring_batch.ts";
import { AIO_OPCODE } from "../../mod/sys/aio.ts";
import { OPEN_FLAGS, openPath, RWF_DSYNC } from "../../mod/sys/libc.ts";
import {
  closeDescriptor,
  createEventFd,
  drainEventFd,
  pollDescriptors,
  POLLIN,
} from "../../mod/sys/syscalls.ts";

const BLOCK = 4096;
const COUNT = 32;

function pattern(index: number): Uint8Array {
  const bytes = alignedBytes(BLOCK);
  for (let i = 0; i < BLOCK; i++) bytes[i] = (index * 31 + i * 7) & 0xff;
  return bytes;
}

/** Waits (poll on the eventfd) and reaps until nothing is in flight; returns the eventfd's count. */
function reapByEventFd(
  queue: IoQueue<number>,
  eventFd: number,
  results: Map<number, number>,
): number {
  const complete = (owner: number, result: number) => {
    assert.ok(!results.has(owner), `request ${owner} completes once`);
    results.set(owner, result);
  };
  const pollFd = new Uint8Array(8);
  const view = new DataView(pollFd.buffer);
  let wakes = 0;
  queue.reap(complete);
  while (queue.inflight > 0) {
    view.setInt32(0, eventFd, true);
    view.setInt16(4, POLLIN, true);
    view.setInt16(6, 0, true);
    assert.equal(pollDescriptors(pollFd, 1, 10_000), 1, "the eventfd signals completions");
    wakes += drainEventFd(eventFd);
    queue.reap(complete);
  }
  // Completions reaped before any poll signalled it too.
  return wakes + drainEventFd(eventFd);
}

for (
  const [name, open] of [
    ["AioBatch", AioBatch.open],
    ["UringBatch", UringBatch.open],
  ] as [string, IoQueueOpener][]
) {
  Deno.test(`${name}: batches, vectored and lone requests land, complete once, and wake the eventfd`, async () => {
    const path = `/var/tmp/dm-remap-io-queue-${name}-${Deno.pid}.img`;
    await Deno.writeFile(path, new Uint8Array(0));
    await Deno.truncate(path, (COUNT + 8) * BLOCK);
    const fd = openPath(path, OPEN_FLAGS.O_RDWR | OPEN_FLAGS.O_DIRECT);
    assert.ok(fd >= 0, `open: ${fd}`);
    const eventFd = createEventFd();
    const queue = open<number>(eventFd);
    assert.ok(typeof queue !== "number", `open the queue: ${queue}`);
    try {
      const results = new Map<number, number>();
      // A batch: 32 writes (every 4th with RWF_DSYNC), one vectored write of 2 blocks, a sync.
      for (let i = 0; i < COUNT; i++) {
        queue.prepare({
          opcode: AIO_OPCODE.PWRITE,
          fd,
          buffer: pattern(i),
          offsetBytes: i * BLOCK,
          rwFlags: i % 4 === 0 ? RWF_DSYNC : 0,
        }, i);
      }
      const pieces = [pattern(100), pattern(101)];
      queue.prepare({
        opcode: AIO_OPCODE.PWRITE,
        fd,
        buffer: pieces[0]!,
        segments: pieces,
        offsetBytes: COUNT * BLOCK,
        rwFlags: 0,
      }, 100);
      queue.prepare({
        opcode: AIO_OPCODE.FDSYNC,
        fd,
        buffer: new Uint8Array(0),
        offsetBytes: 0,
        rwFlags: 0,
      }, 101);
      assert.equal(queue.free, 256 - COUNT - 2);
      queue.submit();
      assert.equal(queue.inflight, COUNT + 2);
      const wakes = reapByEventFd(queue, eventFd, results);
      assert.ok(wakes > 0, "completions after submit signalled the eventfd");
      for (let i = 0; i < COUNT; i++) assert.equal(results.get(i), BLOCK, `write ${i}`);
      assert.equal(results.get(100), 2 * BLOCK, "the vectored write");
      assert.equal(results.get(101), 0, "the sync");

      // Reads back: a batch of plain reads and one vectored read, waited for with reapAll.
      const readBuffers = Array.from({ length: COUNT }, () => alignedBytes(BLOCK));
      readBuffers.forEach((buffer, i) =>
        queue.prepare(
          { opcode: AIO_OPCODE.PREAD, fd, buffer, offsetBytes: i * BLOCK, rwFlags: 0 },
          i,
        )
      );
      const readPieces = [alignedBytes(BLOCK), alignedBytes(BLOCK)];
      queue.prepare({
        opcode: AIO_OPCODE.PREAD,
        fd,
        buffer: readPieces[0]!,
        segments: readPieces,
        offsetBytes: COUNT * BLOCK,
        rwFlags: 0,
      }, 100);
      queue.submit();
      const reads = new Map<number, number>();
      queue.reapAll((owner, result) => reads.set(owner, result));
      assert.equal(queue.inflight, 0);
      for (let i = 0; i < COUNT; i++) {
        assert.equal(reads.get(i), BLOCK);
        assert.deepEqual(readBuffers[i], pattern(i), `block ${i} reads back as written`);
      }
      assert.equal(reads.get(100), 2 * BLOCK);
      assert.deepEqual(readPieces, [pattern(100), pattern(101)], "the vectored blocks");

      // A lone request with nothing in flight: done at submit, completed at the next reap.
      const lone = alignedBytes(BLOCK);
      queue.prepare({
        opcode: AIO_OPCODE.PREAD,
        fd,
        buffer: lone,
        offsetBytes: 5 * BLOCK,
        rwFlags: 0,
      }, 7);
      queue.submit();
      assert.equal(queue.inflight, 0, "a lone request is not in flight");
      const loneResults = new Map<number, number>();
      queue.reap((owner, result) => loneResults.set(owner, result));
      assert.deepEqual([...loneResults], [[7, BLOCK]]);
      assert.deepEqual(lone, pattern(5));
      // A failing request completes with -errno: a read past nothing on a bad descriptor.
      queue.prepare({
        opcode: AIO_OPCODE.PREAD,
        fd: 9999,
        buffer: lone,
        offsetBytes: 0,
        rwFlags: 0,
      }, 1);
      queue.prepare({
        opcode: AIO_OPCODE.PREAD,
        fd,
        buffer: alignedBytes(BLOCK),
        offsetBytes: 0,
        rwFlags: 0,
      }, 2);
      queue.submit();
      const failing = new Map<number, number>();
      queue.reapAll((owner, result) => failing.set(owner, result));
      assert.equal(failing.get(1), -9, "EBADF");
      assert.equal(failing.get(2), BLOCK);
      assert.equal(queue.free, 256);
    } finally {
      queue.close();
      closeDescriptor(eventFd);
      closeDescriptor(fd);
      await Deno.remove(path);
    }
  });
}

/**
 * Serialised, batched reply writing for one connection.
 *
 * Requests complete out of order and concurrently, but their replies share one
 * stream: two replies must never interleave. Every reply therefore goes through
 * one queue, written by one writer loop. Replies that become ready in the same
 * turn of the event loop (a burst of pipelined 4 KiB writes to a memory device
 * completes in one turn) are coalesced into one socket write: the queue waits
 * for `setImmediate` (the end of the current macrotask) before writing, and
 * while a write is under way, new replies gather for the next one. Large
 * replies (read data) are written on their own, so they are never copied.
 *
 * `setImmediate` and not `setTimeout(0)`: Deno clamps timers to about a
 * millisecond, which would add that much latency to every reply.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { assert } from "../../assert.ts";
import type { ByteWriter } from "./byte_stream.ts";
import { concatBytes } from "./protocol.ts";
import { REPLY_BATCH_BYTES_MAX, REPLY_COPY_BYTES_MAX } from "../../constants.ts";
export { REPLY_BATCH_BYTES_MAX, REPLY_COPY_BYTES_MAX };

assert(REPLY_COPY_BYTES_MAX <= REPLY_BATCH_BYTES_MAX, "a small reply fits a batch");

interface QueuedReply {
  bytes: Uint8Array;
  settle: (written: boolean) => void;
}

/**
 * Writes whole replies to a stream, one at a time, batching small ones.
 *
 * @example
 * ```ts
 * import { ReplyQueue } from "./reply_queue.ts";
 * const written: Uint8Array[] = [];
 * const queue = new ReplyQueue({ write: (data) => { written.push(data); return Promise.resolve(); } });
 * await Promise.all([queue.send(new Uint8Array(16)), queue.send(new Uint8Array(16))]);
 * console.assert(written.length === 1 && written[0]!.length === 32);
 * ```
 */
export class ReplyQueue {
  #writer: ByteWriter;
  #pending: QueuedReply[] = [];
  #scheduled = false;
  #writing = false;
  #failed = false;
  #failure: unknown = undefined;

  /** @param writer Where replies go; only this queue may write to it. */
  constructor(writer: ByteWriter) {
    this.#writer = writer;
  }

  /** The error of the write that failed, once one did. */
  get failure(): unknown {
    return this.#failure;
  }

  /** Whether a write failed: the connection is gone and later replies are dropped. */
  get failed(): boolean {
    return this.#failed;
  }

  /**
   * Queues one complete reply.
   *
   * @param bytes The whole reply; not modified, and not to be modified by the caller afterwards.
   * @returns True once written; false if the stream failed first (see {@link failure}).
   */
  send(bytes: Uint8Array): Promise<boolean> {
    if (this.#failed) return Promise.resolve(false);
    return new Promise((settle) => {
      this.#pending.push({ bytes, settle });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#writing) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.#writeAll();
    });
  }

  async #writeAll(): Promise<void> {
    assert(!this.#writing, "one writer loop per connection");
    this.#writing = true;
    try {
      while (this.#pending.length > 0 && !this.#failed) {
        const batch = this.#takeBatch();
        const bytes = batch.length === 1
          ? batch[0]!.bytes
          : concatBytes(batch.map((reply) => reply.bytes));
        try {
          await this.#writer.write(bytes);
        } catch (error) {
          this.#fail(error, batch);
          return;
        }
        for (const reply of batch) reply.settle(true);
      }
    } finally {
      this.#writing = false;
    }
  }

  /** Takes the next reply, plus following small replies up to the batch limit. */
  #takeBatch(): QueuedReply[] {
    const first = this.#pending.shift();
    assert(first !== undefined, "a batch starts with a queued reply");
    const batch = [first];
    if (first.bytes.length >= REPLY_COPY_BYTES_MAX) return batch;
    let batchBytes = first.bytes.length;
    while (this.#pending.length > 0) {
      const next = this.#pending[0]!;
      if (next.bytes.length >= REPLY_COPY_BYTES_MAX) break;
      if (batchBytes + next.bytes.length > REPLY_BATCH_BYTES_MAX) break;
      batch.push(this.#pending.shift()!);
      batchBytes += next.bytes.length;
    }
    return batch;
  }

  #fail(error: unknown, batch: QueuedReply[]): void {
    this.#failed = true;
    this.#failure = error;
    const dropped = [...batch, ...this.#pending];
    this.#pending = [];
    for (const reply of dropped) reply.settle(false);
  }
}

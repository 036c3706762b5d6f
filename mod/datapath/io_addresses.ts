/**
 * The memory addresses an I/O queue hands the kernel: each slot's
 * `struct iovec` array for vectored requests, and buffers' addresses from a
 * cache. Both queues (`AioBatch`, `UringBatch`) use one of these per queue.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { AIO_SLOTS_MAX } from "../constants.ts";
import { addressOf } from "../sys/syscalls.ts";

/** Pieces of memory one vectored request takes at most (far below the kernel's IOV_MAX, 1024). */
export const VECTOR_SEGMENTS_MAX = 64;

/** Iovec arrays for {@link AIO_SLOTS_MAX} slots and a cache of buffers' addresses. */
export class IoAddresses {
  /** Each slot's `struct iovec` array; the kernel reads it when the request is issued. */
  readonly #iovecs = new BigUint64Array(AIO_SLOTS_MAX * VECTOR_SEGMENTS_MAX * 2);
  readonly #iovecBase = addressOf(new Uint8Array(this.#iovecs.buffer));
  readonly #bases = new WeakMap<ArrayBufferLike, bigint>();

  /** Fills the slot's iovec array with the segments; returns its address. */
  iovecsOf(slot: number, segments: readonly Uint8Array[]): bigint {
    assert(
      segments.length > 1 && segments.length <= VECTOR_SEGMENTS_MAX,
      "a vectored request has 2 to VECTOR_SEGMENTS_MAX segments",
    );
    const at = slot * VECTOR_SEGMENTS_MAX * 2;
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i]!;
      this.#iovecs[at + 2 * i] = this.addressOf(segment);
      this.#iovecs[at + 2 * i + 1] = BigInt(segment.length);
    }
    return this.#iovecBase + BigInt(at * 8);
  }

  /**
   * A buffer's address from its ArrayBuffer's, cached: asking the runtime
   * costs about 210 ns, the cache about 20 (bench/device_bench.ts). Off-heap backing stores
   * never move, so the cached base stays right for the buffer's lifetime.
   */
  addressOf(buffer: Uint8Array): bigint {
    let base = this.#bases.get(buffer.buffer);
    if (base === undefined) {
      base = addressOf(buffer) - BigInt(buffer.byteOffset);
      this.#bases.set(buffer.buffer, base);
    }
    return base + BigInt(buffer.byteOffset);
  }
}

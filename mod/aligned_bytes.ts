/**
 * Byte buffers aligned for O_DIRECT, so data can go between the socket and the
 * disk without a bounce copy.
 *
 * @example
 * ```ts
 * import { alignedBytes } from "./aligned_bytes.ts";
 * // A read reply: a 16-byte header, then 4096 bytes of data starting on a 4 KiB boundary.
 * const reply = alignedBytes(16 + 4096, { alignedOffset: 16 });
 * const data = reply.subarray(16);
 * ```
 *
 * @module
 */

import { assert } from "./assert.ts";
import {
  BUFFER_POOL_SHAPE_BYTES_MAX,
  BUFFER_POOL_SHAPES_MAX,
  DIRECT_ALIGN_BYTES,
  NBD_INFLIGHT_MAX,
} from "./constants.ts";

/** Options for {@link alignedBytes}. */
export interface AlignedBytesOptions {
  /** The byte of the result that must fall on the boundary. @default 0 */
  alignedOffset?: number;
}

/** Whether a buffer's first byte falls on a {@link DIRECT_ALIGN_BYTES} boundary. */
export function isAligned(buffer: Uint8Array): boolean {
  return addressOf(buffer) % DIRECT_ALIGN_BYTES === 0;
}

/**
 * A zeroed buffer of `lengthBytes` whose byte `alignedOffset` lies on a
 * {@link DIRECT_ALIGN_BYTES} boundary.
 */
export function alignedBytes(lengthBytes: number, options: AlignedBytesOptions = {}): Uint8Array {
  const alignedOffset = options.alignedOffset ?? 0;
  assert(
    alignedOffset >= 0 && alignedOffset <= lengthBytes,
    "the aligned byte is inside the buffer",
  );
  const raw = new Uint8Array(lengthBytes + DIRECT_ALIGN_BYTES);
  const misalignment = (addressOf(raw) + alignedOffset) % DIRECT_ALIGN_BYTES;
  const start = misalignment === 0 ? 0 : DIRECT_ALIGN_BYTES - misalignment;
  return raw.subarray(start, start + lengthBytes);
}

/** A buffer's address; exact below 2^53, which every user-space address is. */
function addressOf(buffer: Uint8Array): number {
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
}

/**
 * A bounded free list of aligned buffers of one shape, so the request path
 * reuses memory instead of handing the garbage collector one buffer per
 * request. Buffers come back dirty: callers overwrite them whole.
 *
 * @example
 * ```ts
 * import { AlignedBufferPool } from "./aligned_bytes.ts";
 * const pool = new AlignedBufferPool({ lengthBytes: 16 + 4096, alignedOffset: 16, capacity: 64 });
 * const reply = pool.take();
 * pool.give(reply);
 * ```
 */
export class AlignedBufferPool {
  readonly lengthBytes: number;
  readonly #alignedOffset: number;
  readonly #capacity: number;
  readonly #free: Uint8Array[] = [];
  /** Buffers this pool made, so a foreign buffer is never taken in. */
  readonly #own = new WeakSet<Uint8Array>();

  constructor(options: { lengthBytes: number; alignedOffset: number; capacity: number }) {
    assert(options.capacity > 0, "a pool holds at least one buffer");
    this.lengthBytes = options.lengthBytes;
    this.#alignedOffset = options.alignedOffset;
    this.#capacity = options.capacity;
  }

  /** A buffer of the pool's shape, reused when one is free. */
  take(): Uint8Array {
    const reused = this.#free.pop();
    if (reused) return reused;
    const fresh = alignedBytes(this.lengthBytes, { alignedOffset: this.#alignedOffset });
    this.#own.add(fresh);
    return fresh;
  }

  /** Returns a buffer the caller no longer uses; kept if the pool has room. */
  give(buffer: Uint8Array): void {
    if (!this.#own.has(buffer) || this.#free.length >= this.#capacity) return;
    assert(!this.#free.includes(buffer), "a buffer is given back once");
    this.#free.push(buffer);
  }
}

/**
 * Aligned buffers by shape, for a connection's read replies and write
 * payloads: a connection sees few shapes (fio's 4 KiB, the kernel's 128 KiB,
 * 1 MiB copies), so steady traffic allocates nothing. Each shape keeps at most
 * {@link BUFFER_POOL_SHAPE_BYTES_MAX} bytes; shapes beyond the first
 * {@link BUFFER_POOL_SHAPES_MAX} are allocated per request.
 *
 * @example
 * ```ts
 * import { ShapedBufferPools } from "./aligned_bytes.ts";
 * const pools = new ShapedBufferPools();
 * const reply = pools.take(16, 4096); // 16 header bytes, then 4096 aligned data bytes
 * pools.give(reply, 16); // once the socket has taken it
 * ```
 */
export class ShapedBufferPools {
  #pools = new Map<number, AlignedBufferPool>();

  /** A buffer of `prefixBytes + dataBytes` whose byte `prefixBytes` is aligned. */
  take(prefixBytes: number, dataBytes: number): Uint8Array {
    const lengthBytes = prefixBytes + dataBytes;
    const key = shapeKey(lengthBytes, prefixBytes);
    let pool = this.#pools.get(key);
    if (!pool) {
      const capacity = Math.min(
        NBD_INFLIGHT_MAX,
        Math.floor(BUFFER_POOL_SHAPE_BYTES_MAX / Math.max(1, lengthBytes)),
      );
      if (this.#pools.size >= BUFFER_POOL_SHAPES_MAX || capacity === 0) {
        return alignedBytes(lengthBytes, { alignedOffset: prefixBytes });
      }
      pool = new AlignedBufferPool({ lengthBytes, alignedOffset: prefixBytes, capacity });
      this.#pools.set(key, pool);
    }
    return pool.take();
  }

  /** Takes back a buffer of this shape once used; buffers not from a pool are left to the collector. */
  give(buffer: Uint8Array, prefixBytes: number): void {
    this.#pools.get(shapeKey(buffer.length, prefixBytes))?.give(buffer);
  }
}

/** Prefixes are reply headers (under 64 bytes), so this key is unique per shape. */
function shapeKey(lengthBytes: number, prefixBytes: number): number {
  return lengthBytes * 64 + prefixBytes;
}

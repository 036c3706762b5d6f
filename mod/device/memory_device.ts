/**
 * An in-memory `Device`, for tests and simulation.
 *
 * It keeps a second image of what was flushed, so a simulated crash
 * ({@link MemoryDevice.crash}) drops every write since the last flush, the way
 * a disk cache loses unflushed data at power loss.
 *
 * @example
 * ```ts
 * import { MemoryDevice } from "./memory_device.ts";
 * const device = new MemoryDevice("mem0", 1 << 20);
 * await device.write(new Uint8Array(512).fill(1), 4096);
 * await device.flush();
 * ```
 *
 * @module
 */

import { assert } from "../assert.ts";
import type { ByteRange, Device, WriteOptions, WriteZeroesOptions } from "./device.ts";
import { isRangeInside } from "./device.ts";
import { DeviceIoError } from "../errors.ts";

/** A RAM-backed device with crash simulation. */
export class MemoryDevice implements Device {
  readonly name: string;
  readonly sizeBytes: number;
  #volatile: Uint8Array;
  #durable: Uint8Array;
  /** Ranges changed since the last flush, so a flush costs what was written, not the device size. */
  #dirty: ByteRange[] = [];
  #closed = false;
  /** After {@link crash}: every request fails as a disk without power would. */
  #poweredOff = false;
  /** Counts of operations, for tests that check what the layers above did. */
  readonly counts = { reads: 0, writes: 0, flushes: 0, discards: 0, zeroes: 0 };

  constructor(name: string, sizeBytes: number) {
    assert(sizeBytes % 512 === 0, "memory device size is a multiple of 512");
    this.name = name;
    this.sizeBytes = sizeBytes;
    this.#volatile = new Uint8Array(sizeBytes);
    this.#durable = new Uint8Array(sizeBytes);
  }

  read(buffer: Uint8Array, offsetBytes: number): Promise<void> {
    this.#check({ offsetBytes, lengthBytes: buffer.length });
    this.counts.reads++;
    buffer.set(this.#volatile.subarray(offsetBytes, offsetBytes + buffer.length));
    return Promise.resolve();
  }

  write(data: Uint8Array, offsetBytes: number, options: WriteOptions = {}): Promise<void> {
    this.#check({ offsetBytes, lengthBytes: data.length });
    this.counts.writes++;
    this.#volatile.set(data, offsetBytes);
    if (options.fua) this.#durable.set(data, offsetBytes);
    else this.#dirty.push({ offsetBytes, lengthBytes: data.length });
    return Promise.resolve();
  }

  flush(): Promise<void> {
    this.#check({ offsetBytes: 0, lengthBytes: 0 });
    this.counts.flushes++;
    for (const { offsetBytes, lengthBytes } of this.#dirty) {
      this.#durable.set(
        this.#volatile.subarray(offsetBytes, offsetBytes + lengthBytes),
        offsetBytes,
      );
    }
    this.#dirty = [];
    return Promise.resolve();
  }

  discard(range: ByteRange): Promise<void> {
    this.#check(range);
    this.counts.discards++;
    this.#volatile.fill(0, range.offsetBytes, range.offsetBytes + range.lengthBytes);
    this.#dirty.push(range);
    return Promise.resolve();
  }

  writeZeroes(range: ByteRange, options: WriteZeroesOptions = {}): Promise<void> {
    this.#check(range);
    this.counts.zeroes++;
    const end = range.offsetBytes + range.lengthBytes;
    this.#volatile.fill(0, range.offsetBytes, end);
    if (options.fua) this.#durable.fill(0, range.offsetBytes, end);
    else this.#dirty.push(range);
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  /**
   * What a power cut now would leave, as a new device, while this one keeps
   * running: a crash image taken in the middle of work (tests take several).
   */
  durableImage(): MemoryDevice {
    const image = new MemoryDevice(this.name, this.sizeBytes);
    image.#volatile.set(this.#durable);
    image.#durable.set(this.#durable);
    return image;
  }

  /**
   * Simulates power loss: everything written since the last flush is lost.
   * Returns a new open device holding the durable image; this one fails every
   * later request with EIO, so work still running above it cannot reach the survivor.
   */
  crash(): MemoryDevice {
    const survivor = this.durableImage();
    this.#poweredOff = true;
    return survivor;
  }

  /** The bytes as they are now, for tests (not a copy). */
  peek(range: ByteRange): Uint8Array {
    this.#check(range);
    return this.#volatile.subarray(range.offsetBytes, range.offsetBytes + range.lengthBytes);
  }

  #check(range: ByteRange): void {
    if (this.#poweredOff) {
      throw new DeviceIoError("reach", {
        device: this.name,
        ...range,
        code: "EIO",
        cause: "powered off by crash()",
      });
    }
    assert(!this.#closed, `memory device "${this.name}" is open`);
    assert(isRangeInside(this, range), `range inside memory device "${this.name}"`);
  }
}

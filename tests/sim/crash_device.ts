/**
 * A memory device that can lose power after any individual sector write.
 *
 * Goal: prove that every metadata update is crash-safe at every point.
 * Method: give the device a budget of sector writes; the write that exceeds it
 * stores only the sectors within budget and throws {@link PowerCut}, as does
 * every later call. {@link CrashDevice.imageAfterCrash} then builds what a
 * disk could hold after the cut: everything flushed, plus any subset of the
 * sectors written since the last flush (a disk cache persists them in any
 * order). Tests try "none", "all" and seeded random subsets.
 *
 * @module
 */

import { MemoryDevice } from "../../mod/device/memory_device.ts";
import type { ByteRange, Device, WriteOptions } from "../../mod/device/device.ts";
import { SECTOR_BYTES } from "../../mod/constants.ts";
import { seededRandom } from "../../mod/fault/fault_model.ts";

/** Thrown by every call after the simulated power cut. */
export class PowerCut extends Error {
  override name = "PowerCut";
}

/** Which unflushed sectors survive the cut. */
export type SurvivalPolicy = "none" | "all" | { seed: number };

/** A device with a sector-write budget and a durable image. */
export class CrashDevice implements Device {
  readonly name: string;
  readonly sizeBytes: number;
  #volatile: Uint8Array;
  #durable: Uint8Array;
  /** Sectors written since the last flush, in order: [sector index, contents]. */
  #unflushed: [number, Uint8Array][] = [];
  #budget = Infinity;
  #cut = false;
  /** Sector writes performed so far. */
  sectorWrites = 0;

  constructor(name: string, image: Uint8Array) {
    this.name = name;
    this.sizeBytes = image.length;
    this.#volatile = image.slice();
    this.#durable = image.slice();
  }

  /** Allows `sectors` more sector writes, then cuts power. */
  cutPowerAfter(sectors: number): void {
    this.#budget = this.sectorWrites + sectors;
  }

  read(buffer: Uint8Array, offsetBytes: number): Promise<void> {
    this.#alive();
    buffer.set(this.#volatile.subarray(offsetBytes, offsetBytes + buffer.length));
    return Promise.resolve();
  }

  write(data: Uint8Array, offsetBytes: number, options: WriteOptions = {}): Promise<void> {
    this.#alive();
    for (let done = 0; done < data.length; done += SECTOR_BYTES) {
      if (this.sectorWrites >= this.#budget) {
        this.#cut = true;
        throw new PowerCut(`power cut after ${this.sectorWrites} sector writes`);
      }
      const sector = data.slice(done, done + SECTOR_BYTES);
      this.#volatile.set(sector, offsetBytes + done);
      this.#unflushed.push([(offsetBytes + done) / SECTOR_BYTES, sector]);
      this.sectorWrites++;
    }
    return options.fua ? this.flush() : Promise.resolve();
  }

  flush(): Promise<void> {
    this.#alive();
    this.#durable.set(this.#volatile);
    this.#unflushed = [];
    return Promise.resolve();
  }

  discard(range: ByteRange): Promise<void> {
    return this.writeZeroes(range);
  }

  writeZeroes(range: ByteRange): Promise<void> {
    return this.write(new Uint8Array(range.lengthBytes), range.offsetBytes);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** What the disk holds after the cut, under a survival policy. */
  imageAfterCrash(policy: SurvivalPolicy): Uint8Array {
    const image = this.#durable.slice();
    const random = typeof policy === "object" ? seededRandom(policy.seed) : undefined;
    for (const [sector, contents] of this.#unflushed) {
      const survives = policy === "all" || (random !== undefined && random() < 0.5);
      if (survives) image.set(contents, sector * SECTOR_BYTES);
    }
    return image;
  }

  /** A fresh memory device holding the image after the cut. */
  async deviceAfterCrash(policy: SurvivalPolicy): Promise<MemoryDevice> {
    const device = new MemoryDevice(this.name, this.sizeBytes);
    await device.write(this.imageAfterCrash(policy), 0);
    await device.flush();
    return device;
  }

  #alive(): void {
    if (this.#cut) throw new PowerCut("the device lost power");
  }
}

/**
 * A device that is not there: the stand-in for a spare that a setup is
 * served without. Its single job is to refuse: every request fails as a
 * device that is gone (`"ENODEV"`, see `isDeviceGone`), so the engine treats
 * the blocks on it as unreadable (EIO to the client), never as blocks to
 * read from elsewhere.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MissingDevice } from "./missing_device.ts";
 * import { isDeviceGone } from "../errors.ts";
 *
 * const device = new MissingDevice("spare 1 (last seen at /dev/sdc)", 1 << 20);
 * await assert.rejects(device.read(new Uint8Array(512), 0), isDeviceGone);
 * ```
 *
 * @module
 */

import type { ByteRange, Device } from "./device.ts";
import { DeviceIoError } from "../errors.ts";

/** A device whose every request fails with `"ENODEV"`. */
export class MissingDevice implements Device {
  readonly name: string;
  readonly sizeBytes: number;

  /**
   * @param name How errors name it: say which device is missing and where it was.
   * @param sizeBytes Its recorded size.
   */
  constructor(name: string, sizeBytes: number) {
    this.name = name;
    this.sizeBytes = sizeBytes;
  }

  read(buffer: Uint8Array, offsetBytes: number): Promise<void> {
    return this.#gone("read", { offsetBytes, lengthBytes: buffer.length });
  }

  write(data: Uint8Array, offsetBytes: number): Promise<void> {
    return this.#gone("write", { offsetBytes, lengthBytes: data.length });
  }

  flush(): Promise<void> {
    return this.#gone("flush", { offsetBytes: 0, lengthBytes: 0 });
  }

  discard(range: ByteRange): Promise<void> {
    return this.#gone("discard", range);
  }

  writeZeroes(range: ByteRange): Promise<void> {
    return this.#gone("write zeroes to", range);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  #gone(action: string, range: ByteRange): Promise<void> {
    return Promise.reject(
      new DeviceIoError(action, {
        device: this.name,
        ...range,
        code: "ENODEV",
        cause: "the device is missing: the setup is served without it",
      }),
    );
  }
}

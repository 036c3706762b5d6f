/**
 * Carries out {@link DataRequest}s against a `Device` (the engine, on its own
 * thread): the one implementation of what each operation means, shared by the
 * requests workers forward and the NBD event-loop connections. Retries,
 * pending blocks and remaps stay the device's job; device I/O errors become a
 * {@link DataError}, anything else is a programmer error and is rethrown.
 *
 * @module
 */

import { assert, unreachable } from "../assert.ts";
import { NBD_REQUEST_BYTES_MAX } from "../constants.ts";
import { type ByteRange, type Device, isRangeInside } from "../device/device.ts";
import { DeviceIoError } from "../errors.ts";
import { ShapedBufferPools } from "../aligned_bytes.ts";
import type { DataRequest, DataResult } from "./data_request.ts";

const DONE: Readonly<DataResult> = Object.freeze({ error: undefined, data: undefined });

/** Runs neutral requests on one device. */
export class DataExecutor {
  readonly #device: Device;
  readonly #buffers: ShapedBufferPools;

  /**
   * @param device Where requests go.
   * @param buffers Where reads without a buffer of their own get one. @default a new pool
   */
  constructor(device: Device, buffers: ShapedBufferPools = new ShapedBufferPools()) {
    this.#device = device;
    this.#buffers = buffers;
  }

  /**
   * Runs one request.
   *
   * @returns Its result; a device I/O error is a result, not an exception.
   * @throws {unknown} Anything that is not a `DeviceIoError` (a programmer error).
   */
  async execute(request: DataRequest): Promise<DataResult> {
    const range = { offsetBytes: request.offsetBytes, lengthBytes: request.lengthBytes };
    assert(Number.isSafeInteger(range.offsetBytes), "a checked offset is a safe integer");
    if (request.op !== "flush") assert(isRangeInside(this.#device, range), "a checked range");
    try {
      return await this.#perform(request, range);
    } catch (error) {
      if (!(error instanceof DeviceIoError)) throw error;
      return { error: { code: error.code, message: error.message }, data: undefined };
    }
  }

  async #perform(request: DataRequest, range: ByteRange): Promise<DataResult> {
    const device = this.#device;
    const { fua, mayPunch } = request.flags;
    switch (request.op) {
      case "read": {
        if (range.lengthBytes === 0) return DONE;
        // Data that starts on an O_DIRECT boundary needs no bounce copy below.
        const data = request.data ?? this.#buffers.take(0, range.lengthBytes);
        assert(data.length === range.lengthBytes, "a read buffer holds the range");
        await device.read(data, range.offsetBytes);
        return { error: undefined, data };
      }
      case "write":
        assert(request.data?.length === range.lengthBytes, "a write has its data");
        if (range.lengthBytes > 0) await device.write(request.data!, range.offsetBytes, { fua });
        return DONE;
      case "flush":
        await device.flush();
        return DONE;
      case "trim":
        await forEachPiece(range, (piece) => device.discard(piece));
        // Discard has no FUA of its own; a flush makes the trim durable.
        if (fua && range.lengthBytes > 0) await device.flush();
        return DONE;
      case "cache":
        return DONE;
      case "write-zeroes":
        if (request.flags.fastZero) {
          // Fail fast and leave the contents alone: a Device cannot promise
          // that zeroing beats writing.
          return {
            error: { code: "ENOTSUP", message: "Fast zeroing is not supported" },
            data: undefined,
          };
        }
        await forEachPiece(range, (piece) => device.writeZeroes(piece, { fua, mayPunch }));
        return DONE;
      default:
        unreachable(`operation ${request.op} has a handler`);
    }
  }
}

/**
 * Runs `action` over a range in pieces of at most NBD_REQUEST_BYTES_MAX, in order.
 * Trim and write-zeroes may be longer than that (NBD allows it for commands
 * without payload); splitting keeps what the layers below allocate bounded.
 */
async function forEachPiece(
  range: ByteRange,
  action: (piece: ByteRange) => Promise<void>,
): Promise<void> {
  const endBytes = range.offsetBytes + range.lengthBytes;
  for (
    let offsetBytes = range.offsetBytes;
    offsetBytes < endBytes;
    offsetBytes += NBD_REQUEST_BYTES_MAX
  ) {
    await action({
      offsetBytes,
      lengthBytes: Math.min(NBD_REQUEST_BYTES_MAX, endBytes - offsetBytes),
    });
  }
}

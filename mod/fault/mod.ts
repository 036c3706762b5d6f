/**
 * Fault injection for tests and simulation: {@link FaultyDevice} wraps any
 * `Device` and fails chosen blocks (like dm-dust) or random requests (like
 * nbdkit's error filter). The rules are in `fault_model.ts` and
 * `docs/fault_model.md`.
 *
 * @example
 * ```ts
 * import { FaultyDevice } from "./mod.ts";
 * import { MemoryDevice } from "../device/memory_device.ts";
 * const device = new FaultyDevice(new MemoryDevice("mem0", 1 << 20), {
 *   writeMode: "heal",
 *   rates: { readEio: 0.01 },
 *   seed: 7,
 * });
 * device.addBadBlocks([10, 11]);
 * await device.write(new Uint8Array(1024), 10 * 512); // heals blocks 10 and 11
 * console.log(device.listBadBlocks()); // []
 * ```
 *
 * @module
 */

export { FaultyDevice, type FaultyDeviceOptions } from "./faulty_device.ts";
export * from "./fault_model.ts";

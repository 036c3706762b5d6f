/**
 * Block devices: the `Device` interface every layer speaks, and its backends.
 *
 * - {@link MemoryDevice}: RAM, with power-loss simulation, for tests.
 * - {@link FileDevice} via {@link openFileDevice}: a disk image or a Linux
 *   block device, through libc on worker threads.
 * - {@link probeDeviceIdentity}: kind, size, serial, WWN and model of a path.
 *
 * @example
 * ```ts
 * import { MemoryDevice } from "./mod.ts";
 * const device = new MemoryDevice("mem0", 1 << 20);
 * await device.write(new Uint8Array(512).fill(7), 0, { fua: true });
 * const sector = new Uint8Array(512);
 * await device.read(sector, 0);
 * console.log(sector[0]); // 7
 * ```
 *
 * @module
 */

export type { ByteRange, Device, WriteOptions, WriteZeroesOptions } from "./device.ts";
export { isRangeInside } from "./device.ts";
export { MemoryDevice } from "./memory_device.ts";
export { MissingDevice } from "./missing_device.ts";
export {
  BOUNCE_BYTES_MAX,
  DIRECT_ALIGN_BYTES,
  FileDevice,
  type FileDeviceKind,
  openFileDevice,
  type OpenFileDeviceOptions,
  ZERO_CHUNK_BYTES,
} from "./file_device.ts";
export {
  type DeviceIdentity,
  probeDeviceIdentity,
  type ProbeDeviceIdentityOptions,
} from "./probe_device_identity.ts";

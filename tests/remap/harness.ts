/**
 * A setup built from memory devices, with the main disk behind the fault
 * layer, for engine tests and simulation.
 *
 * @module
 */

import { MemoryDevice } from "../../mod/device/memory_device.ts";
import type { Device } from "../../mod/device/device.ts";
import { createSetup } from "../../mod/assembly/create.ts";
import { assembleSetup, openSpares } from "../../mod/assembly/assemble.ts";
import type { RemapDevice, RemapDeviceOptions, RemapEvent } from "../../mod/remap/remap_device.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import { FaultyDevice } from "../../mod/fault/faulty_device.ts";

/** Sizes and options of a test setup. */
export interface HarnessOptions {
  mainBytes?: number;
  blockBytes?: number;
  spareCount?: number;
  /** Slots per spare beyond the minimum of 16 (spares are sized to fit). */
  spareSlots?: number;
  readRetries?: number;
}

/** A running test setup and the devices under it. */
export interface Harness {
  engine: RemapDevice;
  events: RemapEvent[];
  main: MemoryDevice;
  faulty: FaultyDevice;
  spares: MemoryDevice[];
  /** Each spare behind its own fault layer (no faults until a test adds them). */
  faultySpares: FaultyDevice[];
  blockBytes: number;
  /** Opens the same devices again, as after a restart (faults kept). */
  reopen(options?: RemapDeviceOptions): Promise<RemapDevice>;
}

/** The identity a memory main disk is recorded with. */
export function memoryIdentity(device: Device) {
  return { path: device.name, kind: "file" as const, sizeBytes: device.sizeBytes };
}

/** Creates and assembles a setup over memory devices. */
export async function makeHarness(options: HarnessOptions = {}): Promise<Harness> {
  const blockBytes = options.blockBytes ?? 4096;
  const main = new MemoryDevice("main", options.mainBytes ?? 4 * 1024 * 1024);
  const spareBytes = minimumSpareBytes(blockBytes) +
    Math.max(0, (options.spareSlots ?? 64) - 16) * blockBytes;
  const spares = Array.from(
    { length: options.spareCount ?? 1 },
    (_, i) => new MemoryDevice(`spare${i}`, spareBytes),
  );
  const faulty = new FaultyDevice(main, { blockBytes: 512 });
  const faultySpares = spares.map((spare) => new FaultyDevice(spare, { blockBytes: 512 }));
  await createSetup({
    name: "test",
    main: { device: main, identity: memoryIdentity(main) },
    spares: faultySpares.map((device) => ({ device, path: device.name })),
    blockBytes,
  });
  const events: RemapEvent[] = [];
  const assemble = async (extra: RemapDeviceOptions = {}) =>
    assembleSetup(
      { device: faulty, identity: memoryIdentity(main) },
      await openSpares(faultySpares),
      {
        readRetries: options.readRetries ?? 1,
        metadataDelayMs: 0,
        onEvent: (event) => events.push(event),
        ...extra,
      },
    );
  return {
    engine: await assemble(),
    events,
    main,
    faulty,
    spares,
    faultySpares,
    blockBytes,
    reopen: assemble,
  };
}

/** A buffer of `length` bytes filled from `seed`, so every write is recognisable. */
export function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

/** Reads `length` bytes at `offset` from a device. */
export async function readBack(
  device: Device,
  offsetBytes: number,
  lengthBytes: number,
): Promise<Uint8Array> {
  const buffer = new Uint8Array(lengthBytes);
  await device.read(buffer, offsetBytes);
  return buffer;
}

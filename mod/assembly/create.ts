/**
 * Creating a setup: checks, then five fresh copies on every spare.
 *
 * Nothing is written until every check has passed for every device, so a
 * refused `create` leaves all disks as they were.
 *
 * @module
 */

import { BLOCK_BYTES_MAX, BLOCK_BYTES_MIN, SPARES_MAX } from "../constants.ts";
import type { Device } from "../device/device.ts";
import { RefusedError, UsageError } from "../errors.ts";
import { computeLayout, minimumSpareBytes } from "../metadata/spare_layout.ts";
import { SpareStore } from "../metadata/spare_store.ts";
import { EMPTY_CRC32C, type SpareRecord, type SuperblockPayload } from "../metadata/superblock.ts";
import { mainIdentityOf, type ProbedIdentity } from "./identity.ts";
import { detectContents } from "./signatures.ts";

/** Setup names: usable as file names and in udev/systemd unit names. */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Options for {@link createSetup}. */
export interface CreateSetupOptions {
  name: string;
  main: { device: Device; identity: ProbedIdentity };
  spares: { device: Device; path: string }[];
  /** @default BLOCK_BYTES_DEFAULT */
  blockBytes: number;
  /** Overwrite spares that hold a filesystem or another setup's metadata. @default false */
  force?: boolean;
}

/**
 * Checks every device, then formats the spares.
 *
 * @returns The formatted spares' stores, in spare order.
 * @throws {UsageError} For a bad name, block size, spare count, or a spare too small.
 * @throws {RefusedError} For a spare holding data, unless `force`.
 */
export async function createSetup(options: CreateSetupOptions): Promise<SpareStore[]> {
  const { name, blockBytes, main, spares } = options;
  checkSetupName(name);
  if (!isPowerOfTwo(blockBytes) || blockBytes < BLOCK_BYTES_MIN || blockBytes > BLOCK_BYTES_MAX) {
    throw new UsageError(
      `Cannot create setup "${name}": block size ${blockBytes} is not a power of two from ${BLOCK_BYTES_MIN} to ${BLOCK_BYTES_MAX}`,
    );
  }
  if (spares.length < 1 || spares.length > SPARES_MAX) {
    throw new UsageError(
      `Cannot create setup "${name}": give 1 to ${SPARES_MAX} spares with --spare, not ${spares.length}`,
    );
  }
  const paths = [main.identity.path, ...spares.map((spare) => spare.path)];
  const repeated = paths.find((path, i) => paths.indexOf(path) !== i);
  if (repeated) throw new UsageError(`Cannot create setup "${name}": "${repeated}" is named twice`);
  if (main.device.sizeBytes < blockBytes) {
    throw new UsageError(
      `Cannot create setup "${name}": main disk "${main.identity.path}" is smaller than one block`,
    );
  }

  // Every spare's checkpoints hold every spare's table (format version 2).
  // First each spare alone; then each again with room for the others' slots
  // as the first pass counted them: the second pass gives each spare fewer
  // slots, never more, so every region holds what the others really have.
  const alone = spares.map((spare) => computeLayout(spare.device.sizeBytes, blockBytes));
  const slotsAlone = alone.reduce((sum, layout) => sum + (layout?.slotCount ?? 0), 0);
  const layouts = spares.map((spare, index) => {
    const peerSlots = slotsAlone - (alone[index]?.slotCount ?? 0);
    const layout = computeLayout(spare.device.sizeBytes, blockBytes, peerSlots);
    if (!layout) {
      throw new UsageError(
        `Spare "${spare.path}" is too small: ${spare.device.sizeBytes} bytes; a spare needs at least ` +
          `${minimumSpareBytes(blockBytes)} bytes for block size ${blockBytes}` +
          (peerSlots > 0 ? `, plus ${peerSlots * 16} bytes to record the other spares' slots` : ""),
      );
    }
    return layout;
  });
  if (!options.force) {
    for (const spare of spares) {
      const contents = await detectContents(spare.device);
      if (contents) {
        throw new RefusedError(
          spare.path,
          `Spare "${spare.path}" holds ${contents}; creating the setup would destroy it. ` +
            `Check the device name, or pass --force to overwrite it`,
        );
      }
    }
  }

  const setupUuid = crypto.randomUUID();
  const createdMs = Date.now();
  const mainIdentity = await mainIdentityOf(main.identity);
  const records = spareRecordsFor(spares);
  const stores: SpareStore[] = [];
  for (const [index, spare] of spares.entries()) {
    const payload: SuperblockPayload = {
      setup: { uuid: setupUuid, name, blockBytes, createdMs, generation: 1, state: "clean" },
      main: mainIdentity,
      spares: records,
      spareIndex: index,
      layout: layouts[index]!,
      table: {
        checkpointRegion: 0,
        checkpointEntries: 0,
        checkpointCrc32c: 0,
        logStartSequence: 1,
        peerEntries: spares.map(() => 0),
        peerCrc32c: EMPTY_CRC32C,
      },
      pending: [],
      health: {},
      scan: {},
    };
    stores.push(await SpareStore.format(spare.device, payload));
  }
  return stores;
}

/** The setup's records of new spares, in spare order: each gets a new UUID. */
export function spareRecordsFor(
  spares: readonly { device: Device; path: string }[],
): SpareRecord[] {
  return spares.map((spare, index) => ({
    index,
    uuid: crypto.randomUUID(),
    path: spare.path,
    sizeBytes: spare.device.sizeBytes,
    role: "spare",
    state: "active",
  }));
}

/**
 * Checks a setup name before any device is opened.
 *
 * @throws {UsageError} When the name cannot be used in file and unit names.
 */
export function checkSetupName(name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new UsageError(
      `Cannot create setup "${name}": a name is 1-64 letters, digits, "_", "." or "-", starting with a letter or digit`,
    );
  }
}

function isPowerOfTwo(value: number): boolean {
  return Number.isSafeInteger(value) && value > 0 && (value & (value - 1)) === 0;
}

/**
 * Which blocks of a setup are unreadable because their spare is missing, as
 * the spares that are there say (format version 2: each spare records every
 * spare's slots). Read only: the spares are opened read-only, without repair.
 *
 * @module
 */

import type { Device } from "../device/device.ts";
import { SpareStore } from "../metadata/spare_store.ts";
import { mergeViews } from "../metadata/setup_tables.ts";
import type { SetupFinding } from "./discovery_report.ts";
import { closeAll, openPath } from "./open_path.ts";

/** How many sorted block indexes of a missing spare a report lists. */
export const UNAVAILABLE_LISTED_MAX = 16;

/** The blocks a missing spare holds. */
export interface UnavailableBlocks {
  spareIndex: number;
  uuid: string;
  /** Remapped blocks in its slots: unreadable (EIO) until it is back. */
  blockCount: number;
  /** The lowest of them, at most {@link UNAVAILABLE_LISTED_MAX}. */
  firstBlocks: number[];
  /** Whether a spare found was written by a version that records the others' slots. */
  known: boolean;
}

/**
 * Reads the found spares of a setup and lists, per missing spare, the blocks
 * in its slots.
 *
 * @param setup A setup from discovery with at least one spare found.
 * @returns One entry per missing spare, in spare order.
 */
export async function unavailableBlocksOf(setup: SetupFinding): Promise<UnavailableBlocks[]> {
  const missing = setup.spares.filter((spare) => spare.found === undefined);
  if (missing.length === 0) return [];
  const devices: Device[] = [];
  try {
    const stores: SpareStore[] = [];
    for (const spare of setup.spares) {
      if (spare.found === undefined) continue;
      const { device } = await openPath(spare.found.path, { readOnly: true });
      devices.push(device);
      stores.push((await SpareStore.open(device, { repair: false })).store);
    }
    const tables = mergeViews(stores, setup.spares.length);
    // A version-1 spare knows only its own slots: it cannot tell what the missing one holds.
    const known = stores.some((store) => store.formatVersion >= 2);
    return missing.map((spare) => {
      const blocks = [...tables[spare.index]!].sort((a, b) => a - b);
      return {
        spareIndex: spare.index,
        uuid: spare.uuid,
        blockCount: blocks.length,
        firstBlocks: blocks.slice(0, UNAVAILABLE_LISTED_MAX),
        known,
      };
    });
  } finally {
    await closeAll(devices);
  }
}

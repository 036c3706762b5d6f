/**
 * The checks and the layout of a spare that joins a running setup
 * (`dm-remap spare add`), as `create` checks its spares: the device may be
 * overwritten (no filesystem or other setup on it, unless forced), it holds
 * at least {@link SPARE_SLOTS_MIN} slots, and the setup has room for one more
 * spare. Its distinctness from the setup's other disks (by what they are,
 * never by path) is checked by the caller with `checkDistinctDisks`.
 *
 * Format version 2 records every spare's slots in every spare's checkpoint
 * regions, which were sized when each spare was laid out. The new spare gets
 * the slots that fit in its own size and in every working spare's regions,
 * so no region ever has to move; when that leaves too few, it is refused.
 *
 * @module
 */

import { SECTOR_BYTES, SPARE_SLOTS_MIN, SPARES_MAX } from "../constants.ts";
import type { Device } from "../device/device.ts";
import { RefusedError, UsageError } from "../errors.ts";
import {
  CHECKPOINT_ENTRY_BYTES,
  checkpointBytesFor,
  computeLayout,
  minimumSpareBytes,
  type SpareLayout,
} from "../metadata/spare_layout.ts";
import type { SpareState } from "../remap/spare_set.ts";
import { detectContents } from "./signatures.ts";

/** A spare of the setup as the join sees it. */
export interface PoolMember {
  index: number;
  state: SpareState;
  layout: SpareLayout;
  /** Slots it holds (for a removed spare, the slots its peers record). */
  slotsUsed: number;
}

/** Options of {@link checkJoiningSpare}. */
export interface JoiningSpareOptions {
  setupName: string;
  blockBytes: number;
  device: Device;
  /** The path as given, for messages. */
  path: string;
  members: readonly PoolMember[];
  /** Overwrite a device that holds a filesystem or another setup's metadata. @default false */
  force?: boolean;
}

/**
 * Checks a device that is to join the setup and lays it out.
 *
 * @returns Its layout: as many slots as fit on it and in every working spare's checkpoints.
 * @throws {UsageError} When the setup is full or the device too small.
 * @throws {RefusedError} When the device holds data (without `force`), or the
 *   other spares' checkpoints have no room for its slots.
 */
export async function checkJoiningSpare(options: JoiningSpareOptions): Promise<SpareLayout> {
  const { setupName, blockBytes, device, path, members } = options;
  const action = `add "${path}" to setup "${setupName}"`;
  if (members.length >= SPARES_MAX) {
    throw new UsageError(
      `Cannot ${action}: it has ${SPARES_MAX} spares already (removed ones keep their place)`,
    );
  }
  // What every checkpoint region records of the others: a removed spare's
  // known slots, every other spare's whole layout (its slots may all be used).
  const slotsOf = (member: PoolMember) =>
    member.state === "removed" ? member.slotsUsed : member.layout.slotCount;
  const poolSlots = members.reduce((sum, member) => sum + slotsOf(member), 0);
  const own = computeLayout(device.sizeBytes, blockBytes, poolSlots);
  if (own === undefined) {
    throw new UsageError(
      `Cannot ${action}: it is too small: ${device.sizeBytes} bytes; a spare needs at least ` +
        `${minimumSpareBytes(blockBytes)} bytes for block size ${blockBytes}, plus ` +
        `${poolSlots * 16} bytes to record the other spares' slots`,
    );
  }
  let slotCount = own.slotCount;
  for (const member of members) {
    if (member.state !== "active" && member.state !== "draining") continue;
    const room = peerRoomOf(member.layout) - (poolSlots - slotsOf(member));
    if (room < slotCount) slotCount = room;
  }
  if (slotCount < SPARE_SLOTS_MIN) {
    throw new RefusedError(
      path,
      `Cannot ${action}: the checkpoint regions of its spares, sized when they were laid out, ` +
        `have room to record ${Math.max(slotCount, 0)} more slots, and a spare needs at least ` +
        `${SPARE_SLOTS_MIN}; create a new setup with the larger pool instead; nothing was written`,
    );
  }
  if (!options.force) {
    const contents = await detectContents(device);
    if (contents) {
      throw new RefusedError(
        path,
        `Spare "${path}" holds ${contents}; adding it would destroy it. Check the device name, ` +
          `or pass --force to overwrite it`,
      );
    }
  }
  return { ...own, slotCount };
}

/** The peer entries a spare's checkpoint regions hold besides its own slots and seal. */
function peerRoomOf(layout: SpareLayout): number {
  // One peer entry takes one sector: what is left is the own entries and the seal.
  const headBytes = checkpointBytesFor(layout.slotCount, 1) - SECTOR_BYTES;
  const peerBytes = Math.floor((layout.checkpointBytes - headBytes) / SECTOR_BYTES) * SECTOR_BYTES;
  return Math.max(0, peerBytes / CHECKPOINT_ENTRY_BYTES);
}

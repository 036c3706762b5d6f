/**
 * Rebuilding the metadata of spares whose five copies are all lost: the plan
 * that `restore` (from a backup) and `check --salvage` (from the spares alone)
 * make, the checks every plan passes, and the writes.
 *
 * A plan is made by reading only. Writing it puts, on each spare, a fresh
 * sealed checkpoint of the proven table in the region the proof did not come
 * from, then the five copies, each flushed; then it reopens the spare and
 * asserts that it opens to exactly the proven table.
 *
 * @module
 */

import type { Device } from "../device/device.ts";
import { RefusedError } from "../errors.ts";
import { SpareStore } from "../metadata/spare_store.ts";
import type { SuperblockPayload } from "../metadata/superblock.ts";
import type { ProvenTable } from "../metadata/table_proof.ts";

/** What will be written on one spare. */
export interface SpareRebuild {
  device: Device;
  /** The path it was named by. */
  path: string;
  /** The description its copies will carry; the rebuild makes the table from the proof. */
  payload: Omit<SuperblockPayload, "table">;
  proof: ProvenTable;
  /** The sequence of its new copies. */
  sequence: number;
  /** How the device was recognised as this spare, for the confirmation text. */
  identifiedBy: string;
}

/** Everything a rebuild writes, and what it leaves alone. */
export interface RebuildPlan {
  setup: SuperblockPayload["setup"];
  spares: SpareRebuild[];
  /** What the plan could not know or does not touch, said before anything is written. */
  notes: string[];
}

/**
 * Refuses a plan whose tables map a block outside the main disk or map one
 * block twice: the engine could not serve it, and nothing proves which slot is right.
 *
 * @throws {RefusedError} Naming the spare, slot and block.
 */
export function checkPlanTables(plan: RebuildPlan, mainBytes: number): void {
  const blockBytes = plan.setup.blockBytes;
  const seen = new Map<number, string>();
  for (const spare of plan.spares) {
    for (const [slot, block] of spare.proof.slotBlocks.entries()) {
      const here = `slot ${slot} of spare ${spare.payload.spareIndex} ("${spare.path}")`;
      if (block * blockBytes >= mainBytes) {
        throw new RefusedError(
          spare.device.name,
          `${here} maps block ${block}, outside the main disk of ${mainBytes} bytes: ` +
            `this is not the setup's main disk or block size; nothing was written`,
        );
      }
      const other = seen.get(block);
      if (other) {
        throw new RefusedError(
          spare.device.name,
          `${here} and ${other} both map block ${block}: the spares are damaged; nothing was written`,
        );
      }
      seen.set(block, here);
    }
  }
}

/**
 * Writes the plan, spare by spare.
 *
 * @returns The rebuilt spares, opened, in plan order.
 */
export async function writeRebuild(plan: RebuildPlan): Promise<SpareStore[]> {
  const stores: SpareStore[] = [];
  for (const spare of plan.spares) {
    stores.push(
      await SpareStore.rebuild(spare.device, spare.payload, {
        slotBlocks: spare.proof.slotBlocks,
        checkpointRegion: spare.proof.checkpointRegion === 0 ? 1 : 0,
        logStartSequence: spare.proof.logSequenceMax + 1,
        sequence: spare.sequence,
      }),
    );
  }
  return stores;
}

/** One line per spare saying what will be written, for the confirmation. */
export function describeRebuild(plan: RebuildPlan): string[] {
  const lines = [
    `Setup "${plan.setup.name}" (${plan.setup.uuid}), block size ${plan.setup.blockBytes}, ` +
    `generation ${plan.setup.generation}:`,
  ];
  for (const spare of plan.spares) {
    const { proof, payload } = spare;
    const region = "AB"[proof.checkpointRegion === 0 ? 1 : 0];
    lines.push(
      `  ${spare.path}: spare ${payload.spareIndex} (${spare.identifiedBy}), ` +
        `${proof.slotBlocks.length} mappings of ${payload.layout.slotCount} slots: ` +
        `${proof.checkpointEntries} from a checkpoint (${proof.checkpointProof}), ` +
        `${proof.logEntries} from ${proof.logSectors} log sectors`,
      `    writes checkpoint ${region} (${proof.slotBlocks.length} entries and its seal), then ` +
        `5 copies at sequence ${spare.sequence} (sectors 0, 1024, 2048, 4096, 8192); ` +
        `the log restarts at sequence ${proof.logSequenceMax + 1}`,
    );
  }
  for (const note of plan.notes) lines.push(`  Note: ${note}`);
  return lines;
}

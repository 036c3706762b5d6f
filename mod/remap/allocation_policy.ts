/**
 * Allocation policies: which spare a new remap takes its slots from, by name,
 * as a setup records it (`setup.allocation` in the metadata, format 2). Each
 * is a {@link SparePlacement} for the {@link SpareSet}; the engine can switch
 * between them while serving (`RemapDevice.setAllocationPolicy`).
 *
 * - `fill-first`: the lowest-numbered spare with a free slot (the default,
 *   and what every setup did before policies existed).
 * - `round-robin`: the next spare after the one used last, in index order.
 * - `most-free`: the spare with the most free slots.
 * - `health-weighted`: like `most-free`, among the spares with the fewest
 *   I/O errors on their slots since the engine started: a spare with errors
 *   gets no new slots while one without errors can take them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { placementFor } from "./allocation_policy.ts";
 *
 * const candidate = (index: number, slotsFree: number) => ({ index, slotsFree, errors: 0 });
 * const placement = placementFor("most-free");
 * assert.equal(placement.choose([candidate(0, 3), candidate(1, 9)], { blockCount: 1 }), 1);
 * ```
 *
 * @module
 */

import { assert } from "../assert.ts";
import type { PlacementCandidate, SparePlacement } from "./spare_set.ts";

/** The policies a setup can use. */
export const ALLOCATION_POLICIES = [
  "fill-first",
  "round-robin",
  "most-free",
  "health-weighted",
] as const;

/** One of {@link ALLOCATION_POLICIES}. */
export type AllocationPolicy = typeof ALLOCATION_POLICIES[number];

/** Whether a string names a policy (for metadata and command lines). */
export function isAllocationPolicy(name: unknown): name is AllocationPolicy {
  return typeof name === "string" && (ALLOCATION_POLICIES as readonly string[]).includes(name);
}

/**
 * The placement of a policy. A round-robin placement keeps where it was, so
 * each setup gets its own.
 */
export function placementFor(policy: AllocationPolicy): SparePlacement {
  switch (policy) {
    case "fill-first":
      return { choose: (candidates) => candidates[0]?.index };
    case "round-robin":
      return roundRobin();
    case "most-free":
      return { choose: (candidates) => mostFree(candidates) };
    case "health-weighted":
      return {
        choose(candidates) {
          const fewest = Math.min(...candidates.map((candidate) => candidate.errors));
          return mostFree(candidates.filter((candidate) => candidate.errors === fewest));
        },
      };
  }
}

function roundRobin(): SparePlacement {
  let last = -1;
  return {
    choose(candidates) {
      const next = candidates.find((candidate) => candidate.index > last) ?? candidates[0];
      if (next !== undefined) last = next.index;
      return next?.index;
    },
  };
}

/** The candidate with the most free slots; the lowest index among equals. */
function mostFree(candidates: readonly PlacementCandidate[]): number | undefined {
  assert(candidates.length > 0, "a placement chooses among candidates");
  return candidates.reduce((best, candidate) =>
    candidate.slotsFree > best.slotsFree ? candidate : best
  ).index;
}

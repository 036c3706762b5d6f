/**
 * The spares of a setup: which spares belong to it, the state of each, and
 * which of them a new remap takes its slots from. The engine asks this set
 * for slots and reports a failed spare to it; it never walks the spares to
 * place a block itself.
 *
 * A spare's state ({@link SpareState}, as the metadata records it):
 * - `active`: its slots are read and written, it takes the setup's metadata,
 *   and it takes new slots while it has free ones.
 * - `failed`: a write or flush on it failed. Its slots stay mapped and are
 *   still read, but it takes no new slots and no metadata.
 *
 * Free slots are not kept here: a spare's store counts the slots its log
 * holds, and slots are taken in order, so the next free slot is always the
 * first one the log does not hold yet.
 *
 * Invariants:
 * - Spares are numbered 0 to n-1 in order, n between 1 and `SPARES_MAX`.
 * - Every spare has the setup's one block size.
 * - A granted slot is on an `active` spare and not yet used.
 * - Only an `active` or `draining` spare becomes `failed`, and never back;
 *   only an `active` one starts `draining`, and only a `draining` one is
 *   `removed`.
 *
 * Which of the spares that can take a slot is used is a
 * {@link SparePlacement}; the default, {@link inOrderPlacement}, takes the
 * lowest-numbered one, so a setup fills its spares one after another.
 *
 * - `draining` (`spare remove`): its blocks are moving to the other spares.
 *   It keeps its metadata (it is {@link SpareSet.working}) and its slots are
 *   still read, but it takes no new slots, and a write to one of its slots
 *   moves the block, as for a failed spare.
 * - `removed`: it left the setup; nothing maps to it and it takes nothing.
 *
 * A spare joins while serving with {@link SpareSet.add}: the next index,
 * the setup's block size.
 *
 * @example A placement that fills the highest-numbered spare first
 * ```ts
 * import assert from "node:assert/strict";
 * import type { SparePlacement } from "./spare_set.ts";
 *
 * const lastFirst = {
 *   choose(candidates: readonly { index: number }[]) {
 *     return candidates.at(-1)?.index;
 *   },
 * } satisfies SparePlacement;
 * assert.equal(lastFirst.choose([{ index: 0 }, { index: 2 }]), 2);
 * ```
 *
 * @module
 */

import { assert } from "../assert.ts";
import { SPARES_MAX } from "../constants.ts";
import type { Device } from "../device/device.ts";
import type { SpareStore } from "../metadata/spare_store.ts";
import type { SpareRecord } from "../metadata/superblock.ts";
import type { SpareLayout } from "../metadata/spare_layout.ts";

/** A spare's state, as the setup's metadata records it. */
export type SpareState = SpareRecord["state"];

/** A spare as the engine uses it. */
export interface SpareMember {
  readonly index: number;
  readonly device: Device;
  /**
   * Its metadata; undefined for a spare the setup is served without (its
   * device is a `MissingDevice` and its state `failed`).
   */
  readonly store: SpareStore | undefined;
  /** Where its slots are (a missing spare's numbers its slots only: no I/O reaches it). */
  readonly layout: SpareLayout;
  readonly state: SpareState;
}

/** A spare whose device and metadata are there (every spare not failed is). */
export type PresentSpare = SpareMember & { readonly store: SpareStore };

function isPresent(member: SpareMember): member is PresentSpare {
  return member.store !== undefined;
}

/** What a placement is asked to find a spare for. */
export interface PlacementRequest {
  /** Blocks of one group commit still waiting for a slot; at least 1. */
  blockCount: number;
}

/** A spare that can take a slot, as a placement sees it. */
export interface PlacementCandidate {
  readonly index: number;
  /** Slots its log does not hold yet (at least 1). */
  readonly slotsFree: number;
  /** I/O errors on its slots since the engine started (see `SpareSet.noteError`). */
  readonly errors: number;
}

/** Which spare new slots are taken from. */
export interface SparePlacement {
  /**
   * Picks one of the candidates, or none (the remap then fails as with no
   * spare left).
   *
   * @param candidates The spares that can take a slot now (active, with a
   *   free slot), in index order; never empty.
   * @param request What the slots are for.
   * @returns The index of the chosen candidate, or undefined to choose none.
   */
  choose(candidates: readonly PlacementCandidate[], request: PlacementRequest): number | undefined;
}

/** Slots granted on one spare for blocks of a group commit. */
export interface SlotGrant {
  spare: PresentSpare;
  /** The spare's first free slot: its log appends slots in order. */
  firstSlotIndex: number;
  /** How many of the waiting blocks take slots here: at most the free slots. */
  slotCount: number;
}

/** A spare as the set keeps it: only the set changes a spare's state. */
interface OwnedSpare extends SpareMember {
  state: SpareState;
  store: SpareStore | undefined;
}

/** Options for {@link SpareSet}. */
export interface SpareSetOptions {
  /** Which spare takes new slots. @default inOrderPlacement */
  placement?: SparePlacement;
}

/**
 * Today's placement: the lowest-numbered spare that can take a slot, so the
 * spares fill one after another and a restart or a restore finds the same
 * slots in the same place.
 */
export const inOrderPlacement: SparePlacement = {
  choose(candidates) {
    return candidates[0]?.index;
  },
};

/** The slots of a spare its log does not hold yet. */
function slotsFreeOf(spare: SpareMember): number {
  assert(spare.store !== undefined, "only a spare that is there takes slots");
  return spare.layout.slotCount - spare.store.slotsUsed;
}

/** Membership, per-spare state and placement of a setup's spares. */
export class SpareSet {
  /** The block size every spare shares. */
  readonly blockBytes: number;
  readonly #members: OwnedSpare[];
  #placement: SparePlacement;
  /** I/O errors on each spare's slots, for placements that weigh health. */
  readonly #errors: number[];
  /** Spares a policy stopped allocating on: offered only when no other spare can take a slot. */
  #allocationStopped = new Set<number>();

  /**
   * Takes over opened spares; their states are the ones the metadata records.
   *
   * @param members The spares, numbered 0 to n-1 in order.
   * @param options The placement.
   */
  constructor(members: readonly SpareMember[], options: SpareSetOptions = {}) {
    assert(members.length > 0, "a setup has at least one spare");
    assert(members.length <= SPARES_MAX, "a setup has at most SPARES_MAX spares");
    this.blockBytes = members[0]!.layout.blockBytes;
    members.forEach((member, position) => {
      assert(member.index === position, "spares are numbered in order");
      assert(member.layout.blockBytes === this.blockBytes, "one block size");
      if (member.store === undefined) {
        assert(member.state !== "active", "a missing spare is not active");
      }
    });
    this.#members = members.map((member) => ({ ...member }));
    this.#placement = options.placement ?? inOrderPlacement;
    this.#errors = members.map(() => 0);
  }

  /** Every spare, in index order, with its state. */
  get members(): readonly SpareMember[] {
    return this.#members;
  }

  /** The spares that take metadata (the active and the draining ones), in index order. */
  get working(): readonly PresentSpare[] {
    const working = this.#members.filter((member) =>
      member.state === "active" || member.state === "draining"
    );
    assert(working.every(isPresent), "an active spare is there");
    return working as PresentSpare[];
  }

  /** Every spare that is there (not missing), in index order. */
  get present(): readonly PresentSpare[] {
    return this.#members.filter(isPresent);
  }

  /**
   * The spare with this index.
   *
   * @param spareIndex A spare of this set, as a slot location names it.
   * @returns The spare.
   */
  get(spareIndex: number): SpareMember {
    const spare = this.#members[spareIndex];
    assert(spare !== undefined, "a slot lives on a known spare");
    return spare;
  }

  /**
   * Where the next blocks of a group commit go: free slots on the spare the
   * placement chooses among those that can take one.
   *
   * @param request How many blocks wait for a slot.
   * @returns The granted slots, or undefined when no spare can take one (the
   *   spares are exhausted).
   */
  chooseSlots(request: PlacementRequest): SlotGrant | undefined {
    assert(request.blockCount > 0, "slots are asked for at least one block");
    const candidates = this.#members.filter((member): member is PresentSpare =>
      member.state === "active" && isPresent(member) && slotsFreeOf(member) > 0
    );
    if (candidates.length === 0) return undefined;
    // A stopped spare is the last resort: a remap onto it serves the client, a refused one is EIO.
    const allowed = candidates.filter((candidate) => !this.#allocationStopped.has(candidate.index));
    const offered = allowed.length > 0 ? allowed : candidates;
    const chosen = this.#placement.choose(
      offered.map((candidate) => ({
        index: candidate.index,
        slotsFree: slotsFreeOf(candidate),
        errors: this.#errors[candidate.index]!,
      })),
      request,
    );
    if (chosen === undefined) return undefined;
    const spare = offered.find((candidate) => candidate.index === chosen);
    assert(spare !== undefined, "the placement chooses one of the candidates");
    return {
      spare,
      firstSlotIndex: spare.store.slotsUsed,
      slotCount: Math.min(request.blockCount, slotsFreeOf(spare)),
    };
  }

  /** Uses another placement from the next remap on (a setup's policy changed). */
  setPlacement(placement: SparePlacement): void {
    this.#placement = placement;
  }

  /**
   * Stops giving new slots on these spares (a policy's `stop-allocating`),
   * replacing the spares stopped before; they stay readable and take
   * metadata, and take slots again only when no other spare can.
   *
   * @param spareIndexes Spares of this set.
   */
  stopAllocating(spareIndexes: Iterable<number>): void {
    const stopped = new Set(spareIndexes);
    for (const index of stopped) assert(this.#members[index] !== undefined, "a known spare");
    this.#allocationStopped = stopped;
  }

  /** The spares new slots avoid, in index order. */
  get allocationStopped(): readonly number[] {
    return [...this.#allocationStopped].sort((a, b) => a - b);
  }

  /** Counts an I/O error on one of a spare's slots (placements may weigh it). */
  noteError(spareIndex: number): void {
    assert(this.#errors[spareIndex] !== undefined, "a known spare");
    this.#errors[spareIndex]!++;
  }

  /** I/O errors counted on each spare's slots, by spare index. */
  get errors(): readonly number[] {
    return this.#errors;
  }

  /**
   * Records that a write or flush on a spare failed: it takes no new slots
   * and no metadata from now on.
   *
   * @param spareIndex An active spare.
   */
  markFailed(spareIndex: number): void {
    const spare = this.#members[spareIndex];
    assert(spare !== undefined, "a known spare fails");
    assert(spare.state === "active" || spare.state === "draining", "only a working spare fails");
    spare.state = "failed";
  }

  /**
   * Appends a spare that joined the setup (its metadata lists every spare).
   *
   * @param member The next index, the setup's block size, active.
   */
  add(member: PresentSpare): void {
    assert(member.index === this.#members.length, "a spare joins with the next index");
    assert(this.#members.length < SPARES_MAX, "a setup has at most SPARES_MAX spares");
    assert(member.layout.blockBytes === this.blockBytes, "one block size");
    assert(member.state === "active", "a spare joins active");
    this.#members.push({ ...member });
    this.#errors.push(0);
  }

  /**
   * Starts draining an active spare: no new slots from now on.
   *
   * @param spareIndex An active spare.
   */
  markDraining(spareIndex: number): void {
    const spare = this.#members[spareIndex];
    assert(spare !== undefined && spare.state === "active", "only an active spare drains");
    spare.state = "draining";
  }

  /**
   * Records that a drained spare left the setup: it takes no metadata any
   * more, and its store is no longer the set's.
   *
   * @param spareIndex A draining spare that holds no block.
   */
  markRemoved(spareIndex: number): void {
    const spare = this.#members[spareIndex];
    assert(spare !== undefined && spare.state === "draining", "only a drained spare leaves");
    spare.state = "removed";
    spare.store = undefined;
  }
}

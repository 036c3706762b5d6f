/**
 * Shared builders for API tests: a status of a small healthy setup, and a fake
 * {@link StatusSource} over it whose remaps are a sorted in-memory list.
 *
 * @module
 */

import { zeroEventCounts } from "../../mod/events/setup_event.ts";
import type {
  CopyHealth,
  RemapEntry,
  SetupStatus,
  SpareStatus,
  StatusSource,
} from "../../mod/api/status.ts";
import type { StoredEvent } from "../../mod/events/event_history.ts";

/** Five valid copies; copy 0 is the winner. */
export function copiesFixture(validCopies = 5): CopyHealth[] {
  return [0, 1024, 2048, 4096, 8192].map((sector, copyIndex) => {
    const valid = copyIndex < validCopies;
    // Optional fields are left out, not undefined, so a JSON round trip returns an equal object.
    return {
      copyIndex,
      sector,
      valid,
      ...(valid ? { sequence: 12 } : { reason: "checksum mismatch" }),
      winner: copyIndex === 0,
      repaired: false,
    };
  });
}

/** A spare with `slotsUsed` of 100 slots in use. */
export function spareFixture(index: number, overrides: Partial<SpareStatus> = {}): SpareStatus {
  return {
    index,
    uuid: `00000000-0000-4000-8000-00000000000${index}`,
    path: `/dev/spare${index}`,
    sizeBytes: 64 * 1024 * 1024,
    state: "active",
    slotCount: 100,
    slotsUsed: 3,
    missing: false,
    errors: 0,
    allocationStopped: false,
    validCopies: 5,
    copies: copiesFixture(),
    ...overrides,
  };
}

/** A clean setup "vault" with one spare, three remaps and no pending blocks. */
export function statusFixture(overrides: Partial<SetupStatus> = {}): SetupStatus {
  return {
    setup: {
      uuid: "0b5e7c2a-1d3f-4e6a-9b8c-7d6e5f4a3b2c",
      name: "vault",
      blockBytes: 4096,
      sizeBytes: 1 << 30,
      state: "clean",
      formatVersion: 1,
      allocation: "fill-first",
    },
    main: { path: "/dev/sda", kind: "block", sizeBytes: 1 << 30, fingerprint: "ab".repeat(32) },
    spares: [spareFixture(0)],
    counters: {
      reads: 1200,
      writes: 340,
      bytesRead: 4_915_200,
      bytesWritten: 1_392_640,
      flushes: 17,
      readErrors: 2,
      writeErrors: 0,
      remaps: 3,
      remapsCreated: 1,
      pending: 0,
    },
    pendingBlocks: [],
    events: { ...zeroEventCounts(), "remap": 1, "read-error": 2, "started": 1 },
    nbd: { exportName: "vault", unixPath: "/run/dm-remap/vault.nbd", connections: 1 },
    alerts: [{ name: "pager", sent: 4, failed: 1, dropped: 2, suppressed: 7 }],
    policies: [],
    uptimeSeconds: 3600,
    migration: null,
    version: "0.1.0",
    ...overrides,
  };
}

/** `count` remaps of blocks 0, 10, 20, … to consecutive slots of spare 0. */
export function remapsFixture(count: number): RemapEntry[] {
  return Array.from(
    { length: count },
    (_, i) => ({ blockIndex: i * 10, spareIndex: 0, slotIndex: i }),
  );
}

/** Two events, newest first. */
export const EVENTS_FIXTURE: StoredEvent[] = [
  {
    id: 2,
    timeMs: 1_700_000_001_000,
    type: "remap",
    message: "remapped block 7",
    blockIndex: 7,
    spareIndex: 0,
    slotIndex: 0,
  },
  { id: 1, timeMs: 1_700_000_000_000, type: "started", message: "serving" },
];

/** A source that answers with `status` and pages through `remaps`; it records each remaps call. */
export function fakeSource(
  status: SetupStatus = statusFixture(),
  remaps: RemapEntry[] = remapsFixture(3),
): StatusSource & { remapsCalls: { offset: number; limit: number }[] } {
  const remapsCalls: { offset: number; limit: number }[] = [];
  return {
    remapsCalls,
    status() {
      return status;
    },
    remaps(offset, limit) {
      remapsCalls.push({ offset, limit });
      return { total: remaps.length, entries: remaps.slice(offset, offset + limit) };
    },
    events(limit) {
      return EVENTS_FIXTURE.slice(0, limit);
    },
  };
}

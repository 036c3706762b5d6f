/**
 * Shared builders for metadata tests: a valid payload for a spare of a given size.
 *
 * @module
 */

import { computeLayout } from "../../mod/metadata/spare_layout.ts";
import { EMPTY_CRC32C, type SuperblockPayload } from "../../mod/metadata/superblock.ts";

/** A setup UUID fixed for reproducible tests. */
export const SETUP_UUID = "0b5e7c2a-1d3f-4e6a-9b8c-7d6e5f4a3b2c";

/** A valid payload for spare `spareIndex` of `spareCount`, each `spareBytes` large. */
export function payloadFor(
  spareBytes: number,
  options: { blockBytes?: number; spareIndex?: number; spareCount?: number } = {},
): SuperblockPayload {
  const blockBytes = options.blockBytes ?? 4096;
  const spareCount = options.spareCount ?? 1;
  const layout = computeLayout(spareBytes, blockBytes);
  if (!layout) throw new Error(`spare of ${spareBytes} bytes is too small for the fixture`);
  return {
    setup: {
      uuid: SETUP_UUID,
      name: "fixture",
      blockBytes,
      createdMs: 1_700_000_000_000,
      generation: 1,
      state: "clean",
    },
    main: { path: "/dev/main", kind: "file", sizeBytes: 1 << 30, fingerprint: "00".repeat(32) },
    spares: Array.from({ length: spareCount }, (_, index) => ({
      index,
      uuid: `00000000-0000-4000-8000-00000000000${index}`,
      path: `/dev/spare${index}`,
      sizeBytes: spareBytes,
      role: "spare" as const,
      state: "active" as const,
    })),
    spareIndex: options.spareIndex ?? 0,
    layout,
    table: {
      checkpointRegion: 0,
      checkpointEntries: 0,
      checkpointCrc32c: 0,
      logStartSequence: 1,
      peerEntries: Array.from({ length: spareCount }, () => 0),
      peerCrc32c: EMPTY_CRC32C,
    },
    pending: [],
    health: {},
    scan: {},
  };
}

/**
 * Builds the API's read-only {@link StatusSource} from a running engine.
 *
 * @module
 */

import type { DataPlaneCounters } from "../datapath/data_plane.ts";
import type { SetupStatus, StatusSource } from "../api/status.ts";
import type { OpenedSpares } from "../assembly/assemble.ts";
import { FORMAT_VERSION } from "../metadata/superblock.ts";
import type { RemapDevice } from "../remap/remap_device.ts";
import type { EventHistory } from "../events/event_history.ts";
import type { EventCounts } from "../api/event_counts.ts";
import type { HealthReport } from "../scan/mod.ts";
import { VERSION } from "../version.ts";

/** What the NBD side reports. */
export interface NbdView {
  exportName: string;
  unixPath?: string;
  tcp?: string;
  connections(): number;
  /** The kernel's device the server attached (`/dev/nbdN`). @default none */
  kernelDevice?: () => string | undefined;
}

/** What a status is read from besides the engine. */
export interface StatusSources {
  spares: OpenedSpares;
  nbd: NbdView;
  history: EventHistory;
  /** Requests the NBD data plane's workers served themselves (not through the engine). @default none */
  served?: () => DataPlaneCounters;
  /** The API's count of the setup's events. */
  eventCounts: EventCounts;
  /** The scanner's health report. @default none (no scanner) */
  healthReport?: () => HealthReport;
}

/** A StatusSource over a live engine; every call reads current values. */
export function statusSourceOf(engine: RemapDevice, sources: StatusSources): StatusSource {
  const { spares: opened, nbd, history } = sources;
  const noServed: DataPlaneCounters = {
    reads: 0,
    writes: 0,
    bytesRead: 0,
    bytesWritten: 0,
    flushes: 0,
  };
  const startedMs = Date.now();
  const { description } = opened;
  // Sorting a million remaps costs a second: redo it only when one was added.
  let sorted: ReturnType<RemapDevice["remaps"]> = [];
  return {
    status(): SetupStatus {
      const pendingBlocks = engine.pendingBlocks;
      const served = sources.served?.() ?? noServed;
      return {
        setup: {
          uuid: description.setup.uuid,
          name: description.setup.name,
          blockBytes: engine.blockBytes,
          sizeBytes: engine.sizeBytes,
          state: engine.failure !== undefined ? "failed" : engine.degraded ? "degraded" : "clean",
          failure: engine.failure,
          formatVersion: FORMAT_VERSION,
        },
        main: {
          path: description.main.path,
          kind: description.main.kind,
          sizeBytes: description.main.sizeBytes,
          fingerprint: description.main.fingerprint,
        },
        spares: engine.spares.map((spare) => {
          const report = opened.reports[spare.index]!;
          const record = description.spares[spare.index]!;
          return {
            index: spare.index,
            uuid: record.uuid,
            path: spare.device.name,
            sizeBytes: spare.device.sizeBytes,
            state: spare.state,
            slotCount: spare.store.payload.layout.slotCount,
            slotsUsed: spare.store.slotsUsed,
            validCopies: report.validCopies,
            copies: report.copies.map((copy) => ({
              copyIndex: copy.copyIndex,
              sector: copy.sector,
              valid: copy.valid,
              reason: copy.reason,
              sequence: copy.sequence,
              winner: copy.winner,
              repaired: copy.repaired,
            })),
          };
        }),
        counters: {
          reads: engine.counters.reads + served.reads,
          writes: engine.counters.writes + served.writes,
          bytesRead: engine.counters.bytesRead + served.bytesRead,
          bytesWritten: engine.counters.bytesWritten + served.bytesWritten,
          flushes: engine.counters.flushes + served.flushes,
          readErrors: engine.counters.readErrors,
          writeErrors: engine.counters.writeErrors,
          remaps: engine.remapCount,
          remapsCreated: engine.counters.remapsCreated,
          pending: pendingBlocks.length,
        },
        pendingBlocks,
        events: sources.eventCounts.current(),
        nbd: {
          exportName: nbd.exportName,
          unixPath: nbd.unixPath,
          tcp: nbd.tcp,
          connections: nbd.connections(),
          kernelDevice: nbd.kernelDevice?.(),
        },
        uptimeSeconds: Math.floor((Date.now() - startedMs) / 1000),
        version: VERSION,
      };
    },
    events(limit: number) {
      return history.recent(limit);
    },
    ...(sources.healthReport === undefined ? {} : { healthReport: sources.healthReport }),
    remaps(offset: number, limit: number) {
      if (sorted.length !== engine.remapCount) sorted = engine.remaps();
      return { total: sorted.length, entries: sorted.slice(offset, offset + limit) };
    },
  };
}

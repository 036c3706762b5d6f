/**
 * Builds the API's read-only {@link StatusSource} from a running engine.
 *
 * @module
 */

import type { AlertTargetCounts } from "../alerts/alert.ts";
import type { PolicyEvaluation } from "../policy/policy.ts";
import type { DataPlaneCounters } from "../datapath/data_plane.ts";
import type {
  ScrubHealth,
  SetupHealth,
  SetupStatus,
  SpareMigrationStatus,
  StatusSource,
} from "../api/status.ts";
import type { OpenedSpares } from "../assembly/assemble.ts";
import { FORMAT_VERSION } from "../metadata/superblock.ts";
import type { RemapDevice, SpareMigration } from "../remap/remap_device.ts";
import type { EventHistory } from "../events/event_history.ts";
import type { EventCounts } from "../api/event_counts.ts";
import { type HealthReport, withSmartRisk } from "../scan/mod.ts";
import { VERSION } from "../version.ts";
import { FORECAST_EVENTS_MAX, FORECAST_REFRESH_MS, FORECAST_WINDOW_DAYS } from "../constants.ts";
import { forecastSparePool, type SparePoolForecast } from "../health/forecast.ts";
import type { SmartMonitor } from "./smart_monitor.ts";

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
  /** Each alert target's delivery counts. @default none */
  alerts?: () => AlertTargetCounts[];
  /** Each policy's last evaluation. @default none */
  policies?: () => PolicyEvaluation[];
  /** The metadata scrub's state. @default no health section */
  scrub?: () => ScrubHealth;
  /** The SMART reader, when it runs. @default none */
  smart?: SmartMonitor;
  /** The scanner's health report. @default none (no scanner) */
  healthReport?: () => HealthReport;
}

const DAY_MS = 86_400_000;

/** What a forecast was computed from, so an unchanged pool reuses it. */
interface ForecastCache {
  atMs: number;
  key: string;
  forecast: SparePoolForecast;
}

/**
 * SMART, the scrub and the spare-pool forecast, from the history and the
 * engine. The forecast reads up to a week of history, so it is computed again
 * only when the pool changed or {@link FORECAST_REFRESH_MS} passed, not on
 * every poll of the dashboard.
 */
function healthOf(
  engine: RemapDevice,
  sources: StatusSources & { scrub: () => ScrubHealth },
  cache: { current?: ForecastCache },
): SetupHealth {
  return {
    smart: sources.smart?.status() ?? null,
    scrub: sources.scrub(),
    forecast: forecastOf(engine, sources, cache),
  };
}

/** The spare-pool forecast, computed again only when the pool changed or it is old. */
function forecastOf(
  engine: RemapDevice,
  sources: StatusSources,
  cache: { current?: ForecastCache },
): SparePoolForecast {
  const nowMs = Date.now();
  const working = engine.spares.filter((spare) => spare.state === "active");
  const slotCount = working.reduce((sum, spare) => sum + spare.layout.slotCount, 0);
  const slotsUsed = working.reduce((sum, spare) => sum + engine.slotsUsedOf(spare.index), 0);
  const pendingCount = engine.pendingBlocks.length;
  const smartRises = sources.smart?.mainDiskRises() ?? [];
  const key = JSON.stringify([slotCount, slotsUsed, pendingCount, engine.remapCount, smartRises]);
  const cached = cache.current;
  if (cached === undefined || cached.key !== key || nowMs - cached.atMs >= FORECAST_REFRESH_MS) {
    const forecast = forecastSparePool({
      nowMs,
      events: sources.history.since(nowMs - FORECAST_WINDOW_DAYS * DAY_MS, FORECAST_EVENTS_MAX),
      historyStartMs: sources.history.firstTimeMs(),
      slotCount,
      slotsUsed,
      pendingCount,
      smartRises,
    });
    cache.current = { atMs: nowMs, key, forecast };
  }
  return cache.current!.forecast;
}

/**
 * The scanner's report with what the service knows besides: SMART of every
 * disk, the main disk's SMART risk in the setup's risk (`withSmartRisk`),
 * and the spare-pool forecast.
 */
function fullHealthReport(
  report: HealthReport,
  engine: RemapDevice,
  sources: StatusSources,
  cache: { current?: ForecastCache },
): HealthReport {
  const smart = sources.smart?.status() ?? null;
  const main = smart?.disks.find((disk) => disk.role === "main" && disk.risk !== undefined);
  return {
    ...report,
    setup: withSmartRisk(
      report.setup,
      main === undefined ? undefined : { path: main.path, risk: main.risk! },
    ),
    smart: smart === null ? null : smart.disks,
    forecast: forecastOf(engine, sources, cache),
  };
}

/** A spare removal's progress with its rate and the time left. */
export function migrationStatusOf(
  migration: SpareMigration | undefined,
): SpareMigrationStatus | null {
  if (migration === undefined) return null;
  const elapsedS = Math.max(((migration.endedMs ?? Date.now()) - migration.startedMs) / 1000, 1e-3);
  const rateBlocksPerS = migration.blocksMoved / elapsedS;
  const left = migration.blocksTotal - migration.blocksMoved - migration.blocksFailed;
  return {
    ...migration,
    rateBlocksPerS,
    etaSeconds: migration.state === "running" && rateBlocksPerS > 0
      ? Math.max(left, 0) / rateBlocksPerS
      : null,
  };
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
  const forecastCache: { current?: ForecastCache } = {};
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
          allocation: engine.allocationPolicy,
        },
        main: {
          path: description.main.path,
          kind: description.main.kind,
          sizeBytes: description.main.sizeBytes,
          fingerprint: description.main.fingerprint,
        },
        spares: engine.spares.map((spare) => {
          const position = opened.stores.findIndex((store) =>
            store.payload.spareIndex === spare.index
          );
          const report = position >= 0 ? opened.reports[position] : undefined;
          // A spare added while serving is not in the description read at the start.
          const records = (spare.store?.payload ?? description).spares;
          return {
            index: spare.index,
            uuid: records[spare.index]?.uuid ?? description.spares[spare.index]?.uuid ?? "",
            path: spare.device.name,
            sizeBytes: spare.device.sizeBytes,
            state: spare.state,
            slotCount: spare.layout.slotCount,
            slotsUsed: engine.slotsUsedOf(spare.index),
            missing: spare.store === undefined,
            errors: engine.spareErrors[spare.index] ?? 0,
            allocationStopped: engine.allocationStopped.includes(spare.index),
            validCopies: report?.validCopies ?? 0,
            copies: (report?.copies ?? []).map((copy) => ({
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
        alerts: sources.alerts?.() ?? [],
        policies: sources.policies?.() ?? [],
        uptimeSeconds: Math.floor((Date.now() - startedMs) / 1000),
        ...(sources.scrub === undefined
          ? {}
          : { health: healthOf(engine, { ...sources, scrub: sources.scrub }, forecastCache) }),
        migration: migrationStatusOf(engine.migration),
        version: VERSION,
      };
    },
    events(limit: number) {
      return history.recent(limit);
    },
    ...(sources.healthReport === undefined ? {} : {
      healthReport: () => fullHealthReport(sources.healthReport!(), engine, sources, forecastCache),
    }),
    remaps(offset: number, limit: number) {
      if (sorted.length !== engine.remapCount) sorted = engine.remaps();
      return { total: sorted.length, entries: sorted.slice(offset, offset + limit) };
    },
  };
}

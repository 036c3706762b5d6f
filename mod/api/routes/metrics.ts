/**
 * `GET /metrics`: the setup's counters and gauges for Prometheus.
 *
 * Every sample carries `setup="<name>"`; per-spare samples add `spare="<index>"`.
 * `dm_remap_degraded` follows the same rule as `/api/v1/health`, so an alert
 * on either fires together.
 *
 * @module
 */

import type { Context } from "hono";
import type { ApiEnv } from "../_env.ts";
import {
  encodePrometheus,
  type MetricFamily,
  type MetricType,
  PROMETHEUS_CONTENT_TYPE,
} from "../prometheus.ts";
import { SMART_RISK_LEVELS } from "../../health/smart_risk.ts";
import type { HealthReport } from "../../scan/mod.ts";
import type { SetupHealth, SetupStatus, SpareStatus } from "../status.ts";
import { healthOf } from "./health.ts";

/** Blocks the spare removal in progress has still to move; 0 when none runs. */
function migrationBlocksLeft(status: SetupStatus): number {
  const migration = status.migration;
  if (migration === null || migration.state !== "running") return 0;
  return Math.max(migration.blocksTotal - migration.blocksMoved - migration.blocksFailed, 0);
}

/**
 * Lists the metric families of a setup.
 *
 * @param status The current status.
 * @param health The health report, when the server runs a scanner: adds the scanner's families.
 * @returns The families in a fixed order, each with its samples.
 */
export function metricFamiliesOf(status: SetupStatus, health?: HealthReport): MetricFamily[] {
  const setup = { setup: status.setup.name };
  const { counters } = status;
  function one(name: string, type: MetricType, help: string, value: number): MetricFamily {
    return { name, type, help, samples: [{ labels: setup, value }] };
  }
  function perSpare(
    name: string,
    help: string,
    value: (spare: SpareStatus) => number,
  ): MetricFamily {
    const samples = status.spares.map((spare) => ({
      labels: { ...setup, spare: String(spare.index) },
      value: value(spare),
    }));
    return { name, type: "gauge", help, samples };
  }
  return [
    one("dm_remap_reads_total", "counter", "Read requests served.", counters.reads),
    one("dm_remap_writes_total", "counter", "Write requests served.", counters.writes),
    one("dm_remap_read_bytes_total", "counter", "Bytes read by clients.", counters.bytesRead),
    one(
      "dm_remap_written_bytes_total",
      "counter",
      "Bytes written by clients.",
      counters.bytesWritten,
    ),
    one("dm_remap_flushes_total", "counter", "Flush requests served.", counters.flushes),
    one(
      "dm_remap_read_errors_total",
      "counter",
      "Read requests answered with an error.",
      counters.readErrors,
    ),
    one(
      "dm_remap_write_errors_total",
      "counter",
      "Write requests answered with an error.",
      counters.writeErrors,
    ),
    one(
      "dm_remap_remaps_created_total",
      "counter",
      "Blocks remapped since start.",
      counters.remapsCreated,
    ),
    one("dm_remap_remaps", "gauge", "Blocks remapped to a spare slot.", counters.remaps),
    one(
      "dm_remap_pending_blocks",
      "gauge",
      "Unreadable blocks waiting for a write.",
      counters.pending,
    ),
    one(
      "dm_remap_degraded",
      "gauge",
      "1 when /api/v1/health answers 503 (degraded, or blocks pending), else 0.",
      degradedValue(status),
    ),
    perSpare(
      "dm_remap_spare_active",
      "1 when the spare takes new slots, 0 when it failed, drains or was removed.",
      (spare) => {
        return spare.state === "active" ? 1 : 0;
      },
    ),
    perSpare(
      "dm_remap_spare_allocation_stopped",
      "1 when a policy stopped new slots on the spare (stop-allocating), else 0.",
      (spare) => spare.allocationStopped ? 1 : 0,
    ),
    perSpare(
      "dm_remap_spare_draining",
      "1 while the spare's blocks move to the others (spare remove), else 0.",
      (spare) => spare.state === "draining" ? 1 : 0,
    ),
    one(
      "dm_remap_spare_migration_blocks_left",
      "gauge",
      "Blocks still to move off the spare being removed; 0 when none is.",
      migrationBlocksLeft(status),
    ),
    {
      name: "dm_remap_allocation_policy",
      type: "gauge",
      help: "1 for the allocation policy new remaps follow.",
      samples: [{ labels: { ...setup, policy: status.setup.allocation }, value: 1 }],
    },
    perSpare(
      "dm_remap_spare_missing",
      "1 when the setup is served without the spare (its blocks read EIO), else 0.",
      (spare) => spare.missing ? 1 : 0,
    ),
    {
      name: "dm_remap_spare_slot_errors_total",
      type: "counter",
      help: "I/O errors on the spare's slots since start (health-weighted allocation avoids it).",
      samples: status.spares.map((spare) => ({
        labels: { ...setup, spare: String(spare.index) },
        value: spare.errors,
      })),
    },
    perSpare("dm_remap_spare_slots", "Data slots on the spare.", (spare) => spare.slotCount),
    perSpare(
      "dm_remap_spare_slots_used",
      "Data slots holding a remapped block.",
      (spare) => spare.slotsUsed,
    ),
    perSpare(
      "dm_remap_metadata_copies_valid",
      "Metadata copies valid when the spare was opened.",
      (spare) => {
        return spare.validCopies;
      },
    ),
    {
      name: "dm_remap_events_total",
      type: "counter",
      help: "Events of each kind since the setup was served (remap, pending, read-error, ...).",
      samples: Object.entries(status.events).map(([type, value]) => ({
        labels: { ...setup, type },
        value,
      })),
    },
    ...alertFamilies(status),
    one("dm_remap_nbd_connections", "gauge", "NBD clients connected now.", status.nbd.connections),
    one(
      "dm_remap_uptime_seconds",
      "gauge",
      "Seconds since the setup was served.",
      status.uptimeSeconds,
    ),
    ...(status.health === undefined ? [] : healthFamilies(status.health, setup)),
    ...(health === undefined ? [] : scanFamiliesOf(health, setup)),
  ];
}

/** The scanner's and the health score's families. */
function scanFamiliesOf(health: HealthReport, setup: { setup: string }): MetricFamily[] {
  const { scan } = health;
  function gauge(name: string, help: string, value: number): MetricFamily {
    return { name, type: "gauge", help, samples: [{ labels: setup, value }] };
  }
  return [
    gauge(
      "dm_remap_scan_progress_ratio",
      "Part of the main disk the scan pass in progress has read (0 between passes).",
      scan.progressRatio,
    ),
    gauge(
      "dm_remap_scan_rate_bytes_per_second",
      "The scanner's recent read rate.",
      scan.rateBytesPerS,
    ),
    gauge(
      "dm_remap_scan_scanning",
      "1 while a scan pass runs, else 0.",
      scan.state === "scanning" ? 1 : 0,
    ),
    // Absent while a pass runs, is paused, or the schedule is off (`--no-scan`).
    ...(scan.nextPassDueMs === undefined ? [] : [
      gauge(
        "dm_remap_scan_next_pass_timestamp_seconds",
        "When the next scheduled scan pass starts, in Unix seconds.",
        Math.floor(scan.nextPassDueMs / 1000),
      ),
    ]),
    {
      name: "dm_remap_scan_passes_total",
      type: "counter",
      help: "Full scan passes completed, ever.",
      samples: [{ labels: setup, value: scan.passesCompleted }],
    },
    {
      name: "dm_remap_scan_read_bytes_total",
      type: "counter",
      help: "Bytes of the main disk the scanner read since start.",
      samples: [{ labels: setup, value: scan.bytesScanned }],
    },
    {
      name: "dm_remap_scan_relocations_total",
      type: "counter",
      help: "Weak or slow blocks the scanner copied to a spare since start.",
      samples: [{ labels: setup, value: scan.relocations }],
    },
    gauge("dm_remap_health_score", "The setup's health score, 0-100.", health.setup.score),
    {
      name: "dm_remap_region_health_score",
      type: "gauge",
      help: "Each main-disk region's health score, 0-100.",
      samples: health.regions.map((region) => ({
        labels: { ...setup, region: String(region.regionIndex) },
        value: region.score,
      })),
    },
  ];
}

/** SMART, the spare-pool forecast and the metadata scrub. */
function healthFamilies(health: SetupHealth, setup: { setup: string }): MetricFamily[] {
  return [
    ...(health.smart === null ? [] : smartFamilies(health.smart, setup)),
    ...forecastFamilies(health, setup),
    ...scrubFamilies(health, setup),
  ];
}

function smartFamilies(
  smart: NonNullable<SetupHealth["smart"]>,
  setup: { setup: string },
): MetricFamily[] {
  const read = smart.disks.filter((disk) => disk.reading !== undefined);
  const labelsOf = (disk: { path: string; role: string }) => ({
    ...setup,
    disk: disk.path,
    role: disk.role,
  });
  const ok = read.flatMap((disk) =>
    disk.reading?.state === "ok" ? [{ disk, reading: disk.reading }] : []
  );
  return [
    {
      name: "dm_remap_smart_available",
      type: "gauge",
      help:
        "1 when the disk answered SMART at its last reading, 0 when it has none (file, virtual disk).",
      samples: read.map((disk) => ({
        labels: labelsOf(disk),
        value: disk.reading?.state === "ok" ? 1 : 0,
      })),
    },
    {
      name: "dm_remap_smart_risk_level",
      type: "gauge",
      help: `SMART risk of the disk: ${
        SMART_RISK_LEVELS.map((level, i) => `${i} ${level}`).join(", ")
      }.`,
      samples: read.map((disk) => ({
        labels: labelsOf(disk),
        value: SMART_RISK_LEVELS.indexOf(disk.risk?.level ?? "none"),
      })),
    },
    {
      name: "dm_remap_smart_counter",
      type: "gauge",
      help:
        "A SMART counter of the disk (5, 187, 188, 197, 198, 199; NVMe media errors, percentage used).",
      samples: ok.flatMap(({ disk, reading }) =>
        Object.entries(reading.counters).map(([counter, value]) => ({
          labels: { ...labelsOf(disk), counter },
          value: value as number,
        }))
      ),
    },
    {
      name: "dm_remap_smart_temperature_celsius",
      type: "gauge",
      help: "The disk's temperature at its last SMART reading.",
      samples: ok.flatMap(({ disk, reading }) =>
        reading.temperatureC === undefined
          ? []
          : [{ labels: labelsOf(disk), value: reading.temperatureC }]
      ),
    },
  ];
}

const SECONDS_PER_DAY = 86_400;

function forecastFamilies(health: SetupHealth, setup: { setup: string }): MetricFamily[] {
  const { forecast } = health;
  const days = forecast.daysLeft;
  // Prometheus's base unit of time is the second; the forecast counts days.
  const bound = (name: string, daysLeft: number | null | undefined) => ({
    labels: { ...setup, bound: name },
    value: daysLeft === null || daysLeft === undefined ? Infinity : daysLeft * SECONDS_PER_DAY,
  });
  return [
    {
      name: "dm_remap_spare_pool_seconds_left",
      type: "gauge",
      help: "Seconds until the spare pool is full at the recent remap rate (+Inf: not filling).",
      samples: [
        bound("low", days?.low),
        bound("expected", days?.expected),
        bound("high", days?.high),
      ],
    },
    {
      name: "dm_remap_remaps_per_day",
      type: "gauge",
      help: "New remaps per day over the forecast's window.",
      samples: [{ labels: setup, value: forecast.remapsPerDay }],
    },
  ];
}

function scrubFamilies(health: SetupHealth, setup: { setup: string }): MetricFamily[] {
  const { scrub } = health;
  const perSpare = (value: (spare: typeof scrub.spares[number]) => number) =>
    scrub.spares.map((spare) => ({
      labels: { ...setup, spare: String(spare.spareIndex) },
      value: value(spare),
    }));
  return [
    {
      name: "dm_remap_metadata_scrub_passes_total",
      type: "counter",
      help: "Metadata scrub passes since the setup was served.",
      samples: [{ labels: setup, value: scrub.passes }],
    },
    {
      name: "dm_remap_metadata_scrub_repairs_total",
      type: "counter",
      help: "Metadata copies and tables the scrub rewrote since the setup was served.",
      samples: perSpare((spare) => spare.repairsTotal),
    },
    {
      name: "dm_remap_metadata_scrub_failures",
      type: "gauge",
      help: "Failed metadata scrubs of the spare in a row.",
      samples: perSpare((spare) => spare.failures),
    },
    {
      name: "dm_remap_metadata_scrub_degraded",
      type: "gauge",
      help: "1 when the spare's metadata scrub failed too often and is given up, else 0.",
      samples: perSpare((spare) => spare.state === "degraded" ? 1 : 0),
    },
    {
      name: "dm_remap_metadata_scrub_last_timestamp_seconds",
      type: "gauge",
      help: "When the spare's metadata was last scrubbed (seconds since the epoch; 0: never).",
      samples: perSpare((spare) => (spare.lastScrubMs ?? 0) / 1000),
    },
  ];
}

/** Per alert target: what was sent, failed, dropped (queue full) and held back (limits). */
function alertFamilies(status: SetupStatus): MetricFamily[] {
  const family = (
    name: string,
    help: string,
    value: (counts: SetupStatus["alerts"][number]) => number,
  ): MetricFamily => ({
    name,
    type: "counter",
    help,
    samples: status.alerts.map((counts) => ({
      labels: { setup: status.setup.name, target: counts.name },
      value: value(counts),
    })),
  });
  return [
    family("dm_remap_alerts_sent_total", "Alerts delivered to the target.", (c) => c.sent),
    family(
      "dm_remap_alerts_failed_total",
      "Alerts the target did not take after every attempt.",
      (c) => c.failed,
    ),
    family(
      "dm_remap_alerts_dropped_total",
      "Alerts dropped because the target's queue was full.",
      (c) => c.dropped,
    ),
    family(
      "dm_remap_alerts_suppressed_total",
      "Alerts held back by the target's rate limit or repeat interval.",
      (c) => c.suppressed,
    ),
  ];
}

/**
 * Answers with the metrics in text exposition format 0.0.4.
 *
 * @param c The request context; reads `c.var.status`.
 * @returns 200 with `Content-Type: text/plain; version=0.0.4; charset=utf-8`.
 */
export function getMetrics(c: Context<ApiEnv>): Response {
  const text = encodePrometheus(
    metricFamiliesOf(c.var.status.status(), c.var.status.healthReport?.()),
  );
  return c.body(text, 200, { "Content-Type": PROMETHEUS_CONTENT_TYPE });
}

function degradedValue(status: SetupStatus): number {
  return healthOf(status).status === "ok" ? 0 : 1;
}

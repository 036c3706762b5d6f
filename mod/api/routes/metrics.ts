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
import type { SetupStatus, SpareStatus } from "../status.ts";
import type { HealthReport } from "../../scan/mod.ts";
import { healthOf } from "./health.ts";

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
    ...basicFamilies(),
    ...(health === undefined ? [] : scanFamiliesOf(health, setup)),
  ];

  function basicFamilies(): MetricFamily[] {
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
        "1 when the spare takes new slots, 0 when it failed.",
        (spare) => {
          return spare.state === "active" ? 1 : 0;
        },
      ),
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
      one(
        "dm_remap_nbd_connections",
        "gauge",
        "NBD clients connected now.",
        status.nbd.connections,
      ),
      one(
        "dm_remap_uptime_seconds",
        "gauge",
        "Seconds since the setup was served.",
        status.uptimeSeconds,
      ),
    ];
  }
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
    {
      name: "dm_remap_scan_passes_total",
      type: "counter",
      help: "Full scan passes completed, ever.",
      samples: [{ labels: setup, value: scan.passesCompleted }],
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

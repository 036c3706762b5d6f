/**
 * The read-only view of a running setup that the HTTP API serves.
 *
 * The API never sees devices: `serve` builds a {@link StatusSource} from the
 * remap engine and the NBD server, and the API only reads it.
 *
 * @module
 */

import type { AlertTargetCounts } from "../alerts/alert.ts";
import type { StoredEvent } from "../events/event_history.ts";
import type { PolicyEvaluation } from "../policy/policy.ts";
import type { SparePoolForecast } from "../health/forecast.ts";
import type { SmartReading } from "../health/smart_report.ts";
import type { SmartRisk } from "../health/smart_risk.ts";
import type { SetupEventType } from "../events/setup_event.ts";
import type { RemapCounters, SpareMigration } from "../remap/remap_device.ts";
import type { HealthReport, ScanStatus } from "../scan/mod.ts";

/** Health of one spare's five metadata copies. */
export interface CopyHealth {
  copyIndex: number;
  sector: number;
  valid: boolean;
  reason?: string;
  sequence?: number;
  winner: boolean;
  repaired: boolean;
}

/** One spare of the running setup. */
export interface SpareStatus {
  index: number;
  uuid: string;
  path: string;
  sizeBytes: number;
  state: "active" | "failed" | "missing" | "draining" | "removed";
  slotCount: number;
  slotsUsed: number;
  /** The setup is served without this spare: the blocks in its slots are unreadable. */
  missing: boolean;
  /** I/O errors on its slots since the setup was served. */
  errors: number;
  /** A policy stopped allocating on it: new remaps go elsewhere while another spare can take them. */
  allocationStopped: boolean;
  /** Copies that were valid when the spare was opened, e.g. 5 of 5. */
  validCopies: number;
  copies: CopyHealth[];
}

/** One disk's SMART as the periodic reader last saw it. */
export interface SmartDiskHealth {
  /** `main` or `spare N`. */
  role: string;
  /** The disk read: the setup's path, or a physical disk under it. */
  path: string;
  /** The setup's path when `path` is a disk under it (a dm or md device, a partition). */
  under?: string;
  /** Absent until the first reading finished. */
  reading?: SmartReading;
  risk?: SmartRisk;
}

/** The periodic SMART reader (`serve --smart-interval`, off with `--no-smart`). */
export interface SmartHealth {
  intervalMs: number;
  /** Rounds of readings since start. */
  rounds: number;
  disks: SmartDiskHealth[];
}

/** One spare as the metadata scrub last saw it. */
export interface SpareScrubHealth {
  spareIndex: number;
  /**
   * `ok`: the last scrub found nothing; `repaired`: it repaired something;
   * `retrying`: it failed and will be tried again; `degraded`: it failed
   * too often and is left alone; `failed-spare`: the engine failed the spare;
   * `not-yet`: not scrubbed yet.
   */
  state: "not-yet" | "ok" | "repaired" | "retrying" | "degraded" | "failed-spare";
  lastScrubMs?: number;
  /** The repairs of the last scrub that repaired something. */
  lastRepairs: string[];
  repairsTotal: number;
  /** Failed scrubs in a row. */
  failures: number;
  lastError?: string;
  nextScrubMs?: number;
}

/** The metadata scrub (`serve --scrub-interval`). */
export interface ScrubHealth {
  intervalMs: number;
  /** Passes over the spares since start. */
  passes: number;
  lastPassMs?: number;
  spares: SpareScrubHealth[];
}

/** SMART, the spare-pool forecast and the metadata scrub of a running setup. */
export interface SetupHealth {
  /** Null when SMART reading is off (`--no-smart`). */
  smart: SmartHealth | null;
  scrub: ScrubHealth;
  forecast: SparePoolForecast;
}

/** Where the removal of a spare (`spare remove`) stands, with its rate. */
export interface SpareMigrationStatus extends SpareMigration {
  /** Blocks moved per second since it started. */
  rateBlocksPerS: number;
  /** Seconds left at that rate; null while nothing moved yet or once it ended. */
  etaSeconds: number | null;
}

/** Everything `dm-remap status` shows. */
export interface SetupStatus {
  setup: {
    uuid: string;
    name: string;
    blockBytes: number;
    sizeBytes: number;
    /** "failed" once the main disk is gone: every request is EIO. */
    state: "clean" | "degraded" | "failed";
    /** Why the setup failed, when it did. */
    failure?: string;
    formatVersion: number;
    /** Which spare new remaps go to (`remap/allocation_policy.ts`). */
    allocation: string;
  };
  main: { path: string; kind: "file" | "block"; sizeBytes: number; fingerprint: string };
  spares: SpareStatus[];
  /** The engine's request and error counters, with the setup's remaps and pending blocks now. */
  counters: Omit<RemapCounters, "remapBatches"> & { remaps: number; pending: number };
  pendingBlocks: number[];
  /** Events of each kind since the service started. */
  events: Record<SetupEventType, number>;
  nbd: {
    exportName: string;
    unixPath?: string;
    tcp?: string;
    connections: number;
    /** The kernel's device the server attached itself (`/dev/nbdN`). */
    kernelDevice?: string;
  };
  /** Each alert target's delivery counts since the service started. */
  alerts: AlertTargetCounts[];
  /** Each policy's last evaluation. */
  policies: PolicyEvaluation[];
  uptimeSeconds: number;
  /** SMART, forecast and scrub; absent where no service runs them. */
  health?: SetupHealth;
  /** The removal of a spare in progress, or the last one since the start; null before any. */
  migration: SpareMigrationStatus | null;
  /** The dm-remap version serving it. */
  version: string;
}

/** One remap, for the remaps listing. */
export interface RemapEntry {
  blockIndex: number;
  spareIndex: number;
  slotIndex: number;
}

/** What the API reads; implemented by `serve`. */
export interface StatusSource {
  status(): SetupStatus;
  /** Remaps sorted by block, from `offset`, at most `limit`. */
  remaps(offset: number, limit: number): { total: number; entries: RemapEntry[] };
  /** The newest events of the setup's history, at most `limit`. */
  events(limit: number): StoredEvent[];
  /** The health report with the scanner's status; absent when the server runs no scanner. */
  healthReport?(): HealthReport;
}

/** What the API may ask of the scanner: the only writes it makes (POST routes). */
export interface ScanControl {
  /** Starts a pass now, or lets a paused one go on. */
  startPass(): void;
  /** Pauses the pass where it is; the position is written. */
  stopPass(): Promise<void>;
  status(): ScanStatus;
}

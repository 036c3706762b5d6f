/**
 * The read-only view of a running setup that the HTTP API serves.
 *
 * The API never sees devices: `serve` builds a {@link StatusSource} from the
 * remap engine and the NBD server, and the API only reads it.
 *
 * @module
 */

import type { StoredEvent } from "../events/event_history.ts";
import type { SetupEventType } from "../events/setup_event.ts";
import type { RemapCounters } from "../remap/remap_device.ts";
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
  state: "active" | "failed";
  slotCount: number;
  slotsUsed: number;
  /** Copies that were valid when the spare was opened, e.g. 5 of 5. */
  validCopies: number;
  copies: CopyHealth[];
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
  uptimeSeconds: number;
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

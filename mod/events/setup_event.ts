/**
 * Everything a running setup reports: what the engine does to blocks and
 * spares ({@link RemapEvent}), and the service starting and stopping. One
 * discriminated union, so a subscriber switches on `type` and the compiler
 * checks it handled every kind.
 *
 * @example Describing an event as a log line
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeEvent } from "./setup_event.ts";
 *
 * assert.equal(
 *   describeEvent({ type: "remap", blockIndex: 7, spareIndex: 0, slotIndex: 3 }),
 *   "remapped block 7 to spare 0 slot 3",
 * );
 * ```
 *
 * @module
 */

import type { RemapEvent } from "../remap/remap_device.ts";

/** The service's own lifecycle, as the history records it. */
export type ServiceEvent =
  | { type: "started"; sizeBytes: number; remapCount: number; pendingCount: number }
  | { type: "stopped"; remapCount: number }
  /** SIGHUP read the configuration again: what changed live, and what waits for a restart. */
  | { type: "config-reloaded"; applied: string[]; needsRestart: string[] };

/**
 * What the health monitors of a running setup report: SMART (`smart_monitor.ts`)
 * and the metadata scrub (`metadata_scrubber.ts`). `smart-risk-raised` is the
 * signal a scanner uses to start an early pass.
 */
export type HealthEvent =
  | {
    type: "smart-risk-raised";
    /** The disk's path and role, e.g. `/dev/sda (main)`. */
    device: string;
    /** The new level (`smart_risk.ts`: low, elevated, high, critical). */
    level: string;
    reasons: string[];
  }
  | { type: "metadata-repaired"; spareIndex: number; repairs: string[] }
  | {
    type: "metadata-scrub-failed";
    spareIndex: number;
    reason: string;
    /** Failed scrubs in a row. */
    attempt: number;
    retryInMs: number;
  }
  | { type: "metadata-degraded"; spareIndex: number; reason: string; attempts: number };

/** Describes a health event in words. */
function describeHealthEvent(event: HealthEvent): string {
  switch (event.type) {
    case "smart-risk-raised":
      return `SMART risk of ${event.device} is now ${event.level}: ${event.reasons.join("; ")}`;
    case "metadata-repaired":
      return `metadata scrub repaired spare ${event.spareIndex}: ${event.repairs.join("; ")}`;
    case "metadata-scrub-failed":
      return `metadata scrub of spare ${event.spareIndex} failed (attempt ${event.attempt}), ` +
        `retry in ${Math.round(event.retryInMs / 1000)} s: ${event.reason}`;
    case "metadata-degraded":
      return `metadata of spare ${event.spareIndex} is degraded: scrub failed ` +
        `${event.attempts} times, no more retries; replace the spare: ${event.reason}`;
  }
}

/** What the background scanner reports (mod/scan/scanner.ts). */
export type ScanEvent =
  | {
    type: "relocated";
    blockIndex: number;
    /** Why the block was moved before it failed. */
    reason: "retried" | "slow";
    latencyMs: number;
  }
  | { type: "relocation-failed"; blockIndex: number; reason: string }
  | {
    type: "scan-pass-completed";
    durationMs: number;
    bytesScanned: number;
    /** The setup's health score when the pass ended. */
    score: number;
  };

// ---- Discovery and assembly (issue 14, `dm-remap discover` / `dm-remap assemble`) ----

/**
 * What discovery and assembly decided about a setup, with the reasons and
 * the devices involved. Recorded in the setup's history by the CLI; no
 * running setup publishes them.
 */
export type AssemblyEvent =
  | {
    type: "discovered";
    setupUuid: string;
    state: string;
    confidence: number;
    reasons: string[];
    devices: string[];
  }
  | {
    type: "assembly-decision";
    setupUuid: string;
    /** `start`, `refuse`, `already-running`, `would-start` (dry run), `waiting` (incremental). */
    decision: string;
    reasons: string[];
    devices: string[];
  }
  | {
    type: "incremental-seen";
    setupUuid: string;
    spareIndex: number;
    device: string;
    seenCount: number;
    expectedCount: number;
  };

/** Describes a discovery or assembly event in words. */
function describeAssemblyEvent(event: AssemblyEvent): string {
  const because = (reasons: string[]) => reasons.length > 0 ? `: ${reasons.join("; ")}` : "";
  const on = (devices: string[]) => devices.length > 0 ? ` [${devices.join(", ")}]` : "";
  switch (event.type) {
    case "discovered":
      return `discovered setup ${event.setupUuid}: ${event.state}, confidence ` +
        `${event.confidence}${on(event.devices)}${because(event.reasons)}`;
    case "assembly-decision":
      return `assemble ${event.setupUuid}: ${event.decision}${on(event.devices)}` +
        because(event.reasons);
    case "incremental-seen":
      return `incremental: spare ${event.spareIndex} of ${event.setupUuid} seen on ` +
        `"${event.device}" (${event.seenCount} of ${event.expectedCount} spares seen)`;
  }
}

// ---- end of discovery and assembly ----

/** One event of a running setup: what its event bus publishes. */
export type SetupEvent = RemapEvent | ServiceEvent | HealthEvent | ScanEvent;

/**
 * Every event the history records: a running setup's, and the decisions
 * discovery and assembly make about it (which no running setup publishes, so
 * they are not counted per kind by the status API).
 */
export type RecordedEvent = SetupEvent | AssemblyEvent;

/** The kinds of event. */
export type SetupEventType = SetupEvent["type"];

/** A count per kind of event, every kind at zero (the compiler checks that none is missing). */
export function zeroEventCounts(): Record<SetupEventType, number> {
  return {
    "remap": 0,
    "pending": 0,
    "read-error": 0,
    "remap-failed": 0,
    "spare-failed": 0,
    "spare-added": 0,
    "spare-draining": 0,
    "spare-removed": 0,
    "degraded": 0,
    "main-failed": 0,
    "started": 0,
    "stopped": 0,
    "config-reloaded": 0,
    "smart-risk-raised": 0,
    "metadata-repaired": 0,
    "metadata-scrub-failed": 0,
    "metadata-degraded": 0,
    "relocated": 0,
    "relocation-failed": 0,
    "scan-pass-completed": 0,
  };
}

/** Describes an event in words: the history's message and the log's line. */
export function describeEvent(event: RecordedEvent): string {
  switch (event.type) {
    case "remap":
      return `remapped block ${event.blockIndex} to spare ${event.spareIndex} slot ${event.slotIndex}`;
    case "pending":
      return event.blockCount === undefined
        ? `block ${event.blockIndex} is unreadable: pending until it is rewritten`
        : `blocks ${event.blockIndex} to ${event.blockIndex + event.blockCount - 1} ` +
          `(${event.blockCount}) are unreadable: pending until they are rewritten`;
    case "read-error":
      return `read error on the main disk: offset ${event.offsetBytes}, length ${event.lengthBytes}`;
    case "remap-failed":
      return `could not remap block ${event.blockIndex}: ${event.reason}`;
    case "spare-failed":
      return `spare ${event.spareIndex} failed and takes no new remaps: ${event.reason}`;
    case "spare-added":
      return `spare ${event.spareIndex} "${event.path}" joined the setup with ${event.slotCount} slots`;
    case "spare-draining":
      return `spare ${event.spareIndex} is being removed: its ${event.blocks} blocks move to the other spares`;
    case "spare-removed":
      return `spare ${event.spareIndex} left the setup after ${event.blocksMoved} blocks moved off it`;
    case "degraded":
      return `setup degraded: ${event.reason}`;
    case "main-failed":
      return `setup failed, every request is EIO: ${event.reason}`;
    case "started":
      return `serving ${event.sizeBytes} bytes with ${event.remapCount} remaps, ${event.pendingCount} pending`;
    case "stopped":
      return `stopped cleanly with ${event.remapCount} remaps`;
    case "config-reloaded":
      return `configuration reloaded: applied ${listOrNone(event.applied)}; ` +
        `needs a restart: ${listOrNone(event.needsRestart)}`;
    case "relocated":
      return `scanner moved block ${event.blockIndex} to a spare before it failed: it read ` +
        (event.reason === "retried"
          ? "only on a retry"
          : `slowly (${Math.round(event.latencyMs)} ms)`);
    case "relocation-failed":
      return `scanner could not move weak block ${event.blockIndex}: ${event.reason}`;
    case "scan-pass-completed":
      return `scan pass completed: ${event.bytesScanned} bytes in ${
        Math.round(event.durationMs / 1000)
      } s, health score ${event.score}`;
    case "discovered":
    case "assembly-decision":
    case "incremental-seen":
      return describeAssemblyEvent(event);
    case "smart-risk-raised":
    case "metadata-repaired":
    case "metadata-scrub-failed":
    case "metadata-degraded":
      return describeHealthEvent(event);
  }
}

/** The kinds of health event. */
const HEALTH_EVENT_TYPES: ReadonlySet<string> = new Set<HealthEvent["type"]>([
  "smart-risk-raised",
  "metadata-repaired",
  "metadata-scrub-failed",
  "metadata-degraded",
]);

/** Whether a health monitor reported it. */
export function isHealthEvent(event: SetupEvent): event is HealthEvent {
  return HEALTH_EVENT_TYPES.has(event.type);
}

/** Whether the scanner reported it. */
export function isScanEvent(event: SetupEvent): event is ScanEvent {
  return ["relocated", "relocation-failed", "scan-pass-completed"].includes(event.type);
}

/** Whether the engine reported it (the service's own events are not engine events). */
export function isEngineEvent(event: SetupEvent): event is RemapEvent {
  return event.type !== "started" && event.type !== "stopped" &&
    event.type !== "config-reloaded" && !isHealthEvent(event) && !isScanEvent(event);
}

function listOrNone(keys: readonly string[]): string {
  return keys.length === 0 ? "nothing" : keys.join(", ");
}

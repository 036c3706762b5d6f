/**
 * How a setup's events read in the log: their level (what journald shows
 * with `-p`) and their fields (`event=remap block=7 spare=0 slot=3`), so
 * one line per event can be searched by key without parsing sentences.
 *
 * @module
 */

import type { SetupEvent } from "../events/setup_event.ts";
import type { LogLevel, LogValue } from "../log/structured_log.ts";

/** The level of an event: losses and failures are errors, a protected failure a warning. */
export function levelOfEvent(event: SetupEvent): LogLevel {
  switch (event.type) {
    case "main-failed":
    case "remap-failed":
    case "pending":
      return "err";
    case "spare-failed":
    case "degraded":
    case "read-error":
    case "smart-risk-raised":
    case "metadata-scrub-failed":
    case "metadata-degraded":
      return "warning";
    case "remap":
      return "notice";
    case "config-reloaded":
    case "metadata-repaired":
    case "spare-added":
    case "spare-draining":
    case "spare-removed":
    case "relocated":
      return "notice";
    case "relocation-failed":
      return "warning";
    case "scan-pass-completed":
      return "info";
    case "started":
    case "stopped":
      return "info";
  }
}

/** The event's kind and its numbers as log fields, in a fixed order. */
export function logFieldsOf(event: SetupEvent): Record<string, LogValue> {
  const fields: Record<string, LogValue> = { event: event.type };
  if ("blockIndex" in event) fields.block = event.blockIndex;
  if ("blockCount" in event && event.blockCount !== undefined) fields.blocks = event.blockCount;
  if ("spareIndex" in event) fields.spare = event.spareIndex;
  if ("slotIndex" in event) fields.slot = event.slotIndex;
  if ("offsetBytes" in event) fields.offset_bytes = event.offsetBytes;
  if ("lengthBytes" in event) fields.length_bytes = event.lengthBytes;
  if ("remapCount" in event) fields.remaps = event.remapCount;
  if ("pendingCount" in event) fields.pending = event.pendingCount;
  if ("sizeBytes" in event) fields.size_bytes = event.sizeBytes;
  if ("applied" in event) fields.applied = event.applied.join(",");
  if ("needsRestart" in event) fields.needs_restart = event.needsRestart.join(",");
  if ("device" in event) fields.device = event.device;
  if ("level" in event) fields.risk = event.level;
  if ("path" in event) fields.path = event.path;
  if ("blocks" in event) fields.blocks = event.blocks;
  if ("blocksMoved" in event) fields.blocks_moved = event.blocksMoved;
  return fields;
}

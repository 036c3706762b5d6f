/**
 * `GET /api/v1/health`: ok or not, as an HTTP status monitoring can alert on.
 *
 * The setup has failed when its main disk is gone: every request is EIO.
 *
 * The setup is degraded when it can no longer protect new failures:
 * - the setup state is "degraded" (a failed block could not be remapped), or
 * - a spare has failed, or
 * - no active spare has a free slot, so the next failed write cannot be remapped, or
 * - the metadata scrub gave up on a spare whose copies it could not repair: its
 *   redundancy is gone until the spare is replaced.
 *
 * It is not ok either while blocks are pending: their data could not be read
 * from the main disk, and every read of them fails until a write remaps them.
 * The client has lost data there, which someone must look at, even though
 * the setup itself is working as designed.
 *
 * @module
 */

import type { Context } from "hono";
import type { ApiEnv } from "../_env.ts";
import type { SetupStatus } from "../status.ts";

/** The health report; `reasons` is empty exactly when `status` is "ok". */
export interface Health {
  /** "failed" wins over "degraded", which wins over "pending". */
  status: "ok" | "pending" | "degraded" | "failed";
  /** Why the setup is not ok, one sentence each. */
  reasons: string[];
  setup: { name: string; uuid: string; state: SetupStatus["setup"]["state"] };
  spares: { active: number; failed: number; slotsFree: number };
  pendingBlocks: number;
}

/**
 * Judges the health of a setup from its status.
 *
 * @param status The current status.
 * @returns "ok" with no reasons, or "pending" or "degraded" with at least one.
 */
export function healthOf(status: SetupStatus): Health {
  const reasons: string[] = [];
  const failed = status.setup.state === "failed";
  if (failed) {
    reasons.push(`Setup "${status.setup.name}" has failed: ${status.setup.failure}`);
  }
  if (status.setup.state === "degraded") {
    reasons.push(`Setup "${status.setup.name}" is in the degraded state`);
  }
  for (const spare of status.spares) {
    if (spare.state === "failed") reasons.push(`Spare ${spare.index} "${spare.path}" has failed`);
    if (spare.state === "missing") {
      reasons.push(`Spare ${spare.index} "${spare.path}" is missing: its blocks are unreadable`);
    }
  }
  const active = status.spares.filter((spare) => spare.state === "active");
  const slotsFree = active.reduce((sum, spare) => sum + (spare.slotCount - spare.slotsUsed), 0);
  if (slotsFree === 0) reasons.push("No active spare has a free slot: add a spare");
  for (const scrubbed of status.health?.scrub.spares ?? []) {
    if (scrubbed.state !== "degraded") continue;
    reasons.push(
      `Spare ${scrubbed.spareIndex}'s metadata could not be repaired by the scrub ` +
        `(${scrubbed.failures} failures in a row: ${scrubbed.lastError}): replace the spare`,
    );
  }
  const degraded = reasons.length > 0;
  const pending = status.counters.pending;
  if (pending > 0) {
    reasons.push(
      `${pending} ${pending === 1 ? "block is" : "blocks are"} pending: unreadable on the main ` +
        `disk, and read as errors until the client rewrites ${pending === 1 ? "it" : "them"}`,
    );
  }
  return {
    status: failed ? "failed" : degraded ? "degraded" : pending > 0 ? "pending" : "ok",
    reasons,
    setup: { name: status.setup.name, uuid: status.setup.uuid, state: status.setup.state },
    spares: { active: active.length, failed: status.spares.length - active.length, slotsFree },
    pendingBlocks: pending,
  };
}

/**
 * Answers 200 when the setup is ok and 503 when it failed, is degraded or has pending blocks.
 *
 * @param c The request context; reads `c.var.status`.
 * @returns The {@link Health} report.
 */
export function getHealth(c: Context<ApiEnv>): Response {
  const health = healthOf(c.var.status.status());
  return c.json(health, health.status === "ok" ? 200 : 503);
}

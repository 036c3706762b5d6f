/**
 * `GET /api/v1/health`: ok or degraded, as an HTTP status monitoring can alert on.
 *
 * The setup is degraded when it can no longer protect new failures:
 * - the setup state is "degraded" (a failed block could not be remapped), or
 * - a spare has failed, or
 * - no active spare has a free slot, so the next failed write cannot be remapped.
 *
 * Pending blocks alone do not degrade: they are unreadable blocks waiting for
 * the write that remaps them, which is the designed path. They are reported
 * here and in `/metrics` (`dm_remap_pending_blocks`) for alerts of their own.
 *
 * @module
 */

import type { Context } from "hono";
import type { ApiEnv } from "../_env.ts";
import type { SetupStatus } from "../status.ts";

/** The health report; `reasons` is empty exactly when `status` is "ok". */
export interface Health {
  status: "ok" | "degraded";
  /** Why the setup is degraded, one sentence each. */
  reasons: string[];
  setup: { name: string; uuid: string; state: "clean" | "degraded" };
  spares: { active: number; failed: number; slotsFree: number };
  pendingBlocks: number;
}

/**
 * Judges the health of a setup from its status.
 *
 * @param status The current status.
 * @returns "ok" with no reasons, or "degraded" with at least one.
 */
export function healthOf(status: SetupStatus): Health {
  const reasons: string[] = [];
  if (status.setup.state === "degraded") {
    reasons.push(`Setup "${status.setup.name}" is in the degraded state`);
  }
  for (const spare of status.spares) {
    if (spare.state === "failed") reasons.push(`Spare ${spare.index} "${spare.path}" has failed`);
  }
  const active = status.spares.filter((spare) => spare.state === "active");
  const slotsFree = active.reduce((sum, spare) => sum + (spare.slotCount - spare.slotsUsed), 0);
  if (slotsFree === 0) reasons.push("No active spare has a free slot: add a spare");
  return {
    status: reasons.length === 0 ? "ok" : "degraded",
    reasons,
    setup: { name: status.setup.name, uuid: status.setup.uuid, state: status.setup.state },
    spares: { active: active.length, failed: status.spares.length - active.length, slotsFree },
    pendingBlocks: status.counters.pending,
  };
}

/**
 * Answers 200 when the setup is ok and 503 when it is degraded.
 *
 * @param c The request context; reads `c.var.status`.
 * @returns The {@link Health} report.
 */
export function getHealth(c: Context<ApiEnv>): Response {
  const health = healthOf(c.var.status.status());
  return c.json(health, health.status === "ok" ? 200 : 503);
}

/**
 * `GET /api/v1/scan`: the background scanner's status; `GET
 * /api/v1/scan/health`: the health report (setup score, regions worst
 * first, each with its inputs). Both 404 when the server runs no scanner.
 *
 * @module
 */

import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ApiEnv } from "../_env.ts";
import type { HealthReport } from "../../scan/mod.ts";

/** The report, or 404 naming the fix. */
function reportOf(c: Context<ApiEnv>): HealthReport {
  const report = c.var.status.healthReport?.();
  if (report === undefined) {
    throw new HTTPException(404, {
      message: "This server runs no scanner: serve the setup with a dm-remap that has one",
    });
  }
  return report;
}

/**
 * Answers with the scanner's status: from the scanner itself when the server
 * gave it, so a poll of the status does not build the whole report (regions,
 * SMART, forecast).
 */
export function getScan(c: Context<ApiEnv>): Response {
  const scanControl = c.var.scanControl;
  return c.json(scanControl === undefined ? reportOf(c).scan : scanControl.status());
}

/** Answers with the health report. */
export function getScanHealth(c: Context<ApiEnv>): Response {
  return c.json(reportOf(c));
}

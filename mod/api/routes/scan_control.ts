/**
 * `POST /api/v1/scan/start` and `POST /api/v1/scan/stop`: the API's only
 * mutating routes, kept apart from the read-only ones so a guard on every
 * non-GET route covers them. Each answers with the scanner's status after
 * the change; 404 when the server runs no scanner.
 *
 * @module
 */

import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ApiEnv } from "../_env.ts";
import type { ScanControl } from "../status.ts";

function controlOf(c: Context<ApiEnv>): ScanControl {
  const control = c.var.scanControl;
  if (control === undefined) {
    throw new HTTPException(404, { message: "This server runs no scanner to start or stop" });
  }
  return control;
}

/** Starts a pass now (or lets a paused one go on). */
export function postScanStart(c: Context<ApiEnv>): Response {
  const control = controlOf(c);
  control.startPass();
  return c.json(control.status());
}

/** Pauses the pass where it is and writes the position. */
export async function postScanStop(c: Context<ApiEnv>): Promise<Response> {
  const control = controlOf(c);
  await control.stopPass();
  return c.json(control.status());
}

/**
 * `GET /api/v1/status`: the whole {@link SetupStatus} as JSON.
 *
 * @module
 */

import type { Context } from "hono";
import type { ApiEnv } from "../_env.ts";
import type { SetupStatus } from "../status.ts";

/**
 * Answers with the current status of the setup.
 *
 * @param c The request context; reads `c.var.status`.
 * @returns 200 with a {@link SetupStatus} body.
 */
export function getStatus(c: Context<ApiEnv>): Response {
  const status: SetupStatus = c.var.status.status();
  return c.json(status);
}

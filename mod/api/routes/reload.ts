/**
 * `POST /api/v1/reload`: reads the configuration file again, as SIGHUP
 * (`systemctl reload`) does: what can change live takes effect at once, and
 * the answer names every changed key that waits for a restart. A file that
 * does not check changes nothing and is answered 422 with its problems.
 * Guarded as every mutation is.
 *
 * @module
 */

import type { Context } from "hono";
import type { ApiEnv } from "../_env.ts";
import type { ReloadOutcome } from "../control.ts";
import { controlOf, jsonOptions } from "./_control.ts";

/**
 * Reloads the configuration.
 *
 * @param c The request context; uses `c.var.control`.
 * @returns 200 with a {@link ReloadOutcome} when the file was applied; 422 when it was
 *   refused, with the API's `error` (the problems) beside the outcome, as every refusal has.
 * @throws {UsageError} When the body names an option (it takes none).
 * @throws {UnavailableError} When the server cannot reload now (409).
 */
export async function postReload(c: Context<ApiEnv>): Promise<Response> {
  await jsonOptions(c, { action: "reload the configuration", allowed: [] });
  const outcome: ReloadOutcome = await controlOf(c).reload();
  if (outcome.reloaded) return c.json(outcome, 200);
  return c.json({ error: outcome.problems ?? `${outcome.file} does not check`, ...outcome }, 422);
}

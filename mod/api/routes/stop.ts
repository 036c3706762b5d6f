/**
 * `POST /api/v1/stop`: the orderly stop `dm-remap stop` asks for: the server
 * finishes requests in flight, flushes, writes its metadata and exits, and
 * detaches its kernel device unless `{"detach": false}`. While that device is
 * mounted or open the stop is refused (409) unless `{"force": true}`. The
 * answer (202) comes before the server stops. Guarded as every mutation is.
 *
 * @module
 */

import type { Context } from "hono";
import type { ApiEnv } from "../_env.ts";
import type { StopAccepted } from "../control.ts";
import { booleanOption, controlOf, jsonOptions } from "./_control.ts";

/**
 * Begins the stop.
 *
 * @param c The request context; uses `c.var.control`.
 * @returns 202 with a {@link StopAccepted}.
 * @throws {UsageError} When the options are not `detach` and `force` as booleans.
 * @throws {UnavailableError} When the kernel device is in use and `force` is not set (409).
 */
export async function postStop(c: Context<ApiEnv>): Promise<Response> {
  const action = "stop the setup";
  const options = await jsonOptions(c, { action, allowed: ["detach", "force"] });
  const accepted: StopAccepted = controlOf(c).requestStop({
    detach: booleanOption(options, "detach", { action, fallback: true }),
    force: booleanOption(options, "force", { action, fallback: false }),
  });
  return c.json(accepted, 202);
}

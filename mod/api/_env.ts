/**
 * The Hono environment shared by the app and its routes.
 *
 * @module
 */

import type { StatusSource } from "./status.ts";

/** What every handler can read from `c.var`: the injected status source. */
export type ApiEnv = { Variables: { status: StatusSource } };

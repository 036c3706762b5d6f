/**
 * `GET /api/v1/events?limit=`: the newest events of the setup's history.
 *
 * @module
 */

import type { Context } from "hono";
import { assert } from "../../assert.ts";
import type { ApiEnv } from "../_env.ts";
import { parseCount } from "./_query.ts";

/** The most events one answer may hold. */
export const EVENTS_PAGE_MAX = 1_000;
/** Events returned when the query gives no `limit`. */
export const EVENTS_PAGE_DEFAULT = 100;

/**
 * Answers with the newest events first.
 *
 * @throws {UsageError} When `limit` is invalid.
 */
export function getEvents(c: Context<ApiEnv>): Response {
  const limit = parseCount(c.req.queries(), "limit", {
    action: "list events",
    fallback: EVENTS_PAGE_DEFAULT,
    max: EVENTS_PAGE_MAX,
  });
  const events = c.var.status.events(limit);
  assert(events.length <= limit, "the source returns at most `limit` events");
  return c.json({ events });
}

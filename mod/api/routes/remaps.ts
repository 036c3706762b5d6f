/**
 * `GET /api/v1/remaps?offset=&limit=`: one page of the remap table, sorted by block.
 *
 * The query is client input, so it is checked here and refused with a
 * {@link UsageError} (HTTP 400 in `app.onError`); the page the source returns
 * is our own code's output, so its size is asserted.
 *
 * @module
 */

import type { Context } from "hono";
import { assert } from "../../assert.ts";
import type { ApiEnv } from "../_env.ts";
import type { RemapEntry } from "../status.ts";
import { parseCount } from "./_query.ts";

/** The most remaps one page may hold; a million remaps take 100 requests. */
export const REMAPS_PAGE_ENTRIES_MAX = 10_000;
/** The page size when the query gives no `limit`. */
export const REMAPS_PAGE_ENTRIES_DEFAULT = 1_000;

assert(REMAPS_PAGE_ENTRIES_DEFAULT <= REMAPS_PAGE_ENTRIES_MAX, "the default page fits the limit");

/** A checked remaps query. */
export interface RemapsQuery {
  /** Remaps to skip, counted in block order. */
  offset: number;
  /** Remaps to return at most. */
  limit: number;
}

/** One page of remaps and how many exist in all. */
export interface RemapsPage {
  total: number;
  entries: RemapEntry[];
}

/**
 * Checks the `offset` and `limit` query parameters.
 *
 * Each must appear at most once and be a non-negative decimal integer;
 * `limit` is at most {@link REMAPS_PAGE_ENTRIES_MAX}. Other parameters are
 * ignored.
 *
 * @param queries Every query parameter with all its values, as `c.req.queries()` gives them.
 * @returns The offset (default 0) and limit (default {@link REMAPS_PAGE_ENTRIES_DEFAULT}).
 * @throws {UsageError} When a parameter is repeated, not an integer, negative, or too large.
 *
 * @example Reading a query
 * ```ts
 * import { parseRemapsQuery } from "./remaps.ts";
 * console.log(parseRemapsQuery({ offset: ["2000"] })); // { offset: 2000, limit: 1000 }
 * ```
 */
export function parseRemapsQuery(
  queries: Readonly<Record<string, readonly string[]>>,
): RemapsQuery {
  return {
    offset: parseCount(queries, "offset", {
      action: "list remaps",
      fallback: 0,
      max: Number.MAX_SAFE_INTEGER,
    }),
    limit: parseCount(queries, "limit", {
      action: "list remaps",
      fallback: REMAPS_PAGE_ENTRIES_DEFAULT,
      max: REMAPS_PAGE_ENTRIES_MAX,
    }),
  };
}

/**
 * Answers with one page of remaps.
 *
 * @param c The request context; reads `c.var.status` and the query.
 * @returns 200 with a {@link RemapsPage} body.
 * @throws {UsageError} When the query is invalid.
 */
export function getRemaps(c: Context<ApiEnv>): Response {
  const query = parseRemapsQuery(c.req.queries());
  const page: RemapsPage = c.var.status.remaps(query.offset, query.limit);
  assert(page.entries.length <= query.limit, "the source returns at most `limit` remaps");
  assert(Number.isSafeInteger(page.total) && page.total >= 0, "the remap total is a count");
  return c.json(page);
}

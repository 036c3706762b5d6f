/**
 * `POST /api/v1/metadata/repair`: rewrites every stale or invalid metadata
 * copy of the working spares from the current state, as `serve` does at
 * start, and answers what it found. It takes no options (an empty body or
 * `{}`). Guarded as every mutation is (`mutation_guard.ts`).
 *
 * @module
 */

import type { Context } from "hono";
import type { ApiEnv } from "../_env.ts";
import type { MetadataRepair } from "../control.ts";
import { controlOf, jsonOptions } from "./_control.ts";

/**
 * Repairs the metadata now.
 *
 * @param c The request context; uses `c.var.control`.
 * @returns 200 with a {@link MetadataRepair}.
 * @throws {UsageError} When the body is not empty or `{}`.
 */
export async function postMetadataRepair(c: Context<ApiEnv>): Promise<Response> {
  await jsonOptions(c, { action: "repair metadata", allowed: [] });
  const repair: MetadataRepair = await controlOf(c).repairMetadata();
  return c.json(repair);
}

/**
 * `GET /api/v1/openapi.json`: the API's OpenAPI document (`openapi.ts`).
 *
 * @module
 */

import type { Context } from "hono";
import type { ApiEnv } from "../_env.ts";
import { openApiDocument } from "../openapi.ts";

/**
 * Answers with the OpenAPI document.
 *
 * @param c The request context.
 * @returns 200 with the document.
 */
export function getOpenApi(c: Context<ApiEnv>): Response {
  return c.json(openApiDocument());
}

/**
 * `GET /api/v1/policies`: each configured policy with its last evaluation
 * (when, why, whether it holds, what it did, and what this server cannot
 * evaluate or do yet).
 *
 * @module
 */

import type { Context } from "hono";
import type { ApiEnv } from "../_env.ts";

/**
 * Answers with the policies' last evaluations.
 *
 * @param c The request context; reads `c.var.status`.
 * @returns 200 with `{ policies: PolicyEvaluation[] }`.
 */
export function getPolicies(c: Context<ApiEnv>): Response {
  return c.json({ policies: c.var.status.status().policies });
}

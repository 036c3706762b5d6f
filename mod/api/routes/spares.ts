/**
 * `POST /api/v1/spares/add` and `POST /api/v1/spares/remove`: the spare pool
 * of a running setup (`dm-remap spare add|remove|replace`). Add answers once
 * the spare joined (200); remove answers as its migration starts (202), and
 * the status's `migration` shows it go on. A refusal for the setup's state
 * (no room on the other spares, a device holding data) is 409, a bad request
 * 400. Guarded as every mutation is (`mutation_guard.ts`).
 *
 * @module
 */

import type { Context } from "hono";
import { UsageError } from "../../errors.ts";
import type { ApiEnv } from "../_env.ts";
import type { SpareAdded } from "../control.ts";
import type { SpareMigrationStatus } from "../status.ts";
import { booleanOption, controlOf, jsonOptions } from "./_control.ts";

/** The longest device path taken. */
const PATH_CHARS_MAX = 4096;

function pathOption(options: Record<string, unknown>, action: string): string {
  const path = options.path;
  if (typeof path !== "string" || path === "" || path.length > PATH_CHARS_MAX) {
    throw new UsageError(
      `Cannot ${action}: send {"path": "<device or file>"}, the spare's path as this server sees it`,
    );
  }
  return path;
}

/**
 * Adds a spare to the pool.
 *
 * @returns 200 with a {@link SpareAdded}.
 * @throws {UsageError} When `path` is missing or `force` not a boolean.
 */
export async function postSpareAdd(c: Context<ApiEnv>): Promise<Response> {
  const action = "add a spare";
  const options = await jsonOptions(c, { action, allowed: ["path", "force"] });
  const added: SpareAdded = await controlOf(c).addSpare({
    path: pathOption(options, action),
    force: booleanOption(options, "force", { action, fallback: false }),
  });
  return c.json(added);
}

/**
 * Starts removing a spare from the pool.
 *
 * @returns 202 with the migration's {@link SpareMigrationStatus}.
 * @throws {UsageError} When `path` is missing or names no spare of the setup.
 */
export async function postSpareRemove(c: Context<ApiEnv>): Promise<Response> {
  const action = "remove a spare";
  const options = await jsonOptions(c, { action, allowed: ["path"] });
  const migration: SpareMigrationStatus = await controlOf(c).removeSpare({
    path: pathOption(options, action),
  });
  return c.json(migration, 202);
}

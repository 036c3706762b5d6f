/**
 * What the mutating routes share: the injected control, and their JSON
 * options, which are client input and refused with a {@link UsageError}
 * (HTTP 400) when they are not what the route takes.
 *
 * @module
 */

import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { UsageError } from "../../errors.ts";
import type { ApiEnv } from "../_env.ts";
import type { SetupControl } from "../control.ts";

/**
 * The control of the running setup.
 *
 * @throws {HTTPException} 503 when the app was built without one.
 */
export function controlOf(c: Context<ApiEnv>): SetupControl {
  const control = c.var.control;
  if (control === undefined) {
    throw new HTTPException(503, {
      message: `Cannot ${c.req.method} ${c.req.path}: this API serves no running setup to change`,
    });
  }
  return control;
}

/**
 * The request's options: an empty body, or a JSON object whose keys are all in `allowed`.
 *
 * @throws {UsageError} When the body is not JSON, not an object, or names another option.
 */
export async function jsonOptions(
  c: Context<ApiEnv>,
  options: { action: string; allowed: readonly string[] },
): Promise<Record<string, unknown>> {
  const text = await c.req.text();
  if (text.trim() === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UsageError(`Cannot ${options.action}: the body must be a JSON object`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`Cannot ${options.action}: the body must be a JSON object`);
  }
  const record = parsed as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!options.allowed.includes(key)) {
      const takes = options.allowed.length === 0
        ? "it takes none"
        : `it takes ${options.allowed.map((name) => `"${name}"`).join(", ")}`;
      throw new UsageError(
        `Cannot ${options.action}: unknown option "${key.slice(0, 32)}"; ${takes}`,
      );
    }
  }
  return record;
}

/**
 * One optional boolean option.
 *
 * @throws {UsageError} When it is there and not a boolean.
 */
export function booleanOption(
  options: Record<string, unknown>,
  name: string,
  context: { action: string; fallback: boolean },
): boolean {
  const value = options[name];
  if (value === undefined) return context.fallback;
  if (typeof value !== "boolean") {
    throw new UsageError(
      `Cannot ${context.action}: "${name}" must be true or false, got ${typeof value}`,
    );
  }
  return value;
}

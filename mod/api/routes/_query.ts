/**
 * Query-parameter parsing shared by the API's routes: client input, refused
 * with a {@link UsageError} (HTTP 400) when it is not what the route takes.
 *
 * @module
 */

import { UsageError } from "../../errors.ts";

/** The longest slice of a bad value that an error message quotes. */
const QUOTED_VALUE_CHARS_MAX = 32;

/**
 * Reads one non-negative integer query parameter.
 *
 * @throws {UsageError} When it is repeated, not an integer, or above `max`.
 */
export function parseCount(
  queries: Readonly<Record<string, readonly string[]>>,
  name: string,
  options: { action: string; fallback: number; max: number },
): number {
  const values = queries[name] ?? [];
  if (values.length === 0) return options.fallback;
  if (values.length > 1) {
    throw new UsageError(
      `Cannot ${options.action}: "${name}" must be given once, got ${values.length} values`,
    );
  }
  const text = values[0]!;
  // Sixteen digits are more than MAX_SAFE_INTEGER has; the range check below does the rest.
  const value = /^[0-9]{1,16}$/.test(text) ? Number(text) : NaN;
  if (!(Number.isSafeInteger(value) && value <= options.max)) {
    const quoted = text.length > QUOTED_VALUE_CHARS_MAX
      ? `${text.slice(0, QUOTED_VALUE_CHARS_MAX)}...`
      : text;
    throw new UsageError(
      `Cannot ${options.action}: "${name}" must be an integer from 0 to ${options.max}, got "${quoted}"`,
    );
  }
  return value;
}

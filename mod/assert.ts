/**
 * Invariant checks for programmer errors.
 *
 * An `assert()` that fails means the code itself is wrong, not the disk or the
 * client: nothing catches {@link AssertionError}, the process dies, and the
 * service manager restarts it from durable state. Expected failures (a bad
 * sector, a corrupt metadata copy, hostile client input) are typed errors from
 * `errors.ts` instead.
 *
 * @example Checking an invariant
 * ```ts
 * import { assert } from "./assert.ts";
 * const blockBytes = 4096;
 * assert(blockBytes % 512 === 0, "block size is a multiple of the sector size");
 * ```
 *
 * @module
 */

/** Thrown when an invariant does not hold; never caught on purpose. */
export class AssertionError extends Error {
  override name = "AssertionError";
}

/**
 * Throws {@link AssertionError} when `condition` is false.
 *
 * @param condition The invariant that must hold.
 * @param message What the invariant says, for the crash report.
 * @throws {AssertionError} When the invariant is broken.
 */
export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new AssertionError(message);
}

/**
 * Marks code that cannot be reached while the invariants hold.
 *
 * @param message Why the branch is impossible.
 * @throws {AssertionError} Always.
 */
export function unreachable(message = "unreachable code was reached"): never {
  throw new AssertionError(message);
}

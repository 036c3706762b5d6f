/**
 * A wall clock a test sets by hand, for components that take `now: () => number`.
 *
 * @module
 */

/** A clock the test moves by hand. */
export function manualClock(startMs = 1_000_000) {
  let nowMs = startMs;
  return {
    now: () => nowMs,
    advance(ms: number) {
      nowMs += ms;
    },
    set(ms: number) {
      nowMs = ms;
    },
  };
}

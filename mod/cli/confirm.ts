/**
 * Asking before a command rewrites metadata, as `fsck` asks: `--yes` answers
 * for the user; otherwise the question is asked on the terminal; with no
 * terminal to ask on (a script, a pipe), the command refuses.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/**
 * Whether to go ahead with a write that was just described.
 *
 * @param yes Whether `--yes` was given.
 * @returns True when the user agreed (or `yes`), false when they declined.
 * @throws {UsageError} When there is no terminal to ask on and no `--yes`.
 */
export function confirmWrite(question: string, yes: boolean): boolean {
  if (yes) return true;
  if (!Deno.stdin.isTerminal()) {
    throw new UsageError(
      "There is no terminal to confirm the write on: run the command on a terminal, " +
        "or pass --yes after reading what it will write; nothing was written",
    );
  }
  const answer = prompt(`${question} [y/N]`);
  return answer !== null && /^y(es)?$/i.test(answer.trim());
}

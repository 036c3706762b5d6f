/**
 * `dm-remap events [<name>] [--since <ISO time | duration>] [--db <path>] [--json]`:
 * the setups' event histories (SQLite, written by `serve` and the other
 * commands that record events), oldest first.
 *
 * Each setup's history is `<state dir>/<name>.events.sqlite`; without a name
 * every history there is read and merged by time. `--db` reads one file
 * instead. Every kind of event is printed the same way (time, setup, kind,
 * words, and the block, spare and slot it names), so kinds added later need
 * nothing here.
 *
 * @module
 */

import { basename } from "node:path";
import { EVENTS_MAX } from "../../constants.ts";
import { UsageError } from "../../errors.ts";
import { EventHistory, type StoredEvent } from "../../events/event_history.ts";
import type { CommandInput } from "../command.ts";
import { durationMs, onePositional, STATE_DIR, stringOption } from "../options.ts";

/** The suffix of a setup's history file. */
const HISTORY_SUFFIX = ".events.sqlite";

/** One event with the setup whose history holds it. */
interface SetupHistoryEvent extends StoredEvent {
  setup: string;
}

/** Prints the events of one setup, or of every setup, oldest first. */
export async function eventsCommand(
  { values, positionals, output }: CommandInput,
): Promise<number> {
  const name = onePositional(positionals, "setup name", false);
  const sinceText = stringOption(values.since);
  const sinceMs = sinceText === undefined ? 0 : sinceOption(sinceText, Date.now());
  const dbPath = stringOption(values.db);
  const paths = await historyPaths({ name, dbPath });
  const events: SetupHistoryEvent[] = [];
  for (const path of paths) events.push(...await readHistory(path, sinceMs));
  events.sort((a, b) => a.timeMs - b.timeMs || a.id - b.id);
  if (values.json) {
    output.out(JSON.stringify(
      events.map((event) => ({ time: new Date(event.timeMs).toISOString(), ...event })),
    ));
    return 0;
  }
  if (events.length === 0) {
    output.out(
      `No events${sinceText ? ` since ${sinceText}` : ""} in ${paths.join(", ") || STATE_DIR}`,
    );
    return 0;
  }
  for (const event of events) output.out(formatEvent(event));
  return 0;
}

/**
 * The start of a `--since` window: an ISO 8601 time, or a duration before
 * `nowMs` (`90s`, `15m`, `2h`, `7d`, `1w`).
 *
 * @throws {UsageError} When it is neither.
 */
export function sinceOption(text: string, nowMs: number): number {
  const duration = durationMs(text);
  if (duration !== undefined) return nowMs - duration;
  const timeMs = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(timeMs)) {
    throw new UsageError(
      `--since takes an ISO time (2026-01-31T12:00:00Z) or a duration (90s, 15m, 2h, 7d, 1w), not "${text}"`,
    );
  }
  return timeMs;
}

/** Which histories to read: `--db`, the named setup's, or every setup's. */
async function historyPaths(
  chosen: { name: string | undefined; dbPath: string | undefined },
): Promise<string[]> {
  if (chosen.dbPath !== undefined) return [chosen.dbPath];
  if (chosen.name !== undefined) return [`${STATE_DIR}/${chosen.name}${HISTORY_SUFFIX}`];
  return await historyFiles(STATE_DIR);
}

/** The history files of the setups in a state directory. */
async function historyFiles(dir: string): Promise<string[]> {
  const paths: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && entry.name.endsWith(HISTORY_SUFFIX)) paths.push(`${dir}/${entry.name}`);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return paths.sort();
}

/** A history's events since a time; a missing file is a usage error (never created here). */
async function readHistory(path: string, sinceMs: number): Promise<SetupHistoryEvent[]> {
  try {
    await Deno.stat(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new UsageError(`No event history at "${path}": check the setup name or --db`);
  }
  const setup = basename(path).endsWith(HISTORY_SUFFIX)
    ? basename(path).slice(0, -HISTORY_SUFFIX.length)
    : basename(path);
  const history = EventHistory.open(path);
  try {
    return history.since(sinceMs, EVENTS_MAX).map((event) => ({ setup, ...event }));
  } finally {
    history.close();
  }
}

/** `2026-01-31T12:00:00.000Z  vault  remap  remapped block 7 … [block 7 spare 0 slot 3]`. */
function formatEvent(event: SetupHistoryEvent): string {
  const where = [
    event.blockIndex === undefined ? "" : `block ${event.blockIndex}`,
    event.spareIndex === undefined ? "" : `spare ${event.spareIndex}`,
    event.slotIndex === undefined ? "" : `slot ${event.slotIndex}`,
  ].filter((part) => part !== "").join(" ");
  return `${
    new Date(event.timeMs).toISOString()
  }  ${event.setup}  ${event.type}  ${event.message}` +
    (where ? `  [${where}]` : "");
}

/**
 * The event history of a setup: remaps, pending blocks, failed spares, starts
 * and stops, kept in SQLite so they outlive the process and its logs.
 *
 * Bounded: at most {@link EVENTS_MAX} rows are kept; the oldest go first.
 * Writes are synchronous (node:sqlite) and happen only on events, which are
 * rare next to I/O, never per request.
 *
 * @example
 * ```ts
 * import { EventHistory } from "./event_history.ts";
 * const history = EventHistory.open(":memory:");
 * history.record({ type: "remap", message: "remapped block 7", blockIndex: 7 });
 * history.recent(10); // [{ id: 1, type: "remap", ... }]
 * history.close();
 * ```
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { assert } from "../assert.ts";
import { EVENTS_MAX, HISTORY_BUSY_TIMEOUT_MS } from "../constants.ts";
import type { EventBus } from "./event_bus.ts";
import { describeEvent, type RecordedEvent } from "./setup_event.ts";

/** One event as recorded. */
export interface HistoryEvent {
  type: string;
  message: string;
  blockIndex?: number;
  spareIndex?: number;
  slotIndex?: number;
}

/** A typed event as the history keeps it: its kind, its words, and the indexes it names. */
export function historyEventOf(event: RecordedEvent): HistoryEvent {
  return {
    type: event.type,
    message: describeEvent(event),
    blockIndex: "blockIndex" in event ? event.blockIndex : undefined,
    spareIndex: "spareIndex" in event ? event.spareIndex : undefined,
    slotIndex: "slotIndex" in event ? event.slotIndex : undefined,
  };
}

/** One event as stored. */
export interface StoredEvent extends HistoryEvent {
  id: number;
  timeMs: number;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    type TEXT NOT NULL,
    message TEXT NOT NULL,
    block_index INTEGER,
    spare_index INTEGER,
    slot_index INTEGER
  )`;

/** Rows deleted at once when the table is over its bound, so pruning is rare. */
const PRUNE_BATCH = 1024;

/** An open event database. */
export class EventHistory {
  readonly #database: DatabaseSync;
  readonly #insert: StatementSync;
  readonly #recent: StatementSync;
  readonly #since: StatementSync;
  readonly #prune: StatementSync;
  readonly #first: StatementSync;
  #insertsSincePrune = 0;

  private constructor(database: DatabaseSync) {
    this.#database = database;
    this.#database.exec("PRAGMA journal_mode = WAL");
    this.#database.exec(SCHEMA);
    this.#insert = database.prepare(
      "INSERT INTO events (time_ms, type, message, block_index, spare_index, slot_index) VALUES (?, ?, ?, ?, ?, ?)",
    );
    this.#recent = database.prepare(
      "SELECT id, time_ms, type, message, block_index, spare_index, slot_index FROM events " +
        "WHERE id > ? ORDER BY id DESC LIMIT ?",
    );
    this.#since = database.prepare(
      "SELECT id, time_ms, type, message, block_index, spare_index, slot_index FROM events " +
        "WHERE time_ms >= ? ORDER BY id DESC LIMIT ?",
    );
    this.#prune = database.prepare(
      "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?",
    );
    this.#first = database.prepare("SELECT MIN(time_ms) AS first FROM events");
  }

  /** Opens (creating if needed) the history at `path`; `:memory:` for tests. */
  static open(path: string): EventHistory {
    return new EventHistory(new DatabaseSync(path, { timeout: HISTORY_BUSY_TIMEOUT_MS }));
  }

  /** Appends an event with the current time. */
  record(event: HistoryEvent): void {
    this.#insert.run(
      Date.now(),
      event.type,
      event.message,
      event.blockIndex ?? null,
      event.spareIndex ?? null,
      event.slotIndex ?? null,
    );
    if (++this.#insertsSincePrune >= PRUNE_BATCH) {
      this.#prune.run(EVENTS_MAX);
      this.#insertsSincePrune = 0;
    }
  }

  /**
   * Records every event `bus` publishes from now on.
   *
   * @returns A function that stops recording.
   */
  subscribeTo(bus: EventBus): () => void {
    return bus.subscribe((event) => this.record(historyEventOf(event)));
  }

  /** The newest events first, at most `limit`, only those after `afterId`. */
  recent(limit: number, afterId = 0): StoredEvent[] {
    assert(Number.isSafeInteger(limit) && limit >= 0, "limit is a count");
    return (this.#recent.all(afterId, limit) as EventRow[]).map(storedEventOf);
  }

  /**
   * The events recorded at or after a time, oldest first: the newest `limit`
   * of them when there are more.
   *
   * @param sinceMs The earliest time, in ms since the epoch (0 for all).
   * @param limit The most events returned.
   */
  since(sinceMs: number, limit: number): StoredEvent[] {
    assert(Number.isSafeInteger(limit) && limit >= 0, "limit is a count");
    return (this.#since.all(sinceMs, limit) as EventRow[]).map(storedEventOf).reverse();
  }

  /** When the oldest event kept was recorded (ms since the epoch), or undefined when none is. */
  firstTimeMs(): number | undefined {
    const row = this.#first.get() as { first: number | null } | undefined;
    return row?.first === null || row === undefined ? undefined : Number(row.first);
  }

  close(): void {
    this.#database.close();
  }
}

/** A row of the events table as node:sqlite returns it. */
type EventRow = Record<string, number | string | null>;

function storedEventOf(row: EventRow): StoredEvent {
  const stored: StoredEvent = {
    id: Number(row.id),
    timeMs: Number(row.time_ms),
    type: String(row.type),
    message: String(row.message),
  };
  if (row.block_index !== null) stored.blockIndex = Number(row.block_index);
  if (row.spare_index !== null) stored.spareIndex = Number(row.spare_index);
  if (row.slot_index !== null) stored.slotIndex = Number(row.slot_index);
  return stored;
}

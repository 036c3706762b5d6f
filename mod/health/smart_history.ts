/**
 * The SMART readings of a setup's disks over time, kept in the setup's event
 * history database (its own table, `smart_readings`), so a restarted server
 * still compares a new reading with the last one before it and the forecast
 * sees SMART trends over days.
 *
 * Readings are keyed by what the disk is (`serial:<serial>`), never by its
 * path: a disk that moved to another path keeps its series, and a swapped
 * disk at the same path starts a new one. Devices without SMART are not
 * recorded. Bounded: at most {@link SMART_READINGS_MAX} rows, oldest first out.
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { HISTORY_BUSY_TIMEOUT_MS, SMART_READINGS_MAX } from "../constants.ts";
import type { SmartOk } from "./smart_report.ts";

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS smart_readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    disk_key TEXT NOT NULL,
    reading TEXT NOT NULL
  );
  CREATE INDEX IF NOT EXISTS smart_readings_disk ON smart_readings (disk_key, id)`;

/** The key a disk's readings are stored under, or undefined when it names no serial. */
export function diskKeyOf(reading: SmartOk): string | undefined {
  return reading.serial === undefined ? undefined : `serial:${reading.serial}`;
}

/** An open table of readings. */
export class SmartHistory {
  readonly #database: DatabaseSync;
  readonly #insert: StatementSync;
  readonly #latest: StatementSync;
  readonly #since: StatementSync;
  readonly #prune: StatementSync;

  private constructor(database: DatabaseSync) {
    this.#database = database;
    database.exec("PRAGMA journal_mode = WAL");
    database.exec(SCHEMA);
    this.#insert = database.prepare(
      "INSERT INTO smart_readings (time_ms, disk_key, reading) VALUES (?, ?, ?)",
    );
    this.#latest = database.prepare(
      "SELECT reading FROM smart_readings WHERE disk_key = ? ORDER BY id DESC LIMIT 1",
    );
    this.#since = database.prepare(
      "SELECT reading FROM smart_readings WHERE disk_key = ? AND time_ms >= ? ORDER BY id LIMIT ?",
    );
    this.#prune = database.prepare(
      "DELETE FROM smart_readings WHERE id <= (SELECT MAX(id) FROM smart_readings) - ?",
    );
  }

  /** Opens (creating if needed) the table in the database at `path`; `:memory:` for tests. */
  static open(path: string): SmartHistory {
    return new SmartHistory(new DatabaseSync(path, { timeout: HISTORY_BUSY_TIMEOUT_MS }));
  }

  /** Stores a reading of a disk that has a serial; others are not kept. */
  record(reading: SmartOk): void {
    const key = diskKeyOf(reading);
    if (key === undefined) return;
    this.#insert.run(reading.timeMs, key, JSON.stringify(reading));
    this.#prune.run(SMART_READINGS_MAX);
  }

  /** The newest reading stored for the disk, if any. */
  latest(diskKey: string): SmartOk | undefined {
    const row = this.#latest.get(diskKey) as { reading: string } | undefined;
    return row === undefined ? undefined : JSON.parse(row.reading) as SmartOk;
  }

  /** The disk's readings at or after a time, oldest first, at most `limit`. */
  since(diskKey: string, sinceMs: number, limit: number): SmartOk[] {
    const rows = this.#since.all(diskKey, sinceMs, limit) as { reading: string }[];
    return rows.map((row) => JSON.parse(row.reading) as SmartOk);
  }

  close(): void {
    this.#database.close();
  }
}

/**
 * Log lines for people and for journald: one line per event, `key=value`
 * pairs after the message, and, when the process's stderr is the journal
 * (systemd sets `JOURNAL_STREAM`), the `<N>` priority prefix that
 * sd-daemon(3) describes, so `journalctl -p warning` finds the failures.
 *
 * Values that hold spaces, quotes or `=` are double-quoted with `"` and `\`
 * escaped, as logfmt does; line feeds become `\n`, so a value never splits
 * the line.
 *
 * @example A remap as a log line
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatLogLine } from "./structured_log.ts";
 *
 * assert.equal(
 *   formatLogLine({
 *     level: "notice",
 *     message: "remapped block 7",
 *     fields: { setup: "big", event: "remap", block: 7 },
 *   }, { journal: false }),
 *   'level=notice setup=big event=remap block=7 msg="remapped block 7"',
 * );
 * ```
 *
 * @module
 */

/** Log levels, most severe first, with their syslog priorities (sd-daemon(3)). */
export const LOG_PRIORITIES = {
  err: 3,
  warning: 4,
  notice: 5,
  info: 6,
  debug: 7,
} as const;

/** A log level: `err`, `warning`, `notice`, `info` or `debug`. */
export type LogLevel = keyof typeof LOG_PRIORITIES;

/** The level names, for validation. */
export const LOG_LEVELS = Object.keys(LOG_PRIORITIES) as LogLevel[];

/** A field's value: written as it prints, quoted when needed. */
export type LogValue = string | number | boolean | undefined;

/** One record of the log. */
export interface LogRecord {
  level: LogLevel;
  message: string;
  /** Written in insertion order before `msg`; undefined values are left out. */
  fields?: Readonly<Record<string, LogValue>>;
}

const BARE = /^[A-Za-z0-9_.:/@+\-\[\],]+$/;

/** A value as logfmt writes it: bare when safe, else quoted and escaped. */
export function logValue(value: string | number | boolean): string {
  const text = String(value);
  if (BARE.test(text)) return text;
  return `"${
    text.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n").replaceAll(
      "\r",
      "\\r",
    )
  }"`;
}

/**
 * Writes a record as one line.
 *
 * @param options `journal`: prefix the syslog priority as `<N>`.
 */
export function formatLogLine(record: LogRecord, options: { journal: boolean }): string {
  const parts = [`level=${record.level}`];
  for (const [key, value] of Object.entries(record.fields ?? {})) {
    if (value !== undefined) parts.push(`${key}=${logValue(value)}`);
  }
  parts.push(`msg=${logValue(record.message)}`);
  const line = parts.join(" ");
  return options.journal ? `<${LOG_PRIORITIES[record.level]}>${line}` : line;
}

/** Whether stderr goes to the journal: systemd sets `JOURNAL_STREAM` for a unit's output. */
export function underJournal(): boolean {
  try {
    return (Deno.env.get("JOURNAL_STREAM") ?? "") !== "";
  } catch {
    // Without --allow-env there is no way to know; plain lines are always readable.
    return false;
  }
}

/** Options of {@link StructuredLog}. */
export interface StructuredLogOptions {
  /** Where each line goes. */
  write: (line: string) => void;
  /** Records below this level are dropped. @default "info" */
  level?: LogLevel;
  /** Prefix priorities for journald. @default underJournal() */
  journal?: boolean;
  /** Fields every line starts with (e.g. the setup's name). @default none */
  fields?: Readonly<Record<string, LogValue>>;
}

/** A logger whose level can change while it runs (SIGHUP). */
export class StructuredLog {
  readonly #write: (line: string) => void;
  readonly #journal: boolean;
  readonly #fields: Readonly<Record<string, LogValue>>;
  /** Shared with the loggers made by {@link with}, so one level change reaches them all. */
  readonly #threshold: { level: LogLevel };

  /** @param shared Internal: the parent's threshold, for {@link with}. */
  constructor(options: StructuredLogOptions, shared?: { level: LogLevel }) {
    this.#write = options.write;
    this.#journal = options.journal ?? underJournal();
    this.#fields = options.fields ?? {};
    this.#threshold = shared ?? { level: options.level ?? "info" };
  }

  /** The lowest level written. */
  get level(): LogLevel {
    return this.#threshold.level;
  }

  set level(level: LogLevel) {
    this.#threshold.level = level;
  }

  /** Writes a record if its level is at or above the logger's. */
  log(record: LogRecord): void {
    if (LOG_PRIORITIES[record.level] > LOG_PRIORITIES[this.#threshold.level]) return;
    const fields = { ...this.#fields, ...record.fields };
    this.#write(formatLogLine({ ...record, fields }, { journal: this.#journal }));
  }

  /** A logger writing to the same place, at the same (shared) level, with more fixed fields. */
  with(fields: Readonly<Record<string, LogValue>>): StructuredLog {
    return new StructuredLog({
      write: this.#write,
      journal: this.#journal,
      fields: { ...this.#fields, ...fields },
    }, this.#threshold);
  }
}

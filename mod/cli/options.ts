/**
 * Turning command-line strings into checked values, with messages that say
 * which option was wrong and what it takes.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { parseTcpListener, type TcpListener } from "../service/settings.ts";
import type { OptionValue } from "./command.ts";

/** Parses `--name` as a whole number in [min, max]. */
export function integerOption(
  name: string,
  text: string | undefined,
  range: { min: number; max: number },
): number | undefined {
  if (text === undefined) return undefined;
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < range.min || value > range.max) {
    throw new UsageError(
      `--${name} takes a whole number from ${range.min} to ${range.max}, not "${text}"`,
    );
  }
  return value;
}

/** Units of durations (`90s`, `15m`, `2h`, `7d`, `1w`), in ms. */
const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/** A duration like `90s`, `15m`, `2h`, `7d` or `1w` in ms; undefined when the text is not one. */
export function durationMs(text: string): number | undefined {
  const duration = /^(\d+)([smhdw])$/.exec(text);
  return duration ? Number(duration[1]) * DURATION_UNITS_MS[duration[2]!]! : undefined;
}

/** Units of sizes (`512K`, `64M`, `1G`, powers of 1024; a plain number is bytes). */
const SIZE_UNITS_BYTES: Readonly<Record<string, number>> = {
  "": 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
};

/**
 * Parses `--name` as a size: a whole number of bytes, or with a suffix K, M,
 * G or T (powers of 1024, `MiB` and `M` alike).
 *
 * @throws {UsageError} When the text is not a size.
 */
export function sizeOption(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const size = /^(\d+)([kmgt]?)(?:i?b)?$/i.exec(text);
  const value = size ? Number(size[1]) * SIZE_UNITS_BYTES[size[2]!.toLowerCase()]! : NaN;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new UsageError(`--${name} takes a size like 1G, 64M or 4096, not "${text}"`);
  }
  return value;
}

/** Parses `--name` as a duration (`90s`, `15m`, `24h`, `7d`, `1w`), in ms. */
export function durationOption(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = durationMs(text);
  if (value === undefined || value <= 0) {
    throw new UsageError(`--${name} takes a duration like 90s, 15m, 24h or 7d, not "${text}"`);
  }
  return value;
}

/** Parses `[host:]port`; the host defaults to 127.0.0.1 so nothing is exposed by accident. */
export function tcpOption(name: string, text: string | undefined): TcpListener | undefined {
  if (text === undefined) return undefined;
  const listener = parseTcpListener(text);
  if (listener === undefined) {
    throw new UsageError(`--${name} takes [host:]port, e.g. 127.0.0.1:10809, not "${text}"`);
  }
  return listener;
}

/** A list option given zero or more times. */
export function listOption(value: OptionValue): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}

/** A string option, or undefined. */
export function stringOption(value: OptionValue): string | undefined {
  return typeof value === "string" ? value : undefined;
}

/** The one positional a command takes, or a usage error naming it. */
export function onePositional(
  positionals: string[],
  what: string,
  required: boolean,
): string | undefined {
  if (positionals.length > 1) {
    throw new UsageError(
      `Expected one ${what}, got ${positionals.length}: ${positionals.join(" ")}`,
    );
  }
  if (required && positionals.length === 0) throw new UsageError(`Name the ${what}`);
  return positionals[0];
}

/**
 * Where a setup's sockets live by default (`DM_REMAP_RUN_DIR` moves it, as
 * tests and private installations do).
 */
export const RUN_DIR = Deno.env.get("DM_REMAP_RUN_DIR") ?? "/run/dm-remap";
/**
 * Where setups are registered, events kept and image-file spares looked for
 * by default (`DM_REMAP_STATE_DIR` moves it).
 */
export const STATE_DIR = Deno.env.get("DM_REMAP_STATE_DIR") ?? "/var/lib/dm-remap";
/** Where metadata backups are kept by default (`--backup-dir`), as LVM keeps /etc/lvm/backup. */
export const BACKUP_DIR = `${STATE_DIR}/backup`;

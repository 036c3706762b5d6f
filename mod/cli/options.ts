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

/** Parses `--name [host:]port` (see {@link parseTcpListener}). */
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

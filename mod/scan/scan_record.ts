/**
 * The scanner's settings and the record it keeps in the metadata: the
 * payload's `scan` field (docs/FORMAT.md). The record is small (a position,
 * three times, a baseline and the regions with findings), so it rides in the
 * metadata copies and survives restart, crash and `kill -9` with them.
 *
 * @module
 */

import {
  REGION_BYTES_DEFAULT,
  REGION_BYTES_MIN,
  SCAN_INTERVAL_MS_DEFAULT,
  SCAN_INTERVAL_MS_MIN,
  SCAN_RATE_BYTES_PER_S_MAX_DEFAULT,
  SCAN_RATE_BYTES_PER_S_MIN,
  SCAN_REGIONS_RECORDED_MAX,
} from "../constants.ts";
import { UsageError } from "../errors.ts";
import { hasFindings, type RegionRecord, regionScore } from "./region_health.ts";

/** How the scanner runs; `serve` flags, else what the metadata recorded, else the defaults. */
export interface ScanSettings {
  /** Whether passes start on their own (`--no-scan` clears it; `scan start` still works). */
  enabled: boolean;
  /** From the end of one complete pass (or the setup's creation) to the start of the next. */
  intervalMs: number;
  /** The hard rate cap. */
  rateMaxBytesPerS: number;
  /** Bytes of the main disk per health region. */
  regionBytes: number;
}

/** The metadata's `scan` field, version 1. */
export interface ScanRecord {
  version: 1;
  /** What was in effect; `enabled` is left out of a record older than the schedule's default on. */
  settings: Partial<ScanSettings>;
  /**
   * True in records written since the schedule is on by default. In an
   * older record `enabled: false` was that old default, not a choice, so it
   * is not carried over (parseScanRecord drops it).
   */
  scheduleOnByDefault?: true;
  /** Where the pass in progress goes on; 0 between passes. */
  positionBytes: number;
  /** When the pass in progress started, if one is. */
  passStartedMs?: number;
  /** When the last complete pass started and ended. */
  lastPassStartedMs?: number;
  lastPassCompletedMs?: number;
  passesCompleted: number;
  /** The disk's normal read time, per MiB, as the scanner measured it. */
  baselineMsPerMiB?: number;
  /** Bad blocks the pass in progress and the last complete pass found (policies read them). */
  findingsThisPass?: number;
  findingsLastPass?: number;
  /** Regions with findings, worst first, at most SCAN_REGIONS_RECORDED_MAX. */
  regions: RegionRecord[];
}

/**
 * The defaults of every setting. The schedule is on, as mdcheck's and ZFS
 * scrub's timers are: the first pass is due one interval after the setup's
 * creation and each next one an interval after the last complete pass
 * ends, never at the start of `serve` (a pass at every start made the TCG
 * VMs of vm 2 and vm 3 too slow under load). A pass in progress goes on
 * after a restart.
 */
export const SCAN_SETTINGS_DEFAULT: Readonly<ScanSettings> = {
  enabled: true,
  intervalMs: SCAN_INTERVAL_MS_DEFAULT,
  rateMaxBytesPerS: SCAN_RATE_BYTES_PER_S_MAX_DEFAULT,
  regionBytes: REGION_BYTES_DEFAULT,
};

/**
 * The settings to run with: each flag given wins, then the recorded value,
 * then the default.
 *
 * @throws {UsageError} When a value is out of range; the message names the flag.
 */
export function resolveScanSettings(
  flags: Partial<ScanSettings>,
  recorded: Partial<ScanSettings> | undefined,
): ScanSettings {
  const settings = {
    ...SCAN_SETTINGS_DEFAULT,
    ...definedOnly(recorded ?? {}),
    ...definedOnly(flags),
  };
  if (!(settings.intervalMs >= SCAN_INTERVAL_MS_MIN)) {
    throw new UsageError(
      `Cannot use --scan-interval ${settings.intervalMs} ms: at least ${SCAN_INTERVAL_MS_MIN} ms`,
    );
  }
  if (!(settings.rateMaxBytesPerS >= SCAN_RATE_BYTES_PER_S_MIN)) {
    throw new UsageError(
      `Cannot use --scan-rate-max ${settings.rateMaxBytesPerS} bytes/s: at least ${SCAN_RATE_BYTES_PER_S_MIN}`,
    );
  }
  if (
    !(settings.regionBytes >= REGION_BYTES_MIN && settings.regionBytes % REGION_BYTES_MIN === 0)
  ) {
    throw new UsageError(
      `Cannot use --region-size ${settings.regionBytes} bytes: a multiple of ${REGION_BYTES_MIN}`,
    );
  }
  return settings;
}

function definedOnly(flags: Partial<ScanSettings>): Partial<ScanSettings> {
  return Object.fromEntries(Object.entries(flags).filter(([, value]) => value !== undefined));
}

/**
 * Reads the metadata's `scan` field. An empty field (a setup created before
 * the scanner, or never scanned) or one of another version gives undefined:
 * the scanner then starts from the beginning, which loses nothing. A record
 * written while the schedule was off by default loses its `enabled`: the
 * flags, else the default, decide.
 */
export function parseScanRecord(field: Readonly<Record<string, unknown>>): ScanRecord | undefined {
  if (field.version !== 1) return undefined;
  const record = field as unknown as ScanRecord;
  const numbers = [record.positionBytes, record.passesCompleted, record.settings?.intervalMs];
  if (numbers.some((value) => typeof value !== "number" || !Number.isFinite(value))) {
    return undefined;
  }
  if (!Array.isArray(record.regions)) return undefined;
  const parsed = structuredClone(record);
  if (parsed.scheduleOnByDefault !== true) {
    const { enabled: _oldDefault, ...chosen } = parsed.settings;
    parsed.settings = chosen;
  }
  return parsed;
}

/** The regions worth recording: those with findings, worst first, at most the limit. */
export function regionsToRecord(records: Iterable<RegionRecord>): RegionRecord[] {
  return [...records].filter(hasFindings)
    .sort((a, b) => regionScore(a) - regionScore(b) || a.regionIndex - b.regionIndex)
    .slice(0, SCAN_REGIONS_RECORDED_MAX);
}

/**
 * `dm-remap scan <name> start|stop|status [--json]`: drives the background
 * scanner of a running `serve` through its status API. In a terminal,
 * `status` follows a running pass with a progress bar, its rate and ETA,
 * until the pass ends (Ctrl-C leaves; the scan goes on).
 *
 * @module
 */

import { fetchHealthReport, requestScan } from "../../api/client.ts";
import { UsageError } from "../../errors.ts";
import type { ScanStatus } from "../../scan/mod.ts";
import { apiTargetOf } from "../api_target.ts";
import type { CommandInput } from "../command.ts";

/** How often the progress bar is redrawn. */
const PROGRESS_REDRAW_MS = 1000;
/** Characters of the progress bar. */
const BAR_WIDTH = 30;

/** Runs one scan action. */
export async function scanCommand({ values, positionals, output }: CommandInput): Promise<number> {
  const [name, action, ...extra] = positionals;
  if (name === undefined || !["start", "stop", "status"].includes(action ?? "") || extra.length) {
    throw new UsageError("scan takes a setup name and start, stop or status: scan vault status");
  }
  const target = await apiTargetOf(values, name);
  const status = action === "status"
    ? (await fetchHealthReport(target)).scan
    : await requestScan(target, action as "start" | "stop");
  if (values.json) {
    output.out(JSON.stringify(status, null, 2));
    return 0;
  }
  if (action !== "status" || status.state !== "scanning" || !Deno.stdout.isTerminal()) {
    output.out(formatScanStatus(status));
    return 0;
  }
  await followPass(target, status);
  return 0;
}

/** Redraws one progress line until the pass ends. */
async function followPass(target: string, first: ScanStatus): Promise<void> {
  const encoder = new TextEncoder();
  let status = first;
  while (status.state === "scanning") {
    await Deno.stdout.write(encoder.encode(`\r${progressLine(status)}\x1b[K`));
    await new Promise((resolve) => setTimeout(resolve, PROGRESS_REDRAW_MS));
    status = (await fetchHealthReport(target)).scan;
  }
  await Deno.stdout.write(encoder.encode(`\r\x1b[K${formatScanStatus(status)}\n`));
}

/** `[#######-------]  42.0%  120.5 MiB/s  ETA 1h 02m`. */
export function progressLine(status: ScanStatus): string {
  const filled = Math.round(status.progressRatio * BAR_WIDTH);
  const bar = "#".repeat(filled) + "-".repeat(BAR_WIDTH - filled);
  const eta = status.etaSeconds === undefined ? "" : `  ETA ${formatDuration(status.etaSeconds)}`;
  return `[${bar}] ${(status.progressRatio * 100).toFixed(1).padStart(5)}%  ` +
    `${formatRate(status.rateBytesPerS)}${eta}`;
}

/** The scanner's status for a person. */
export function formatScanStatus(status: ScanStatus): string {
  const time = (ms: number | undefined) => ms === undefined ? "never" : new Date(ms).toISOString();
  const lines = [
    `Scan: ${status.state}${
      status.settings.enabled ? "" : " (automatic passes off: --no-scan or scan.schedule false)"
    }`,
  ];
  if (status.state === "scanning" || status.state === "paused") {
    lines.push(`  ${progressLine(status)}`);
    lines.push(
      `  pass started ${
        time(status.passStartedMs)
      }, at byte ${status.positionBytes} of ${status.sizeBytes}`,
    );
  }
  if (status.nextPassDueMs !== undefined) {
    const inSeconds = Math.max(0, (status.nextPassDueMs - Date.now()) / 1000);
    lines.push(`  next pass ${time(status.nextPassDueMs)} (in ${formatDuration(inSeconds)})`);
  }
  lines.push(
    `  last complete pass ${
      time(status.lastPassCompletedMs)
    }; ${status.passesCompleted} passes in all`,
    `  ${status.relocations} blocks relocated since start; a pass ${
      formatDuration(status.settings.intervalMs / 1000)
    } after the last one ended; rate cap ${
      formatRate(status.settings.rateMaxBytesPerS)
    }, regions of ${status.settings.regionBytes / 1048576} MiB`,
  );
  return lines.join("\n");
}

function formatRate(bytesPerS: number): string {
  return `${(bytesPerS / 1048576).toFixed(1)} MiB/s`;
}

/** `42s`, `3m 07s`, `1h 02m`: a duration for a progress line. */
export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor(s % 3600 / 60)).padStart(2, "0")}m`;
}

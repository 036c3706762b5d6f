/**
 * Runs `smartctl --json -a DEV` (smartmontools) and parses what it printed.
 *
 * Quiet by design: a path that is not a block device (an image file), a
 * device smartctl cannot query (virtio, device-mapper, loop), or a machine
 * without smartctl gives a `no-smart` reading with the reason, never an error
 * or a log line per interval. smartctl's exit status is a bit mask (bit 0:
 * command line, bit 1: open failed, bit 2: a SMART command failed, bits 3-7:
 * what it found on the disk); the JSON it prints says the same in words, so
 * the parser decides from the JSON, not the status.
 *
 * @module
 */

import { SMART_OUTPUT_BYTES_MAX, SMART_TIMEOUT_MS_MAX } from "../constants.ts";
import { parseSmartctlJson, type SmartReading } from "./smart_report.ts";

/** What one smartctl run printed; `missing` when smartctl is not installed. */
export type SmartctlOutput = { missing: true } | {
  missing: false;
  stdout: string;
  exitCode: number;
};

/** Runs smartctl on a device; replaced in tests. */
export type SmartctlRunner = (devicePath: string) => Promise<SmartctlOutput>;

/** Options of {@link readSmart}. */
export interface ReadSmartOptions {
  /** @default runSmartctl */
  run?: SmartctlRunner;
  /** The time recorded with the reading. @default Date.now() */
  nowMs?: number;
}

/**
 * Reads one device's SMART data.
 *
 * @param devicePath The block device (a file or anything else gives `no-smart`).
 * @returns The reading; never throws for a device without SMART.
 */
export async function readSmart(
  devicePath: string,
  options: ReadSmartOptions = {},
): Promise<SmartReading> {
  const timeMs = options.nowMs ?? Date.now();
  const absent = (reason: string): SmartReading => ({
    state: "no-smart",
    device: devicePath,
    reason,
    timeMs,
  });
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(devicePath);
  } catch (error) {
    return absent(`cannot stat "${devicePath}": ${(error as Error).message}`);
  }
  if (!info.isBlockDevice) return absent("not a block device (an image file has no SMART)");
  let output: SmartctlOutput;
  try {
    output = await (options.run ?? runSmartctl)(devicePath);
  } catch (error) {
    return absent(`smartctl failed: ${(error as Error).message}`);
  }
  if (output.missing) return absent("smartctl is not installed (install smartmontools)");
  let json: unknown;
  try {
    json = JSON.parse(output.stdout);
  } catch {
    return absent(`smartctl printed no JSON (exit status ${output.exitCode})`);
  }
  return parseSmartctlJson(json, { device: devicePath, timeMs });
}

/**
 * Runs the installed smartctl with a time limit.
 *
 * @param devicePath The device to query.
 * @returns Its output, or `missing` when smartctl is not on the PATH.
 */
export async function runSmartctl(devicePath: string): Promise<SmartctlOutput> {
  try {
    const output = await new Deno.Command("smartctl", {
      // -n standby: a sleeping disk is not spun up for a reading.
      args: ["--json", "-a", "-n", "standby", devicePath],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      signal: AbortSignal.timeout(SMART_TIMEOUT_MS_MAX),
    }).output();
    const stdout = new TextDecoder().decode(output.stdout.subarray(0, SMART_OUTPUT_BYTES_MAX));
    return { missing: false, stdout, exitCode: output.code };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { missing: true };
    throw error;
  }
}

/**
 * The clean-stop flag: `serve` records which process serves a setup in its
 * metadata when it starts, and removes the record when it stops cleanly. A
 * record whose process is gone means the setup was not stopped cleanly
 * (crash, kill -9, power loss). A process is recognised by its PID, the boot
 * it ran in and its start time, so a reused PID is not mistaken for it.
 *
 * @module
 */

import type { ServingMarker } from "../metadata/superblock.ts";

/** Where procfs is mounted. */
const PROC_ROOT = "/proc";

/** The marker for this process. */
export function servingMarkerOfThisProcess(): ServingMarker {
  return {
    pid: Deno.pid,
    host: Deno.hostname(),
    bootId: bootId(),
    processStartTicks: processStartTicks(Deno.pid) ?? 0,
    startedMs: Date.now(),
  };
}

/** How a setup was left, as `check` and `serve` tell it. */
export type ShutdownState = "clean" | "serving" | "not-clean";

/**
 * Whether the setup stopped cleanly, is being served now, or was left by a
 * server that is gone. A marker from another host counts as serving: this
 * machine cannot tell.
 */
export function shutdownStateOf(marker: ServingMarker | undefined): ShutdownState {
  if (marker === undefined) return "clean";
  if (marker.host !== Deno.hostname()) return "serving";
  const alive = marker.bootId === bootId() &&
    processStartTicks(marker.pid) === marker.processStartTicks;
  return alive ? "serving" : "not-clean";
}

/** The state in words, for `check` and `serve`. */
export function describeShutdownState(marker: ServingMarker | undefined): string {
  const state = shutdownStateOf(marker);
  if (state === "clean" || marker === undefined) return "clean (stopped cleanly)";
  const since = new Date(marker.startedMs).toISOString();
  if (state === "serving") {
    return `being served by process ${marker.pid} on ${marker.host} since ${since}`;
  }
  return `NOT CLEAN: process ${marker.pid} on ${marker.host}, serving since ${since}, ended ` +
    `without a clean stop (crash, kill -9 or power loss); the next serve replays the remap log`;
}

function bootId(): string {
  try {
    return Deno.readTextFileSync(`${PROC_ROOT}/sys/kernel/random/boot_id`).trim();
  } catch {
    return "";
  }
}

/** Field 22 of /proc/PID/stat, or undefined when the process does not exist or has ended. */
function processStartTicks(pid: number): number | undefined {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`${PROC_ROOT}/${pid}/stat`);
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: count from the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // A zombie (Z) or dead (X) process has ended; only its parent has not reaped it yet.
  if (fields[0] === "Z" || fields[0] === "X") return undefined;
  const ticks = Number(fields[22 - 3]);
  return Number.isSafeInteger(ticks) ? ticks : undefined;
}

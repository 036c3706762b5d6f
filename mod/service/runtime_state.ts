/**
 * What a running `serve` tells the rest of the machine, under the runtime
 * directory (`/run/dm-remap` by default, gone at reboot like every /run):
 *
 * - `<dir>/setups/<uuid>.json` ({@link RuntimeState}): which process serves
 *   the setup, its disks, where its NBD export and status API answer, and the
 *   kernel device attached to it, if any. Written once the setup serves,
 *   rewritten when the kernel device changes, removed when it stops. A file
 *   left by a process that is gone (crash, kill -9) is stale: readers check
 *   the process by PID, boot and start time (the serving marker's rule,
 *   `serving_marker.ts`), so a reused PID is never taken for the server.
 * - `<dir>/setups/<uuid>.stop.json` ({@link StopRequest}): written by
 *   `dm-remap stop` before it sends SIGTERM, naming the server's PID. A
 *   SIGTERM with this file is a stop that also detaches the kernel device; a
 *   SIGTERM without it (systemd restarting the unit, an upgrade) is a restart,
 *   which leaves the kernel device attached for the next server.
 *
 * Files are written to a temporary name and renamed, so a reader never sees
 * half a file.
 *
 * @module
 */

import { dirname } from "node:path";
import type { ServingMarker } from "../metadata/superblock.ts";
import { shutdownStateOf } from "./serving_marker.ts";

/** The layout version of {@link RuntimeState}; a reader skips files of other versions. */
export const RUNTIME_STATE_VERSION = 1;

/** One running setup, as `<dir>/setups/<uuid>.json` holds it. */
export interface RuntimeState {
  version: typeof RUNTIME_STATE_VERSION;
  /** The serving process: PID, host, boot and start ticks, as the serving marker has them. */
  process: ServingMarker;
  name: string;
  uuid: string;
  /** The main disk's path. */
  main: string;
  /** The spares' paths, by index. */
  spares: string[];
  /** Where NBD clients connect, as URIs. */
  nbd: string[];
  /** Where the status API answers: socket paths and URLs. */
  api: string[];
  /** The kernel block device attached to the setup (`/dev/nbd0`), when there is one. */
  kernelDevice?: string;
}

/** A state file as read back, with whether its server still runs. */
export interface RuntimeStateEntry {
  state: RuntimeState;
  /** The file's path. */
  path: string;
  /** Whether the process that wrote it is still running (false: the file is stale). */
  alive: boolean;
}

/** What a SIGTERM means: "detach" when `dm-remap stop` asked, "restart" otherwise. */
export type StopRequest = "detach" | "restart";

/** `<dir>/setups/<uuid>.json`. */
export function runtimeStatePath(dir: string, uuid: string): string {
  return `${dir}/setups/${uuid}.json`;
}

/** `<dir>/setups/<uuid>.stop.json`. */
function stopRequestPath(dir: string, uuid: string): string {
  return `${dir}/setups/${uuid}.stop.json`;
}

/**
 * Writes (or replaces) a setup's state file, creating the directory.
 *
 * @param dir The runtime directory.
 * @param state What to record.
 */
export async function writeRuntimeState(dir: string, state: RuntimeState): Promise<void> {
  await writeAtomically(runtimeStatePath(dir, state.uuid), JSON.stringify(state, null, 2));
}

/**
 * Removes a setup's state file and any stop request for it; missing files are fine.
 *
 * @param dir The runtime directory.
 * @param uuid The setup's UUID.
 */
export async function removeRuntimeState(dir: string, uuid: string): Promise<void> {
  await removeIfPresent(runtimeStatePath(dir, uuid));
  await removeIfPresent(stopRequestPath(dir, uuid));
}

/**
 * Every state file under `dir`, with whether its server still runs; files
 * that cannot be parsed or have another version are skipped.
 *
 * @param dir The runtime directory.
 * @returns The entries, sorted by setup name.
 */
export async function listRuntimeStates(dir: string): Promise<RuntimeStateEntry[]> {
  const entries: RuntimeStateEntry[] = [];
  let names: string[] = [];
  try {
    names = (await Array.fromAsync(Deno.readDir(`${dir}/setups`))).map((entry) => entry.name);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  for (const name of names) {
    if (!name.endsWith(".json") || name.endsWith(".stop.json")) continue;
    const path = `${dir}/setups/${name}`;
    const state = await readJson(path);
    if (!isRuntimeState(state)) continue;
    entries.push({ state, path, alive: shutdownStateOf(state.process) === "serving" });
  }
  return entries.sort((a, b) => a.state.name.localeCompare(b.state.name));
}

/**
 * Asks the server of a setup to detach its kernel device when it stops:
 * `dm-remap stop` writes this before it sends SIGTERM.
 *
 * @param dir The runtime directory.
 * @param state The running server's state.
 */
export async function requestDetach(dir: string, state: RuntimeState): Promise<void> {
  await writeAtomically(
    stopRequestPath(dir, state.uuid),
    JSON.stringify({ request: "detach", pid: state.process.pid }),
  );
}

/**
 * What the stop of this process's server means: "detach" when `dm-remap stop`
 * asked this very process (by PID) to stop, else "restart".
 *
 * @param dir The runtime directory.
 * @param uuid The setup's UUID.
 */
export async function stopRequestOf(dir: string, uuid: string): Promise<StopRequest> {
  const request = await readJson(stopRequestPath(dir, uuid));
  const asked = typeof request === "object" && request !== null &&
    (request as { request?: unknown }).request === "detach" &&
    (request as { pid?: unknown }).pid === Deno.pid;
  return asked ? "detach" : "restart";
}

async function writeAtomically(path: string, text: string): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const temporary = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(temporary, text + "\n");
  await Deno.rename(temporary, path);
}

async function removeIfPresent(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof SyntaxError) return undefined;
    throw error;
  }
}

function isRuntimeState(value: unknown): value is RuntimeState {
  if (typeof value !== "object" || value === null) return false;
  const state = value as Partial<RuntimeState>;
  return state.version === RUNTIME_STATE_VERSION && typeof state.uuid === "string" &&
    typeof state.name === "string" && typeof state.process?.pid === "number";
}

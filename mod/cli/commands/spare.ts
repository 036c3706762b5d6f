/**
 * `dm-remap spare add|remove|replace <name> ...`: changes the spare pool of a
 * running `serve` through its status API, as `scan` drives the scanner.
 *
 * - `spare add <name> <dev> [--force]`: the server checks the device as
 *   `create` does (its identity against the setup's disks, its size, whether
 *   it is in use or holds data), formats it and lists it on every spare.
 * - `spare remove <name> <dev>`: the server moves the spare's blocks to the
 *   others and drops it once none is left; this command follows the
 *   migration (a progress bar with rate and ETA in a terminal, the final
 *   state as JSON with `--json`) until it ends. Leaving (Ctrl-C) does not
 *   stop it, and a server restarted after a crash resumes it.
 * - `spare replace <name> <old> <new>`: add `new`, then remove `old`
 *   (md's `--replace`).
 *
 * Exit codes: 0 done; 1 the migration ended with blocks it could not move;
 * 2 a bad request; 4 refused (no room, the device holds data or is one of
 * the setup's disks); 69 no server answers.
 *
 * @module
 */

import {
  fetchStatus,
  requestSpareAdd,
  requestSpareRemove,
  StatusRequestError,
} from "../../api/client.ts";
import type { SpareAdded } from "../../api/control.ts";
import type { SpareMigrationStatus } from "../../api/status.ts";
import { RefusedError, UsageError } from "../../errors.ts";
import { apiTargetOf } from "../api_target.ts";
import type { CliOutput, CommandInput } from "../command.ts";
import { EXIT_OK, EXIT_PROBLEM_FOUND } from "../exit_codes.ts";
import { formatDuration } from "./scan.ts";

/** How often the migration's progress is asked for. */
const PROGRESS_POLL_MS = 1000;
/** Characters of the progress bar. */
const BAR_WIDTH = 30;

const USAGE =
  "spare add <name> <dev> | spare remove <name> <dev> | spare replace <name> <old> <new>";

/** Runs one spare action. */
export async function spareCommand({ values, positionals, output }: CommandInput): Promise<number> {
  const [action, name, ...devices] = positionals;
  const wanted = { add: 1, remove: 1, replace: 2 }[action ?? ""];
  if (wanted === undefined || name === undefined || devices.length !== wanted) {
    throw new UsageError(`spare takes: ${USAGE}`);
  }
  const target = await apiTargetOf(values, name);
  const json = values.json === true;
  if (action === "add") {
    const added = await refusalsOf(requestSpareAdd(target, {
      path: devices[0]!,
      force: values.force === true,
    }));
    output.out(json ? JSON.stringify(added) : describeAdded(name, added));
    return EXIT_OK;
  }
  if (action === "replace") {
    const added = await refusalsOf(requestSpareAdd(target, {
      path: devices[1]!,
      force: values.force === true,
    }));
    if (!json) output.out(describeAdded(name, added));
  }
  const started = await refusalsOf(requestSpareRemove(target, { path: devices[0]! }));
  const ended = await follow(target, started, { json, output });
  if (json) output.out(JSON.stringify(ended));
  else output.out(describeEnd(name, devices[0]!, ended));
  if (ended.state === "done") return EXIT_OK;
  output.err(`dm-remap spare: ${ended.error ?? "the migration did not finish"}`);
  return EXIT_PROBLEM_FOUND;
}

/** The API's refusals as the CLI's errors: 409 a refusal (exit 4), 400 a bad request (exit 2). */
async function refusalsOf<T>(request: Promise<T>): Promise<T> {
  try {
    return await request;
  } catch (error) {
    if (!(error instanceof StatusRequestError)) throw error;
    const detail = error.message.replace(/^.*?: HTTP \d+: /, "");
    if (error.httpStatus === 409) throw new RefusedError(error.target, detail);
    if (error.httpStatus === 400) throw new UsageError(detail);
    throw error;
  }
}

/** Waits for the migration to end, redrawing a progress line in a terminal. */
async function follow(
  target: string,
  first: SpareMigrationStatus,
  options: { json: boolean; output: CliOutput },
): Promise<SpareMigrationStatus> {
  const terminal = !options.json && Deno.stdout.isTerminal();
  const encoder = new TextEncoder();
  let migration = first;
  while (migration.state === "running") {
    if (terminal) await Deno.stdout.write(encoder.encode(`\r${progressLine(migration)}\x1b[K`));
    await new Promise((resolve) => setTimeout(resolve, PROGRESS_POLL_MS));
    const now = (await fetchStatus(target)).migration;
    // A server restarted meanwhile resumes with a fresh count of what is left.
    if (now === null || now.spareIndex !== first.spareIndex) break;
    migration = now;
  }
  if (terminal) await Deno.stdout.write(encoder.encode(`\r\x1b[K`));
  return migration;
}

/** `[#######-------]  42.0%  1200/5000 blocks  400 blocks/s  ETA 9s`. */
export function progressLine(migration: SpareMigrationStatus): string {
  const ratio = migration.blocksTotal === 0 ? 1 : migration.blocksMoved / migration.blocksTotal;
  const filled = Math.round(Math.min(ratio, 1) * BAR_WIDTH);
  const bar = "#".repeat(filled) + "-".repeat(BAR_WIDTH - filled);
  const eta = migration.etaSeconds === null ? "" : `  ETA ${formatDuration(migration.etaSeconds)}`;
  return `[${bar}] ${(ratio * 100).toFixed(1).padStart(5)}%  ` +
    `${migration.blocksMoved}/${migration.blocksTotal} blocks  ` +
    `${migration.rateBlocksPerS.toFixed(0)} blocks/s${eta}`;
}

function describeAdded(name: string, added: SpareAdded): string {
  return `Added spare ${added.index} "${added.path}" to setup "${name}": ${added.slotCount} slots`;
}

function describeEnd(name: string, path: string, migration: SpareMigrationStatus): string {
  const seconds = ((migration.endedMs ?? Date.now()) - migration.startedMs) / 1000;
  if (migration.state === "done") {
    return `Removed spare ${migration.spareIndex} "${path}" from setup "${name}": ` +
      `${migration.blocksMoved} blocks moved in ${formatDuration(seconds)}`;
  }
  return `Spare ${migration.spareIndex} "${path}" of setup "${name}" is still draining: ` +
    `${migration.blocksMoved} blocks moved, ${migration.blocksFailed} could not be`;
}

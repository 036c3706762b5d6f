/**
 * Stopping a running `serve` from another process, as `dm-remap stop` does:
 * find the server by its runtime state (`runtime_state.ts`), refuse while its
 * kernel device is in use, ask it to stop and detach (a stop request, then
 * SIGTERM), and wait a bounded time for it to exit.
 *
 * @module
 */

import { UnavailableError } from "../errors.ts";
import {
  listRuntimeStates,
  requestDetach,
  type RuntimeState,
  type RuntimeStateEntry,
} from "./runtime_state.ts";
import { shutdownStateOf } from "./serving_marker.ts";

/** How often the exit of the server is checked. */
const EXIT_POLL_MS = 50;

/**
 * The running server of a setup, by name or UUID.
 *
 * @param dir The runtime directory.
 * @param setup The setup's name or UUID.
 * @returns The live server's entry.
 * @throws {UnavailableError} When no live server runs it (a stale record is named).
 */
export async function findRunningSetup(dir: string, setup: string): Promise<RuntimeStateEntry> {
  const matches = (await listRuntimeStates(dir)).filter((entry) =>
    entry.state.name === setup || entry.state.uuid === setup
  );
  const live = matches.filter((entry) => entry.alive);
  if (live.length > 1) {
    const pids = live.map((entry) => entry.state.process.pid).join(", ");
    throw new UnavailableError(
      `Setup "${setup}" is served by ${live.length} processes (${pids}): name it by UUID`,
    );
  }
  if (live[0] !== undefined) return live[0];
  const stale = matches[0];
  throw new UnavailableError(
    `No dm-remap serve runs setup "${setup}"` +
      (stale
        ? `: "${stale.path}" records process ${stale.state.process.pid}, which has ended`
        : ` (no record under ${dir}/setups)`),
  );
}

/** Options of {@link stopServer}. */
export interface StopServerOptions {
  /** How long to wait for the server to exit. */
  timeoutMs: number;
}

/**
 * Asks a running server to stop and detach its kernel device, and waits for it to exit.
 *
 * @param dir The runtime directory.
 * @param state The server's runtime state.
 * @param options The wait's bound.
 * @returns How long the server took to exit.
 * @throws {UnavailableError} When it is still running after the bound.
 */
export async function stopServer(
  dir: string,
  state: RuntimeState,
  options: StopServerOptions,
): Promise<{ waitedMs: number }> {
  await requestDetach(dir, state);
  const startedMs = Date.now();
  try {
    Deno.kill(state.process.pid, "SIGTERM");
  } catch (error) {
    // It ended between the check and the signal: that is the outcome asked for.
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  while (shutdownStateOf(state.process) === "serving") {
    if (Date.now() - startedMs >= options.timeoutMs) {
      throw new UnavailableError(
        `Setup "${state.name}" is still served by process ${state.process.pid} after ` +
          `${options.timeoutMs} ms: it may be flushing a slow disk; run "dm-remap stop" again ` +
          `to keep waiting, or see its log`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, EXIT_POLL_MS));
  }
  return { waitedMs: Date.now() - startedMs };
}

/**
 * Discovery as `discover` and `assemble` run it: probes on workers started
 * from this program's own main module, each with a deadline, and every
 * setup's findings recorded in its event history.
 *
 * @module
 */

import { checkSetupName } from "../assembly/create.ts";
import { discover } from "../assembly/discover.ts";
import type { DiscoveryReport, SetupFinding } from "../assembly/discovery_report.ts";
import { ProbePool } from "../assembly/probe_pool.ts";
import { workerModuleUrl } from "../datapath/worker_module.ts";
import { EventHistory, historyEventOf } from "../events/event_history.ts";
import type { RecordedEvent } from "../events/setup_event.ts";
import { shutdownStateOf } from "../service/serving_marker.ts";
import { STATE_DIR } from "./options.ts";
import { eventsPathOf } from "./service_settings.ts";

/** Options for {@link runDiscovery}. */
export interface RunDiscoveryOptions {
  /** Probe only these (`DEV...`). */
  paths?: string[];
  /** Scanned for image files. @default [STATE_DIR] */
  scanDirs: string[];
  timeoutMs: number;
}

/** Discovers setups, each candidate probed on a worker within `timeoutMs`. */
export async function runDiscovery(options: RunDiscoveryOptions): Promise<DiscoveryReport> {
  const pool = new ProbePool({ workerUrl: workerModuleUrl(), timeoutMs: options.timeoutMs });
  try {
    return await discover({
      paths: options.paths,
      scanDirs: options.scanDirs.length > 0 ? options.scanDirs : [STATE_DIR],
      prober: (paths) => pool.probe(paths),
      lastStopOf: shutdownStateOf,
    });
  } finally {
    // Workers stuck on a dead disk are left behind: the command exits without them.
    pool.close();
  }
}

/** The devices a setup was found on: its spares (winning and stale) and its main disk. */
export function devicesOf(setup: SetupFinding): string[] {
  const spares = setup.spares.flatMap((spare) => [
    ...spare.found ? [spare.found.path] : [],
    ...spare.stale.map((sighting) => sighting.path),
  ]);
  return [...spares, ...setup.main.path ? [setup.main.path] : []];
}

/** The reasons behind a setup's state and confidence, in words. */
export function reasonsOf(setup: SetupFinding): string[] {
  return setup.pointsLost.map((lost) => `-${lost.points}: ${lost.reason}`);
}

/**
 * Appends events to the history of the setup `setupName` (where `serve`
 * keeps it). The history is an audit trail beside the disks: when it cannot
 * be written (a read-only state directory), the command goes on and says so.
 *
 * @returns A warning when the history could not be written.
 */
export async function recordInHistory(
  setupName: string,
  events: RecordedEvent[],
): Promise<string | undefined> {
  try {
    // The name comes from a disk, which may be foreign: it must be a name, not a path.
    checkSetupName(setupName);
  } catch {
    return `no event history for the setup name "${setupName}": it is not a valid setup name`;
  }
  const path = eventsPathOf(setupName);
  try {
    await Deno.mkdir(STATE_DIR, { recursive: true });
    const history = EventHistory.open(path);
    try {
      for (const event of events) history.record(historyEventOf(event));
    } finally {
      history.close();
    }
    return undefined;
  } catch (error) {
    return `the event history "${path}" could not be written: ${(error as Error).message}`;
  }
}

/** Records what discovery found about each setup in its history. */
export async function recordDiscovery(report: DiscoveryReport): Promise<string[]> {
  const warnings = [];
  for (const setup of report.setups) {
    const warning = await recordInHistory(setup.name, [{
      type: "discovered",
      setupUuid: setup.uuid,
      state: setup.state,
      confidence: setup.confidence,
      reasons: reasonsOf(setup),
      devices: devicesOf(setup),
    }]);
    if (warning !== undefined) warnings.push(warning);
  }
  return warnings;
}

/**
 * Which found setups to start: the decisions of `dm-remap assemble`, made
 * from discovery's report alone. Pure: nothing is opened, started or written.
 *
 * Like `mdadm --assemble --scan`, assembly refuses rather than guesses. A
 * setup is started only when it is `complete` (every spare once, the main
 * disk found by its recorded identity, no conflict) and its confidence
 * reaches the threshold; a setup already running is left alone. Every
 * decision carries its reasons and the devices involved.
 *
 * @module
 */

import type { DiscoveryReport, SetupFinding } from "./discovery_report.ts";

/**
 * What assembly does with a setup; `start-failed` when the starter failed
 * (set by `assemble_setups.ts`, never decided here).
 */
export type AssemblyAction = "start" | "refuse" | "already-running" | "start-failed";

/** One setup's decision. */
export interface AssemblyDecision {
  uuid: string;
  name: string;
  action: AssemblyAction;
  state: SetupFinding["state"];
  confidence: number;
  /** Why: the refusal's causes, who runs it, or what was checked before a start. */
  reasons: string[];
  /** Its spares in index order (winning devices), then its main disk. */
  devices: string[];
  /** The spares to serve, in index order (for a start). */
  sparePaths: string[];
  /** The main disk, found by identity (for a start). */
  mainPath?: string;
}

/** Options for {@link decideAssembly}. */
export interface DecideAssemblyOptions {
  /** The confidence a setup needs to start, 0-100. */
  threshold: number;
  /** The setups to decide about: every one (`--scan`), or those named (name or UUID). */
  selection: { kind: "all" } | { kind: "named"; names: readonly string[] };
  /** Why a setup counts as running (who serves it), or undefined when it does not. */
  runningReason: (setup: SetupFinding) => string | undefined;
}

/** The decisions, and the names asked for that match no setup. */
export interface AssemblyPlan {
  decisions: AssemblyDecision[];
  notFound: string[];
}

/** Decides, for each selected setup, whether to start it. */
export function decideAssembly(
  report: DiscoveryReport,
  options: DecideAssemblyOptions,
): AssemblyPlan {
  const selection = options.selection;
  const selected = selection.kind === "all"
    ? report.setups
    : report.setups.filter((setup) =>
      selection.names.includes(setup.name) || selection.names.includes(setup.uuid)
    );
  const notFound = selection.kind === "all"
    ? []
    : selection.names.filter((name) =>
      !report.setups.some((setup) => setup.name === name || setup.uuid === name)
    );
  return {
    decisions: selected.map((setup) => decideOne(setup, options)),
    notFound,
  };
}

function decideOne(setup: SetupFinding, options: DecideAssemblyOptions): AssemblyDecision {
  const sparePaths = setup.spares.flatMap((spare) => spare.found ? [spare.found.path] : []);
  const decision: AssemblyDecision = {
    uuid: setup.uuid,
    name: setup.name,
    action: "start",
    state: setup.state,
    confidence: setup.confidence,
    reasons: setup.pointsLost.map((lost) => `-${lost.points}: ${lost.reason}`),
    devices: [...sparePaths, ...setup.main.path ? [setup.main.path] : []],
    sparePaths,
  };
  if (setup.main.path !== undefined) decision.mainPath = setup.main.path;
  const running = options.runningReason(setup);
  if (running !== undefined) {
    return { ...decision, action: "already-running", reasons: [running] };
  }
  if (setup.state !== "complete") {
    const conflicts = setup.conflicts.map((conflict) =>
      `${conflict.explanation}; what to do: ${conflict.action}`
    );
    return {
      ...decision,
      action: "refuse",
      reasons: [`the setup is ${setup.state}`, ...conflicts, ...decision.reasons],
    };
  }
  if (setup.confidence < options.threshold) {
    return {
      ...decision,
      action: "refuse",
      reasons: [
        `confidence ${setup.confidence} is below the threshold ${options.threshold} ` +
        `(--threshold lowers it)`,
        ...decision.reasons,
      ],
    };
  }
  return decision;
}

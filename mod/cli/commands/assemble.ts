/**
 * `dm-remap assemble (--scan | NAME|UUID... | --incremental DEV) [--dry-run]
 * [--json] [--threshold N] [--scan-dir DIR]... [--timeout-ms N]
 * [--export auto|ublk|nbd] [--config FILE]`: starts the setups found on the
 * disks, as `mdadm --assemble --scan` / `--incremental`.
 *
 * Decides from `discover`'s report (`assembly/assembly_plan.ts`): a setup is
 * started when it is complete and its confidence reaches `--threshold`
 * (default 90); one that is incomplete, conflicting, whose main disk is
 * missing or mismatched, or below the threshold is refused with the reasons,
 * and nothing is written to its disks. A setup already running is reported
 * and left alone. Two assembles at once take turns on a lock under the
 * runtime directory (/run/dm-remap, `DM_REMAP_RUN_DIR`), so neither starts a
 * setup the other started. `--incremental DEV` (for udev) records the spare
 * and assembles its setup once every spare has been seen.
 *
 * Starting: under systemd `systemctl start dm-remap@<name>.service` (the
 * unit's `serve --export` makes the same choice, `cli/serve_kernel_export.ts`;
 * `--export` given here does not reach it), otherwise a detached `dm-remap
 * serve <name> --spare ... --main ...` with `--ublk` or `--attach auto`:
 * `--export`, else the configuration's `export` for the setup, else `auto`,
 * which takes ublk when the kernel has ublk_drv (loaded, or installed and
 * loaded with modprobe) and NBD otherwise (`assembly/kernel_export_choice.ts`).
 * Every decision goes to the setup's event history.
 *
 * `--json` prints `{ version: 1, dryRun, threshold, decisions[{uuid, name,
 * action, state, confidence, reasons, devices, sparePaths, mainPath,
 * started: {name, startedMs, pid | unit, kernelExport: {kind, reason}}}],
 * notFound[], incremental }`; `action` is `start` (also in a dry
 * run, which starts nothing), `refuse`, `already-running` or `start-failed`
 * (the `serve` started exited at once; the reasons carry its log's end).
 *
 * Exit code: 0 when nothing was refused, failed or missing, 1 otherwise.
 *
 * @module
 */

import {
  type AssembleMode,
  type AssembleOutcome,
  assembleSetups,
} from "../../assembly/assemble_setups.ts";
import type { AssemblyDecision } from "../../assembly/assembly_plan.ts";
import { decideKernelExport, exportOption } from "../../assembly/kernel_export_choice.ts";
import { attachedNbdDevices } from "../../device/block_devices.ts";
import { ASSEMBLE_THRESHOLD_DEFAULT } from "../../constants.ts";
import { UsageError } from "../../errors.ts";
import type { RecordedEvent } from "../../events/setup_event.ts";
import type { CliOutput, CommandInput } from "../command.ts";
import { EXIT_OK, EXIT_PROBLEM_FOUND } from "../exit_codes.ts";
import { loadUblkModule, ublkSupportOf } from "../../sys/ublk_support.ts";
import { configLocation, readConfig } from "../config_source.ts";
import { integerOption, listOption, RUN_DIR, stringOption } from "../options.ts";
import { kernelExportChoiceOf } from "../service_settings.ts";
import { recordDiscovery, recordInHistory, runDiscovery } from "../run_discovery.ts";
import { isStartAlive, processStarter, startsUnits, systemdStarter } from "../setup_starter.ts";
import { timeoutOption } from "./discover.ts";

/** Discovers, decides, starts, and reports. */
export async function assembleCommand(
  { values, positionals, output }: CommandInput,
): Promise<number> {
  const mode = modeOf(values.scan === true, stringOption(values.incremental), positionals);
  const threshold = integerOption("threshold", stringOption(values.threshold), {
    min: 0,
    max: 100,
  }) ?? ASSEMBLE_THRESHOLD_DEFAULT;
  const scanDirs = listOption(values["scan-dir"]);
  const timeoutMs = timeoutOption(values["timeout-ms"]);
  const dryRun = values["dry-run"] === true;
  const exportFlag = exportOption(stringOption(values.export));
  const config = await readConfig(configLocation(stringOption(values.config)));
  const kernelExportOf = async (decision: AssemblyDecision) =>
    decideKernelExport({
      choice: exportFlag ?? kernelExportChoiceOf(config?.values, decision) ?? "auto",
      support: ublkSupportOf(),
      loadModule: loadUblkModule,
      attachedNbd: (await attachedNbdDevices()).get(decision.uuid),
    });
  const outcome = await assembleSetups({
    mode,
    dryRun,
    threshold,
    discover: (paths) => runDiscovery({ paths: paths && [...paths], scanDirs, timeoutMs }),
    starter: await startsUnits() ? systemdStarter : processStarter({
      logDirectory: RUN_DIR,
      argv0: Deno.env.get("DM_REMAP_SERVE_ARGV0"),
      kernelExportOf,
    }),
    runtimeDirectory: RUN_DIR,
    isStartAlive,
  });
  for (const warning of await recordOutcome(outcome, dryRun)) {
    output.err(`dm-remap assemble: ${warning}`);
  }
  if (values.json) {
    output.out(JSON.stringify(
      {
        version: 1,
        dryRun,
        threshold,
        decisions: outcome.decisions.map((decision) => ({
          ...decision,
          started: outcome.started[decision.uuid],
        })),
        notFound: outcome.notFound,
        incremental: outcome.incremental,
      },
      null,
      2,
    ));
  } else {
    printOutcome(outcome, { dryRun, output });
  }
  const refused = outcome.decisions.some((decision) =>
    decision.action === "refuse" || decision.action === "start-failed"
  );
  return refused || outcome.notFound.length > 0 ? EXIT_PROBLEM_FOUND : EXIT_OK;
}

function modeOf(scan: boolean, incremental: string | undefined, names: string[]): AssembleMode {
  const modes = [scan, incremental !== undefined, names.length > 0].filter(Boolean).length;
  if (modes !== 1) {
    throw new UsageError("Give exactly one of --scan, --incremental <dev>, or setup names/UUIDs");
  }
  if (scan) return { kind: "scan" };
  if (incremental !== undefined) return { kind: "incremental", device: incremental };
  return { kind: "named", names };
}

/** What the decision was, in the history's words (a dry run's start is `would-start`). */
function decisionWord(decision: AssemblyDecision, dryRun: boolean): string {
  return dryRun && decision.action === "start" ? "would-start" : decision.action;
}

/** Records the discovery and every decision in each setup's history. */
async function recordOutcome(outcome: AssembleOutcome, dryRun: boolean): Promise<string[]> {
  const warnings = outcome.report ? await recordDiscovery(outcome.report) : [];
  const note = outcome.incremental;
  const byName = new Map<string, RecordedEvent[]>();
  if (note?.outcome === "recorded") {
    byName.set(note.setupName!, [{
      type: "incremental-seen",
      setupUuid: note.setupUuid!,
      spareIndex: note.spareIndex!,
      device: note.device,
      seenCount: note.seen!.length,
      expectedCount: note.expected!,
    }]);
  }
  for (const decision of outcome.decisions) {
    const started = outcome.started[decision.uuid];
    const events = byName.get(decision.name) ?? [];
    events.push({
      type: "assembly-decision",
      setupUuid: decision.uuid,
      decision: decisionWord(decision, dryRun),
      reasons: started
        ? [
          `started ${started.unit ?? `process ${started.pid}`}` +
          (started.kernelExport ? ` with ${started.kernelExport.kind}` : ""),
          ...(started.kernelExport ? [`kernel device: ${started.kernelExport.reason}`] : []),
          ...decision.reasons,
        ]
        : decision.reasons,
      devices: decision.devices,
    });
    byName.set(decision.name, events);
  }
  for (const [name, events] of byName) {
    const warning = await recordInHistory(name, events);
    if (warning !== undefined) warnings.push(warning);
  }
  return warnings;
}

function printOutcome(
  outcome: AssembleOutcome,
  context: { dryRun: boolean; output: CliOutput },
): void {
  const { output } = context;
  const note = outcome.incremental;
  if (note?.outcome === "not-a-spare") {
    output.out(`${note.device}: not a spare of any setup (${note.reason}); nothing recorded`);
  } else if (note !== undefined) {
    output.out(
      `${note.device}: spare ${note.spareIndex} of "${note.setupName}" (${note.setupUuid}); ` +
        `seen ${note.seen!.length} of ${note.expected} spares` +
        (note.seen!.length < note.expected! ? ": waiting for the others" : ""),
    );
  }
  for (const decision of outcome.decisions) {
    const started = outcome.started[decision.uuid];
    const what = started
      ? `started (${started.unit ?? `process ${started.pid}`}${
        started.kernelExport ? `, ${started.kernelExport.kind}` : ""
      })`
      : decisionWord(decision, context.dryRun);
    output.out(
      `${decision.name} (${decision.uuid}): ${what}, ${decision.state}, confidence ` +
        decision.confidence,
    );
    if (started?.kernelExport) output.out(`  kernel device: ${started.kernelExport.reason}`);
    for (const reason of decision.reasons) output.out(`  ${reason}`);
  }
  for (const name of outcome.notFound) output.out(`${name}: no such setup found on the disks`);
}

/**
 * `dm-remap discover [--json] [--scan-dir DIR]... [--timeout-ms N] [DEV...]`:
 * finds setups from the disks alone, as `mdadm --examine --scan` does, and
 * says for each how complete and trustworthy it is.
 *
 * Candidates are the block devices of /sys/class/block (never the `nbd*` and
 * `ublkb*` devices setups export, RAM disks or empty devices) and the `*.img`
 * files of the scan directories, or only the devices named. Each is probed on
 * a worker within `--timeout-ms` (default 2000): a dead disk is reported
 * "timed out" and the command goes on. Nothing is written to any candidate;
 * each setup's findings go to its event history.
 *
 * The main disk is located by the identity the setup recorded (serial/WWN,
 * a file's device and inode, a block device's number, and size): not by a
 * SHA-256 of sampled contents, because the client keeps writing the contents.
 *
 * `--json` prints the {@link DiscoveryReport} (`assembly/discovery_report.ts`),
 * a stable shape with a `version` field: `candidates[]` (path, status, kind,
 * sizeBytes, setupUuid, spareIndex, reason, probeMs) and `setups[]` (uuid,
 * name, generation, state, confidence, pointsLost[{points, reason}],
 * lastStop, servingPid, kernelDevice, sparesExpected, sparesFound, spares[{index, uuid,
 * recordedPath, state, found{path, sequence, generation, timestampMs,
 * validCopies}, stale[]}], main{recordedPath, identity, strength, path,
 * mismatches[{path, reason}]}, conflicts[{kind, devices, explanation, action}], and for a
 * setup found with spares missing, unavailable[{spareIndex, uuid, blockCount, firstBlocks,
 * known}]: the remapped blocks on each missing spare, as the spares found record them).
 *
 * @module
 */

import type { DiscoveryReport, SetupFinding } from "../../assembly/discovery_report.ts";
import { PROBE_TIMEOUT_MS_DEFAULT, PROBE_TIMEOUT_MS_MAX } from "../../constants.ts";
import type { CliOutput, CommandInput, OptionValue } from "../command.ts";
import { integerOption, listOption, stringOption } from "../options.ts";
import { recordDiscovery, runDiscovery } from "../run_discovery.ts";
import { type UnavailableBlocks, unavailableBlocksOf } from "../../assembly/unavailable_blocks.ts";

/** Probes the candidates and prints the setups found. */
export async function discoverCommand(
  { values, positionals, output }: CommandInput,
): Promise<number> {
  const report = await runDiscovery({
    paths: positionals.length > 0 ? positionals : undefined,
    scanDirs: listOption(values["scan-dir"]),
    timeoutMs: timeoutOption(values["timeout-ms"]),
  });
  for (const warning of await recordDiscovery(report)) output.err(`dm-remap discover: ${warning}`);
  const unavailable = await unavailableOf(report, output);
  if (values.json) {
    output.out(JSON.stringify(
      {
        ...report,
        setups: report.setups.map((setup) => ({ ...setup, unavailable: unavailable.get(setup) })),
      },
      null,
      2,
    ));
  } else {
    printReport(report, output);
    printUnavailable(report, unavailable, output);
  }
  return 0;
}

/** For setups found with spares missing: the blocks on the missing spares, from the others. */
async function unavailableOf(
  report: DiscoveryReport,
  output: CliOutput,
): Promise<Map<SetupFinding, UnavailableBlocks[]>> {
  const result = new Map<SetupFinding, UnavailableBlocks[]>();
  for (const setup of report.setups) {
    if (setup.sparesFound === 0 || setup.sparesFound === setup.sparesExpected) continue;
    try {
      result.set(setup, await unavailableBlocksOf(setup));
    } catch (error) {
      output.err(
        `dm-remap discover: cannot read the remaps of setup "${setup.name}": ${
          (error as Error).message
        }`,
      );
    }
  }
  return result;
}

function printUnavailable(
  report: DiscoveryReport,
  unavailable: Map<SetupFinding, UnavailableBlocks[]>,
  output: CliOutput,
): void {
  for (const setup of report.setups) {
    for (const spare of unavailable.get(setup) ?? []) {
      output.out(
        spare.known
          ? `${setup.name}: spare ${spare.spareIndex} (${spare.uuid}) is missing: ` +
            `${spare.blockCount} remapped blocks unavailable` +
            (spare.blockCount > 0 ? ` (first: ${spare.firstBlocks.join(", ")})` : "")
          : `${setup.name}: spare ${spare.spareIndex} (${spare.uuid}) is missing; the spares found ` +
            `were written by format version 1 and do not record its remaps`,
      );
    }
  }
}

/** `--timeout-ms N`: a probe's deadline. */
export function timeoutOption(value: OptionValue): number {
  return integerOption("timeout-ms", stringOption(value), { min: 1, max: PROBE_TIMEOUT_MS_MAX }) ??
    PROBE_TIMEOUT_MS_DEFAULT;
}

/** The human table: candidates that need attention, then one block per setup. */
export function printReport(report: DiscoveryReport, output: CliOutput): void {
  const spares = report.candidates.filter((candidate) => candidate.status === "spare").length;
  output.out(
    `${report.candidates.length} candidates probed in ${report.elapsedMs} ms, ` +
      `${spares} carry spares, ${report.setups.length} setups found`,
  );
  for (const candidate of report.candidates) {
    if (candidate.status === "spare" || candidate.status === "no-metadata") continue;
    output.out(`  ${candidate.path}: ${candidate.status}: ${candidate.reason ?? ""}`);
  }
  if (report.setups.length === 0) return;
  const rows = report.setups.map((setup) => [
    setup.name,
    setup.uuid,
    setup.state,
    String(setup.confidence),
    `${setup.sparesFound}/${setup.sparesExpected}`,
    setup.lastStop === "serving" ? `serving (pid ${setup.servingPid})` : setup.lastStop,
    setup.main.path ?? "-",
  ]);
  const header = ["SETUP", "UUID", "STATE", "CONFIDENCE", "SPARES", "LAST STOP", "MAIN"];
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => row[column]!.length))
  );
  const line = (cells: string[]) =>
    cells.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd();
  output.out("");
  output.out(line(header));
  for (const row of rows) output.out(line(row));
  for (const setup of report.setups) printSetup(setup, output);
}

function printSetup(setup: SetupFinding, output: CliOutput): void {
  output.out("");
  output.out(`${setup.name} (${setup.uuid}): ${setup.state}, confidence ${setup.confidence}`);
  if (setup.kernelDevice) output.out(`  kernel device: ${setup.kernelDevice}`);
  for (const spare of setup.spares) {
    const found = spare.found;
    output.out(
      found === undefined
        ? `  spare ${spare.index}: MISSING (last at "${spare.recordedPath}")`
        : `  spare ${spare.index}: ${found.path}, sequence ${found.sequence}, generation ` +
          `${found.generation}, ${found.validCopies}/5 copies valid` +
          (spare.state === "failed" ? ", failed" : ""),
    );
    for (const stale of spare.stale) {
      output.out(
        `    stale: ${stale.path}, sequence ${stale.sequence}, generation ${stale.generation}`,
      );
    }
  }
  output.out(
    `  main: ${setup.main.path ?? "NOT FOUND"} (${setup.main.identity}; last at ` +
      `"${setup.main.recordedPath}")`,
  );
  for (const mismatch of setup.main.mismatches) {
    output.out(`    not the main disk: ${mismatch.path}: ${mismatch.reason}`);
  }
  for (const lost of setup.pointsLost) output.out(`  -${lost.points}: ${lost.reason}`);
  for (const conflict of setup.conflicts) {
    output.out(`  conflict (${conflict.kind}): ${conflict.explanation}`);
    output.out(`    what to do: ${conflict.action}`);
  }
}

/**
 * `dm-remap health <name> [--json]`: the health report of a running setup:
 * its score, then its regions worst first, each with the inputs of its score.
 *
 * @module
 */

import { fetchHealthReport } from "../../api/client.ts";
import type { HealthReport, RegionHealth } from "../../scan/mod.ts";
import { apiTargetOf } from "../api_target.ts";
import type { CommandInput } from "../command.ts";
import { onePositional } from "../options.ts";
import { formatScanStatus } from "./scan.ts";

/** Regions listed in the text report; `--json` has them all. */
const REGIONS_SHOWN_MAX = 10;

/** Prints the health report. */
export async function healthCommand(
  { values, positionals, output }: CommandInput,
): Promise<number> {
  const name = onePositional(positionals, "setup name", true);
  const report = await fetchHealthReport(await apiTargetOf(values, name));
  output.out(values.json ? JSON.stringify(report, null, 2) : formatHealth(name!, report));
  return 0;
}

/** The report for a person. */
export function formatHealth(name: string, report: HealthReport): string {
  const { setup } = report;
  const worst = setup.inputs.worstRegion;
  const lines = [
    `Setup "${name}": health ${setup.score}/100 ${setup.label}, risk ${setup.risk}`,
    `  from ${setup.inputs.regions} regions (mean ${setup.inputs.meanRegionScore}` +
    (worst ? `, worst region ${worst.regionIndex} at ${worst.score}` : "") +
    `), ${setup.inputs.pendingBlocks} pending blocks`,
    "Regions, worst first:",
    ...report.regions.slice(0, REGIONS_SHOWN_MAX).map(formatRegion),
  ];
  if (report.regions.length > REGIONS_SHOWN_MAX) {
    lines.push(`  … ${report.regions.length - REGIONS_SHOWN_MAX} more (--json lists them all)`);
  }
  lines.push(...formatSmart(report), ...formatForecast(report));
  lines.push(formatScanStatus(report.scan));
  return lines.join("\n");
}

/** SMART of every disk, and what the main disk's SMART adds to the setup's risk. */
function formatSmart(report: HealthReport): string[] {
  if (report.smart === null) return ["SMART: off (serve --no-smart)"];
  const lines = ["SMART:"];
  for (const disk of report.smart) {
    const where = `  ${disk.role} ${disk.path}${disk.under ? ` (under ${disk.under})` : ""}`;
    const reading = disk.reading;
    if (reading === undefined) lines.push(`${where}: not read yet`);
    else if (reading.state !== "ok") lines.push(`${where}: no SMART (${reading.reason})`);
    else {
      const facts = [
        reading.model,
        reading.passed ? "passed" : "FAILED",
        reading.temperatureC === undefined ? undefined : `${reading.temperatureC} °C`,
        reading.powerOnHours === undefined ? undefined : `${reading.powerOnHours} h`,
      ].filter((fact) => fact !== undefined);
      lines.push(`${where}: ${facts.join(", ")}; risk ${disk.risk?.level ?? "unknown"}`);
      for (const reason of disk.risk?.reasons ?? []) lines.push(`    ${reason}`);
    }
  }
  const smart = report.setup.inputs.smart;
  if (smart !== undefined && (smart.level !== "none" || smart.rising.length > 0)) {
    lines.push(
      `  the setup's risk counts the main disk's SMART: ${smart.level}` +
        (smart.rising.length ? `, rising: ${smart.rising.join(", ")}` : ""),
    );
  }
  return lines;
}

/** When the spare pool runs out, with the reasons. */
function formatForecast(report: HealthReport): string[] {
  if (report.forecast === null) return [];
  return [
    `Prediction: ${report.forecast.summary}`,
    ...report.forecast.reasons.map((reason) => `  ${reason}`),
  ];
}

function formatRegion(region: RegionHealth): string {
  const { inputs } = region;
  const scanned = inputs.lastScannedMs === undefined
    ? "never scanned"
    : `scanned ${new Date(inputs.lastScannedMs).toISOString()}`;
  return `  region ${region.regionIndex} (offset ${region.offsetBytes}): ${region.score} ${region.label}, ` +
    `trend ${region.trend}, risk ${region.risk}` +
    (region.riskReasons.length ? ` (${region.riskReasons.join("; ")})` : "") +
    `\n    inputs: ${inputs.readErrors} read errors, ${inputs.retriedReads} retried reads, ` +
    `${inputs.slowReads} slow reads, ${inputs.clusteredBlocks} clustered, ` +
    `${inputs.relocations} relocated; ${scanned}`;
}

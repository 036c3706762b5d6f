/**
 * `dm-remap status [<name>] [--api-socket <path> | --api-url <url>] [--json]`:
 * asks a running `serve` through its status API.
 *
 * @module
 */

import type { SetupHealth, SetupStatus } from "../../api/status.ts";
import { healthOf } from "../../api/routes/health.ts";
import { fetchStatus } from "../../api/client.ts";
import { apiTargetOf } from "../api_target.ts";
import type { CommandInput } from "../command.ts";
import { onePositional } from "../options.ts";

/** Prints the status of one running setup. */
export async function statusCommand(
  { values, positionals, output }: CommandInput,
): Promise<number> {
  const name = onePositional(positionals, "setup name", false);
  const status = await fetchStatus(await apiTargetOf(values, name));
  if (values.json) {
    output.out(JSON.stringify(status, null, 2));
    return 0;
  }
  output.out(formatStatus(status));
  return 0;
}

/** The human-readable status report. */
export function formatStatus(status: SetupStatus): string {
  const { setup, main, counters } = status;
  const health = healthOf(status);
  const lines = [
    `Setup "${setup.name}" (${setup.uuid}): serving, ${health.status.toUpperCase()}`,
    ...health.reasons.map((reason) => `  ! ${reason}`),
    `  size ${setup.sizeBytes} bytes, block size ${setup.blockBytes}, format version ${setup.formatVersion}` +
    (status.version ? `, served by dm-remap ${status.version}` : ""),
    `  main   ${main.path} (${main.kind}, ${main.sizeBytes} bytes)`,
    `  new remaps go to spares by "${setup.allocation}"`,
  ];
  for (const spare of status.spares) {
    lines.push(
      `  spare  ${spare.index} ${spare.path}: ${spare.missing ? "MISSING" : spare.state}, ` +
        `${spare.slotsUsed}/${spare.slotCount} slots used` +
        (spare.missing
          ? ` (the blocks in them are unreadable until it is back)`
          : `, ${spare.validCopies}/5 copies valid`) +
        (spare.errors > 0 ? `, ${spare.errors} I/O errors on its slots` : ""),
    );
  }
  const migration = status.migration;
  if (migration !== null) {
    lines.push(
      `  spare  ${migration.spareIndex} removal ${migration.state}: ${migration.blocksMoved}/` +
        `${migration.blocksTotal} blocks moved` +
        (migration.blocksFailed > 0 ? `, ${migration.blocksFailed} could not be` : "") +
        (migration.etaSeconds === null ? "" : `, about ${Math.ceil(migration.etaSeconds)} s left`),
    );
  }
  lines.push(
    `  remaps ${counters.remaps} (${counters.remapsCreated} since start), pending ${counters.pending}`,
    `  I/O    ${counters.reads} reads, ${counters.writes} writes, ${counters.flushes} flushes; ` +
      `${counters.readErrors} read errors, ${counters.writeErrors} write errors`,
    `  NBD    export "${status.nbd.exportName}"` +
      (status.nbd.unixPath ? `, unix ${status.nbd.unixPath}` : "") +
      (status.nbd.tcp ? `, tcp ${status.nbd.tcp}` : "") +
      (status.nbd.kernelDevice ? `, kernel ${status.nbd.kernelDevice}` : "") +
      `, ${status.nbd.connections} connections`,
  );
  if (status.pendingBlocks.length > 0) {
    lines.push(
      `  pending blocks: ${status.pendingBlocks.slice(0, 32).join(", ")}${
        status.pendingBlocks.length > 32 ? ", …" : ""
      }`,
    );
  }
  if (status.health !== undefined) lines.push(...formatHealth(status.health));
  return lines.join("\n");
}

/** SMART per disk, the spare-pool forecast and the metadata scrub, a line or so each. */
function formatHealth(health: SetupHealth): string[] {
  const lines: string[] = [];
  if (health.smart === null) lines.push("  SMART  off (--no-smart)");
  for (const [i, disk] of (health.smart?.disks ?? []).entries()) {
    const head = `  ${i === 0 ? "SMART " : "      "} ${disk.role} ${disk.path}: `;
    const reading = disk.reading;
    if (reading === undefined) lines.push(`${head}not read yet`);
    else if (reading.state === "no-smart") lines.push(`${head}no SMART (${reading.reason})`);
    else {
      const what = [reading.protocol.toUpperCase(), reading.kind, reading.model, reading.serial]
        .filter((part) => part !== undefined).join(" ");
      const temperature = reading.temperatureC === undefined ? "" : `, ${reading.temperatureC} °C`;
      lines.push(`${head}${what}${temperature}, risk ${disk.risk?.level ?? "unknown"}`);
      for (const reason of disk.risk?.reasons ?? []) lines.push(`           - ${reason}`);
    }
  }
  lines.push(`  pool   ${health.forecast.summary}`);
  const spares = health.scrub.spares.map((spare) =>
    `spare ${spare.spareIndex} ${spare.state}` +
    (spare.failures > 0 ? ` (${spare.failures} failures: ${spare.lastError})` : "")
  );
  lines.push(
    `  scrub  every ${health.scrub.intervalMs / 1000} s, ${health.scrub.passes} passes; ` +
      spares.join(", "),
  );
  return lines;
}

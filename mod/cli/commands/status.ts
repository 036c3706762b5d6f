/**
 * `dm-remap status [<name>] [--api-socket <path> | --api-url <url>] [--json]`:
 * asks a running `serve` through its status API.
 *
 * @module
 */

import type { SetupStatus } from "../../api/status.ts";
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
  ];
  for (const spare of status.spares) {
    lines.push(
      `  spare  ${spare.index} ${spare.path}: ${spare.state}, ${spare.slotsUsed}/${spare.slotCount} slots used, ` +
        `${spare.validCopies}/5 copies valid`,
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
  return lines.join("\n");
}

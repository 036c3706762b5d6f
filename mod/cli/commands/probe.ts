/**
 * `dm-remap probe [--export] <dev>`: what one device is to dm-remap, read
 * only, for udev (`IMPORT{program}` in `udev/69-dm-remap.rules`). With
 * `--export` it prints `KEY=value` lines udev imports as properties; a device
 * without valid dm-remap metadata prints nothing and exits 0. It reuses the
 * discovery probe (`assembly/candidate_probe.ts`): the device is opened
 * read-only, without O_EXCL, and nothing is written.
 *
 * @module
 */

import { probeCandidate } from "../../assembly/candidate_probe.ts";
import { UsageError } from "../../errors.ts";
import type { CommandInput } from "../command.ts";
import { onePositional } from "../options.ts";

/** The udev properties of a dm-remap spare, in print order. */
export interface SpareProperties {
  DM_REMAP_UUID: string;
  DM_REMAP_NAME: string;
  DM_REMAP_SPARE_INDEX: number;
  DM_REMAP_SPARE_COUNT: number;
  DM_REMAP_SEQUENCE: number;
  DM_REMAP_VALID_COPIES: number;
}

/** udev's property values: no newline, no quote; anything else is replaced by '_'. */
function udevValue(value: string | number): string {
  return String(value).replace(/[^A-Za-z0-9._:@+-]/g, "_");
}

/** Probes one device; exit 0, or 2 for a missing device name. */
export async function probeCommand({ values, positionals, output }: CommandInput): Promise<number> {
  const path = onePositional(positionals, "device", true);
  if (path === undefined) {
    throw new UsageError("probe needs a device: dm-remap probe --export /dev/sdb");
  }
  const probe = await probeCandidate(path);
  const winner = probe.winner;
  const properties: SpareProperties | undefined = winner && {
    DM_REMAP_UUID: winner.payload.setup.uuid,
    DM_REMAP_NAME: winner.payload.setup.name,
    DM_REMAP_SPARE_INDEX: winner.payload.spareIndex,
    DM_REMAP_SPARE_COUNT: winner.payload.spares.length,
    DM_REMAP_SEQUENCE: winner.header.sequence,
    DM_REMAP_VALID_COPIES: probe.validCopies,
  };
  if (values.export === true) {
    for (const [key, value] of Object.entries(properties ?? {})) {
      output.out(`${key}=${udevValue(value)}`);
    }
    return 0;
  }
  output.out(JSON.stringify({ path, error: probe.error, ...properties }, null, 2));
  return 0;
}

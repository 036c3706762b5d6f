/**
 * `dm-remap check <spare> [--json] [--repair]`: the metadata of one spare,
 * copy by copy, like `fsck -n` (read-only unless `--repair`).
 *
 * Exit 0 when all five copies are valid and current, 1 when some are not
 * (repaired with `--repair`), 4 when none is valid. It also tells whether
 * the setup was stopped cleanly, is being served, or was left by a server
 * that crashed (see `serving_marker.ts`); that alone is not a problem.
 * With `--salvage` it rebuilds lost copies from the remap logs instead
 * (`salvage.ts`).
 *
 * @module
 */

import { UsageError } from "../../errors.ts";
import { SpareStore } from "../../metadata/spare_store.ts";
import { EXIT_OK, EXIT_PROBLEM_FOUND } from "../exit_codes.ts";
import { closeAll, openPath } from "../../assembly/open_path.ts";
import type { CommandInput } from "../command.ts";
import { onePositional } from "../options.ts";
import { salvageCommand } from "./salvage.ts";

/** Options that only `check --salvage` takes. */
const SALVAGE_ONLY = ["yes", "main", "name", "block-size", "scan-dir", "backup-dir"];
import { describeShutdownState, shutdownStateOf } from "../../service/serving_marker.ts";

/** Checks one spare and prints the report. */
export async function checkCommand(input: CommandInput): Promise<number> {
  if (input.values.salvage === true) return await salvageCommand(input);
  const { values, positionals, output } = input;
  const salvageOnly = SALVAGE_ONLY.filter((option) => values[option] !== undefined);
  if (salvageOnly.length > 0) {
    throw new UsageError(`--${salvageOnly.join(", --")} go with --salvage`);
  }
  const path = onePositional(positionals, "spare device", true)!;
  const repair = values.repair === true;
  const { device } = await openPath(path, { readOnly: !repair });
  try {
    const { store, report } = await SpareStore.open(device, { repair });
    const problems = report.copies.filter((copy) => copy.stale).length;
    const { setup, spareIndex, table, layout } = store.payload;
    const shutdown = shutdownStateOf(setup.serving);
    if (values.json) {
      output.out(JSON.stringify({
        device: path,
        setup: {
          uuid: setup.uuid,
          name: setup.name,
          generation: setup.generation,
          state: setup.state,
          clean: shutdown === "clean",
          shutdown,
          serving: setup.serving ?? null,
        },
        spareIndex,
        sequence: store.sequence,
        copies: report.copies,
        validCopies: report.validCopies,
        table: { ...table, slotsUsed: store.slotsUsed, slotCount: layout.slotCount },
        log: { sectorsUsed: report.logSectorsUsed, stopReason: report.logStopReason },
        problems,
        repaired: report.copies.filter((copy) => copy.repaired).length,
      }));
    } else {
      output.out(`${path}: spare ${spareIndex} of setup "${setup.name}" (${setup.uuid})`);
      output.out(
        `  state: ${describeShutdownState(setup.serving)}` +
          (setup.state === "degraded" ? "; DEGRADED: a failed block could not be remapped" : ""),
      );
      for (const copy of report.copies) {
        const state = copy.valid ? `valid, sequence ${copy.sequence}` : `INVALID: ${copy.reason}`;
        const notes = [
          copy.winner ? "winner" : "",
          copy.stale && copy.valid ? "stale" : "",
          copy.repaired ? "repaired" : "",
        ]
          .filter(Boolean).join(", ");
        output.out(
          `  copy ${copy.copyIndex} at sector ${String(copy.sector).padEnd(5)} ${state}${
            notes ? ` (${notes})` : ""
          }`,
        );
      }
      output.out(`  ${report.validCopies}/5 copies valid`);
      output.out(
        `  table: checkpoint ${
          "AB"[table.checkpointRegion]
        } with ${table.checkpointEntries} entries, ` +
          `log ${report.logSectorsUsed} sectors (${report.logStopReason}); ${store.slotsUsed}/${layout.slotCount} slots used`,
      );
      if (problems > 0 && !repair) {
        output.out(`  ${problems} copies need repair: run with --repair`);
      }
    }
    return problems > 0 ? EXIT_PROBLEM_FOUND : EXIT_OK;
  } finally {
    await closeAll([device]);
  }
}

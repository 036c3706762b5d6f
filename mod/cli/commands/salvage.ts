/**
 * `dm-remap check --salvage <spare>... [--repair --main <dev> --name <name>
 * [--yes]] [--block-size N] [--scan-dir <dir>...] [--backup-dir <dir>] [--json]`:
 * when every metadata copy of a setup's spares is lost and no backup exists,
 * proves each spare's mapping list from its own remap log and checkpoints.
 *
 * Read-only unless `--repair`, which shows what it will write, asks (or takes
 * `--yes`) and rebuilds the copies. Exit 0 when no given spare has lost its
 * copies, 1 when some have (rebuilt with `--repair`, as `check --repair`
 * reports), 2 for usage (including no terminal and no `--yes`), 4 when refused.
 *
 * @module
 */

import { listCandidates } from "../../assembly/discover.ts";
import { describeRebuild, type RebuildPlan, writeRebuild } from "../../assembly/rebuild.ts";
import type { NamedDevice } from "../../assembly/restore.ts";
import {
  findOtherSpares,
  planSalvage,
  type Salvage,
  salvageSpares,
} from "../../assembly/salvage.ts";
import { checkSetupName } from "../../assembly/create.ts";
import { BLOCK_BYTES_MAX, BLOCK_BYTES_MIN } from "../../constants.ts";
import type { Device } from "../../device/device.ts";
import { openFileDevice } from "../../device/file_device.ts";
import { UsageError } from "../../errors.ts";
import { backupAfter } from "../backup_after.ts";
import { confirmWrite } from "../confirm.ts";
import { closeAll, openPath } from "../../assembly/open_path.ts";
import { EXIT_OK, EXIT_PROBLEM_FOUND } from "../exit_codes.ts";
import type { CommandInput } from "../command.ts";
import { integerOption, listOption, STATE_DIR, stringOption } from "../options.ts";

/** Salvages the given spares: reports what their logs prove and, with --repair, rebuilds them. */
export async function salvageCommand(input: CommandInput): Promise<number> {
  const { values, positionals, output } = input;
  if (positionals.length === 0) {
    throw new UsageError("Name the spares to salvage: dm-remap check --salvage <spare>...");
  }
  const repair = values.repair === true;
  const name = stringOption(values.name);
  const mainPath = stringOption(values.main);
  if (repair && (name === undefined || mainPath === undefined)) {
    throw new UsageError(
      "The setup's name and main disk were in the lost copies: give them with " +
        "--name <name> --main <dev> to rebuild them",
    );
  }
  if (name !== undefined) checkSetupName(name);
  const blockBytes = integerOption("block-size", stringOption(values["block-size"]), {
    min: BLOCK_BYTES_MIN,
    max: BLOCK_BYTES_MAX,
  });
  const scanDirs = listOption(values["scan-dir"]);
  const opened: Device[] = [];
  try {
    const devices: NamedDevice[] = [];
    for (const path of positionals) {
      const { device, identity } = await openPath(path, { readOnly: !repair });
      opened.push(device);
      devices.push({ device, path: identity.path });
    }
    const salvage = await salvageSpares(devices, { blockBytes });
    const elsewhere = await findOtherSpares(
      salvage,
      await listCandidates(scanDirs.length > 0 ? scanDirs : [STATE_DIR]),
      (path) => openFileDevice(path, { readOnly: true }),
    );
    const lost = salvage.spares.some((spare) => spare.validCopies === 0);
    if (values.json !== true) reportSalvage(salvage, elsewhere, output.out);
    let written = false;
    if (repair) {
      const main = await openPath(mainPath!, { readOnly: true });
      opened.push(main.device);
      const plan = await planSalvage(salvage, { name: name!, main: main.identity, elsewhere });
      written = await writeSalvage(plan, input);
      if (!written) return EXIT_PROBLEM_FOUND;
    } else if (values.json !== true) {
      output.out(
        `Nothing was written. To rebuild the copies: dm-remap check --salvage ` +
          `${positionals.join(" ")} --repair --main <dev> --name <name>`,
      );
    }
    if (values.json === true) output.out(JSON.stringify(salvageJson(salvage, elsewhere, written)));
    return lost ? EXIT_PROBLEM_FOUND : EXIT_OK;
  } finally {
    await closeAll(opened);
  }
}

/**
 * Shows the plan, asks, and writes it with the backup after it.
 *
 * @returns Whether it was written (false when the answer was no).
 */
async function writeSalvage(
  plan: RebuildPlan,
  { values, output }: CommandInput,
): Promise<boolean> {
  const text = values.json !== true;
  if (text) { for (const line of describeRebuild(plan)) output.out(line); }
  if (!confirmWrite("Write these copies?", values.yes === true)) {
    output.out("Nothing was written.");
    return false;
  }
  const stores = await writeRebuild(plan);
  const backup = await backupAfter("salvage", stores, {
    directory: stringOption(values["backup-dir"]),
    output,
  });
  if (text) {
    output.out(`Rebuilt ${stores.length} spares of setup "${plan.setup.name}".`);
    if (backup) output.out(`Backup: ${backup}`);
    output.out(`Serve it with: dm-remap serve ${plan.setup.name}`);
  }
  return true;
}

function reportSalvage(
  salvage: Salvage,
  elsewhere: readonly { spareIndex: number; path: string }[],
  out: (line: string) => void,
): void {
  out(`Setup ${salvage.setupUuid}, block size ${salvage.blockBytes}, as the remap logs say:`);
  for (const spare of salvage.spares) {
    if (!spare.head || !spare.proof) {
      out(
        `  ${spare.path}: no remap log record: not a spare, or a spare that never held a remap`,
      );
      continue;
    }
    const { proof } = spare;
    out(
      `  ${spare.path}: spare ${spare.head.spareIndex}, ${spare.validCopies}/5 copies valid; ` +
        `${proof.slotBlocks.length} mappings proven: ${proof.checkpointEntries} from a ` +
        `checkpoint (${proof.checkpointProof}), ${proof.logEntries} from ${proof.logSectors} ` +
        `log sectors (log ends: ${proof.logStopReason})`,
    );
  }
  for (const other of elsewhere) {
    out(`  spare ${other.spareIndex} of this setup is also on "${other.path}", not given`);
  }
}

function salvageJson(
  salvage: Salvage,
  elsewhere: readonly { spareIndex: number; path: string }[],
  written: boolean,
) {
  return {
    setupUuid: salvage.setupUuid,
    blockBytes: salvage.blockBytes,
    spares: salvage.spares.map((spare) => ({
      device: spare.path,
      validCopies: spare.validCopies,
      spareIndex: spare.head?.spareIndex ?? null,
      mappings: spare.proof?.slotBlocks.length ?? 0,
      fromCheckpoint: spare.proof?.checkpointEntries ?? 0,
      checkpointProof: spare.proof?.checkpointProof ?? "none",
      fromLog: spare.proof?.logEntries ?? 0,
      logSectors: spare.proof?.logSectors ?? 0,
      logStopReason: spare.proof?.logStopReason ?? "no log sector",
      slotBlocks: spare.proof?.slotBlocks ?? [],
    })),
    elsewhere,
    written,
  };
}

/**
 * `dm-remap create <name> --main <dev> --spare <dev>... [--block-size N] [--force]
 * [--backup-dir <dir>]`: formats the spares, then writes the setup's first backup.
 *
 * @module
 */

import { checkSetupName, createSetup } from "../../assembly/create.ts";
import { BLOCK_BYTES_DEFAULT, BLOCK_BYTES_MAX, BLOCK_BYTES_MIN } from "../../constants.ts";
import { UsageError } from "../../errors.ts";
import type { Device } from "../../device/device.ts";
import { backupAfter } from "../backup_after.ts";
import { closeAll, openPath } from "../devices.ts";
import type { CommandInput } from "../mod.ts";
import { integerOption, listOption, onePositional, stringOption } from "../options.ts";

/** Creates a setup and prints what was written. */
export async function createCommand(
  { values, positionals, output }: CommandInput,
): Promise<number> {
  const name = onePositional(positionals, "setup name", true)!;
  checkSetupName(name);
  const mainPath = stringOption(values.main);
  if (!mainPath) throw new UsageError("Name the main disk with --main <dev>");
  const sparePaths = listOption(values.spare);
  const blockBytes = integerOption("block-size", stringOption(values["block-size"]), {
    min: BLOCK_BYTES_MIN,
    max: BLOCK_BYTES_MAX,
  }) ?? BLOCK_BYTES_DEFAULT;
  const opened: Device[] = [];
  try {
    const main = await openPath(mainPath, { readOnly: true });
    opened.push(main.device);
    const spares = [];
    for (const path of sparePaths) {
      const spare = await openPath(path, { readOnly: false });
      opened.push(spare.device);
      spares.push({ device: spare.device, path });
    }
    const stores = await createSetup({
      name,
      main,
      spares,
      blockBytes,
      force: values.force === true,
    });
    const setup = stores[0]!.payload.setup;
    const backup = await backupAfter("create", stores, {
      directory: stringOption(values["backup-dir"]),
      output,
    });
    if (values.json) {
      output.out(JSON.stringify({
        uuid: setup.uuid,
        name,
        blockBytes,
        main: mainPath,
        spares: stores.map((store) => ({
          path: store.device.name,
          slotCount: store.payload.layout.slotCount,
        })),
        backup,
      }));
    } else {
      output.out(`Created setup "${name}" (${setup.uuid}), block size ${blockBytes}`);
      output.out(`  main   ${mainPath} (${main.device.sizeBytes} bytes, not written)`);
      for (const store of stores) {
        output.out(
          `  spare  ${store.device.name}: ${store.payload.layout.slotCount} slots, 5 metadata copies`,
        );
      }
      if (backup) output.out(`  backup ${backup}`);
      output.out(
        `Serve it with: dm-remap serve ${name}  (or --spare ${sparePaths.join(" --spare ")})`,
      );
    }
    return 0;
  } finally {
    await closeAll(opened);
  }
}

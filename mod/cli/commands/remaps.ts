/**
 * `dm-remap remaps (<name> | --spare <dev>...) [--json]`: the remap table as
 * the spares record it, read without writing.
 *
 * @module
 */

import { mergeViews } from "../../metadata/setup_tables.ts";
import { VACATED } from "../../metadata/checkpoint.ts";
import { openSpares } from "../../assembly/assemble.ts";
import type { Device } from "../../device/device.ts";
import { closeAll, openPath } from "../../assembly/open_path.ts";
import { resolveSparePaths } from "../find_setup.ts";
import type { CommandInput } from "../command.ts";
import { listOption, onePositional } from "../options.ts";

/** Prints every remap: block, byte offset on the main disk, spare and slot. */
export async function remapsCommand(
  { values, positionals, output }: CommandInput,
): Promise<number> {
  const name = onePositional(positionals, "setup name", false);
  const { sparePaths } = await resolveSparePaths(
    name,
    listOption(values.spare),
    listOption(values["scan-dir"]),
  );
  const devices: Device[] = [];
  try {
    for (const path of sparePaths) devices.push((await openPath(path, { readOnly: true })).device);
    // Every spare records every spare's slots (format 2): the spares given are enough.
    const opened = await openSpares(devices, { repair: false, allowMissing: true });
    const blockBytes = opened.description.setup.blockBytes;
    const tables = mergeViews(opened.stores, opened.description.spares.length);
    const remaps = tables.flatMap((table, spareIndex) =>
      table.flatMap((blockIndex, slotIndex) =>
        blockIndex === VACATED ? [] : [{ blockIndex, spareIndex, slotIndex }]
      )
    ).sort((a, b) => a.blockIndex - b.blockIndex);
    if (values.json) {
      output.out(JSON.stringify({ setup: opened.description.setup.name, blockBytes, remaps }));
      return 0;
    }
    output.out(
      `${remaps.length} remapped blocks in setup "${opened.description.setup.name}" (block size ${blockBytes})`,
    );
    for (const remap of remaps) {
      output.out(
        `  block ${remap.blockIndex} (byte ${
          remap.blockIndex * blockBytes
        }) -> spare ${remap.spareIndex} slot ${remap.slotIndex}`,
      );
    }
    return 0;
  } finally {
    await closeAll(devices);
  }
}

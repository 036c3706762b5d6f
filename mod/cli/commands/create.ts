/**
 * `dm-remap create <name> --main <dev> --spare <dev>... [--block-size N] [--force]
 * [--backup-dir <dir>]`: formats the spares, then writes the setup's first backup.
 *
 * Before anything is opened for writing, every path is identified by what it
 * is (device and inode, device number, the storage below it), so the main
 * disk under another name, a loop device over it or a partition of it is
 * refused as a spare; and the name is refused when another setup has it.
 *
 * @module
 */

import { checkDistinctDisks } from "../../assembly/distinct_disks.ts";
import { checkSetupName, createSetup } from "../../assembly/create.ts";
import { describeIdentity } from "../../assembly/identity.ts";
import { BLOCK_BYTES_DEFAULT, BLOCK_BYTES_MAX, BLOCK_BYTES_MIN } from "../../constants.ts";
import { UsageError } from "../../errors.ts";
import type { Device } from "../../device/device.ts";
import { backupAfter } from "../backup_after.ts";
import { storageKeyOf } from "../../device/storage_stack.ts";
import { closeAll, openPath, type ProbedPath, probePath } from "../../assembly/open_path.ts";
import { findSetupsNamed } from "../find_setup.ts";
import type { CommandInput } from "../command.ts";
import { integerOption, listOption, onePositional, stringOption } from "../options.ts";
import { writeRegistryEntry } from "../setup_registry.ts";

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
  const mainProbe = await probePath(mainPath);
  const spareProbes: ProbedPath[] = [];
  for (const path of sparePaths) spareProbes.push(await probePath(path));
  checkDistinctDisks(`create setup "${name}"`, [
    { role: "main", path: mainPath, stack: mainProbe.stack },
    ...spareProbes.map((probe) => ({
      role: "spare" as const,
      path: probe.given,
      stack: probe.stack,
    })),
  ]);
  await checkNameFree(name, spareProbes);
  const opened: Device[] = [];
  try {
    const main = await openPath(mainPath, { readOnly: true });
    opened.push(main.device);
    const spares: { device: Device; path: string }[] = [];
    for (const probe of spareProbes) {
      const spare = await openPath(probe.given, { readOnly: false });
      opened.push(spare.device);
      spares.push({ device: spare.device, path: spare.identity.path });
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
    const registered = await writeRegistryEntry({
      uuid: setup.uuid,
      name,
      createdMs: setup.createdMs,
      main: main.identity.path,
      spares: spares.map((spare) => spare.path),
    });
    const identity = describeIdentity(main.identity);
    if (values.json) {
      output.out(JSON.stringify({
        uuid: setup.uuid,
        name,
        blockBytes,
        main: main.identity.path,
        mainIdentity: { ...identity, recorded: stores[0]!.payload.main },
        spares: stores.map((store, index) => ({
          path: spares[index]!.path,
          slotCount: store.payload.layout.slotCount,
        })),
        backup,
        registry: registered,
      }));
      return 0;
    }
    output.out(`Created setup "${name}" (${setup.uuid}), block size ${blockBytes}`);
    output.out(`  main   ${main.identity.path} (${main.device.sizeBytes} bytes, not written)`);
    output.out(`         identity: ${identity.description}`);
    for (const [index, store] of stores.entries()) {
      output.out(
        `  spare  ${
          spares[index]!.path
        }: ${store.payload.layout.slotCount} slots, 5 metadata copies`,
      );
    }
    if (backup) output.out(`  backup ${backup}`);
    if (identity.warning) output.err(`dm-remap create: note: ${identity.warning}`);
    output.out(
      `Serve it with: dm-remap serve ${name}   (registered in ${registered}; or: dm-remap serve ` +
        spares.map((spare) => `--spare ${spare.path}`).join(" ") + `)`,
    );
    return 0;
  } finally {
    await closeAll(opened);
  }
}

/**
 * Refuses a name that another setup still has: one whose spares are not all
 * among the disks being formatted now (those are overwritten, with --force).
 *
 * @throws {UsageError} Naming the other setup and its spares.
 */
async function checkNameFree(name: string, spares: readonly ProbedPath[]): Promise<void> {
  const ours = new Set(spares.map((probe) => probe.stack.top.key));
  for (const setup of await findSetupsNamed(name, [])) {
    const keys = await Promise.all(setup.spares.map((spare) => storageKeyOf(spare.path)));
    if (keys.every((key) => key !== undefined && ours.has(key))) continue;
    throw new UsageError(
      `Cannot create setup "${name}": the name is taken by setup ${setup.uuid}, whose spares are ` +
        `${setup.spares.map((spare) => `"${spare.path}"`).join(", ")}. Choose another name, ` +
        `or first remove that setup by wiping its spares`,
    );
  }
}

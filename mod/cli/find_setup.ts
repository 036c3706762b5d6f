/**
 * Finding the setup a command names: in the registry of setups this machine
 * created, then on its block devices and in the scan directories.
 *
 * @module
 */

import type { Device } from "../device/device.ts";
import { openFileDevice } from "../device/file_device.ts";
import { discoverSetups, type FoundSetup, listCandidates } from "../assembly/discover.ts";
import { SetupMismatchError, UsageError } from "../errors.ts";
import { STATE_DIR } from "./options.ts";
import { readRegistryEntry } from "./setup_registry.ts";

/** Whether every spare of a found setup was found. */
function isComplete(setup: FoundSetup): boolean {
  const indexes = new Set(setup.spares.map((spare) => spare.spareIndex));
  return indexes.size === setup.spareCount;
}

function probeReadOnly(path: string): Promise<Device> {
  return openFileDevice(path, { readOnly: true });
}

/**
 * The setups called `name`: first where the registry says it was created,
 * then on this machine's block devices and in the scan directories.
 *
 * @returns Every setup of that name found, the registered one first.
 */
export async function findSetupsNamed(name: string, scanDirs: string[]): Promise<FoundSetup[]> {
  const entry = await readRegistryEntry(name);
  if (entry) {
    const registered = (await discoverSetups(entry.spares, probeReadOnly))
      .find((setup) => setup.uuid === entry.uuid && setup.name === name);
    if (registered && isComplete(registered)) return [registered];
  }
  const directories = scanDirs.length > 0 ? scanDirs : [STATE_DIR];
  const candidates = [...entry?.spares ?? [], ...await listCandidates(directories)];
  const found = (await discoverSetups(candidates, probeReadOnly))
    .filter((setup) => setup.name === name);
  return found.sort((a, b) => Number(b.uuid === entry?.uuid) - Number(a.uuid === entry?.uuid));
}

/**
 * Finds the spares of the setup called `name`.
 *
 * @throws {UsageError} When no setup has that name.
 * @throws {SetupMismatchError} When several setups have it and none is registered.
 */
export async function findSetupByName(name: string, scanDirs: string[]): Promise<FoundSetup> {
  const found = await findSetupsNamed(name, scanDirs);
  const entry = await readRegistryEntry(name);
  const registered = found.find((setup) => setup.uuid === entry?.uuid);
  if (registered) return registered;
  if (found.length === 0) {
    const directories = scanDirs.length > 0 ? scanDirs : [STATE_DIR];
    throw new UsageError(
      `No setup named "${name}" in ${STATE_DIR}/setups, on this machine's block devices or in ` +
        `${directories.join(", ")}: check the name, or name its spares with --spare`,
    );
  }
  if (found.length > 1) {
    throw new SetupMismatchError(
      name,
      `${found.length} setups have this name (${
        found.map((setup) => setup.uuid).join(", ")
      }); name the spares with --spare`,
    );
  }
  return found[0]!;
}

/** Spare paths from --spare, or from discovery by name. */
export async function resolveSparePaths(
  name: string | undefined,
  sparePaths: string[],
  scanDirs: string[],
): Promise<{ sparePaths: string[]; mainPathHint?: string }> {
  if (sparePaths.length > 0) return { sparePaths };
  if (name === undefined) throw new UsageError("Name the setup, or its spares with --spare");
  const setup = await findSetupByName(name, scanDirs);
  const bySpareIndex = new Map(setup.spares.map((spare) => [spare.spareIndex, spare.path]));
  return {
    sparePaths: [...bySpareIndex.entries()].sort(([a], [b]) => a - b).map(([, path]) => path),
    mainPathHint: setup.mainPath,
  };
}

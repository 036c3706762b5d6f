/**
 * The setups created on this machine, by name: where their spares and main
 * disk were when `create` made them, as `mdadm.conf` lists arrays. `serve
 * NAME` looks there first, so a setup is found from any directory (systemd
 * runs in `/`) without scanning every disk; `create` uses it to refuse a
 * name that another setup still has.
 *
 * The registry is a hint, never the truth: the spares' own metadata decides
 * which setup a disk belongs to, and a stale entry (its spares gone or
 * reused) is ignored and replaced.
 *
 * One JSON file per setup: `<state dir>/setups/<name>.json`.
 *
 * @module
 */

import { STATE_DIR } from "./options.ts";

/** Where one setup was created. */
export interface RegistryEntry {
  uuid: string;
  name: string;
  createdMs: number;
  /** Canonical absolute paths at create time. */
  main: string;
  spares: string[];
}

function entryPath(name: string): string {
  return `${STATE_DIR}/setups/${name}.json`;
}

/** The entry for `name`, or undefined when there is none or it cannot be read. */
export async function readRegistryEntry(name: string): Promise<RegistryEntry | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(entryPath(name));
  } catch {
    return undefined;
  }
  try {
    const entry = JSON.parse(text) as Partial<RegistryEntry>;
    const valid = typeof entry.uuid === "string" && entry.name === name &&
      typeof entry.main === "string" && Array.isArray(entry.spares) &&
      entry.spares.every((path) => typeof path === "string");
    return valid ? entry as RegistryEntry : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Records where a setup was created, replacing the entry of its name.
 * Written to a temporary file and renamed, so a crash leaves the old entry or the new one.
 */
export async function writeRegistryEntry(entry: RegistryEntry): Promise<string> {
  const path = entryPath(entry.name);
  await Deno.mkdir(`${STATE_DIR}/setups`, { recursive: true });
  const temporary = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(temporary, JSON.stringify(entry, null, 2) + "\n");
  await Deno.rename(temporary, path);
  return path;
}

/** Every readable entry of the registry (none when it does not exist). */
export async function listRegistryEntries(): Promise<RegistryEntry[]> {
  const entries: RegistryEntry[] = [];
  try {
    for await (const file of Deno.readDir(`${STATE_DIR}/setups`)) {
      if (!file.isFile || !file.name.endsWith(".json")) continue;
      const entry = await readRegistryEntry(file.name.slice(0, -".json".length));
      if (entry !== undefined) entries.push(entry);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return entries;
}

/**
 * Setups on sparse image files for the discovery and assembly tests, made
 * with the product's own `createSetup`.
 *
 * @module
 */

import { createSetup } from "../../mod/assembly/create.ts";
import { closeAll, openPath } from "../../mod/assembly/open_path.ts";
import { SpareStore } from "../../mod/metadata/spare_store.ts";
import { openFileDevice } from "../../mod/device/file_device.ts";

/** Size of a test main disk. */
export const MAIN_BYTES = 64 * 1024 * 1024;
/** Size of a test spare: room for its copies, log and a few slots. */
export const SPARE_BYTES = 32 * 1024 * 1024;

/** A setup made on image files. */
export interface ImageSetup {
  uuid: string;
  name: string;
  mainPath: string;
  sparePaths: string[];
}

/** Makes a sparse file of `sizeBytes`. */
export async function makeImage(path: string, sizeBytes: number): Promise<void> {
  const file = await Deno.open(path, { create: true, write: true });
  await file.truncate(sizeBytes);
  file.close();
}

/**
 * Creates setup `name` with a main disk `<prefix>main.img` and `spareCount`
 * spares `<prefix>s<i>.img` in `directory` (the main disk in `mainDirectory`
 * when given).
 */
export async function makeImageSetup(
  directory: string,
  options: {
    name: string;
    prefix?: string;
    spareCount?: number;
    mainDirectory?: string;
    /** @default MAIN_BYTES */
    mainBytes?: number;
  },
): Promise<ImageSetup> {
  const prefix = options.prefix ?? options.name + "-";
  const mainPath = `${options.mainDirectory ?? directory}/${prefix}main.img`;
  await makeImage(mainPath, options.mainBytes ?? MAIN_BYTES);
  const sparePaths = [];
  for (let index = 0; index < (options.spareCount ?? 2); index++) {
    sparePaths.push(`${directory}/${prefix}s${index}.img`);
    await makeImage(sparePaths.at(-1)!, SPARE_BYTES);
  }
  const main = await openPath(mainPath, { readOnly: false });
  const spares = [];
  for (const path of sparePaths) {
    spares.push({ device: (await openPath(path, { readOnly: false })).device, path });
  }
  try {
    const stores = await createSetup({ name: options.name, main, spares, blockBytes: 4096 });
    return { uuid: stores[0]!.payload.setup.uuid, name: options.name, mainPath, sparePaths };
  } finally {
    await closeAll([main.device, ...spares.map((spare) => spare.device)]);
  }
}

/** Bumps the setup generation on one spare only, as a change made while another was absent. */
export async function bumpGeneration(sparePath: string): Promise<void> {
  const device = await openFileDevice(sparePath, {});
  try {
    const { store } = await SpareStore.open(device, { repair: false });
    await store.writeMetadata((payload) => {
      payload.setup.generation += 1;
    });
  } finally {
    await device.close();
  }
}

/** SHA-256 (hex) of every file in `directory`, by name. */
export async function hashFiles(directory: string): Promise<Record<string, string>> {
  const hashes: Record<string, string> = {};
  for await (const entry of Deno.readDir(directory)) {
    if (!entry.isFile) continue;
    const bytes = await Deno.readFile(`${directory}/${entry.name}`);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    hashes[entry.name] = Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
  }
  return hashes;
}

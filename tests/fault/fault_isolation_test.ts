/**
 * The fault layer stays a filter the product never knows about.
 *
 * Goal: no product module imports `mod/fault/` except the demo command,
 * which builds its fault layer itself; what the data path must leave to a
 * device comes through `Device.directAccess`. Method: read every module under
 * `mod/` and list the ones outside `mod/fault/` whose imports name it.
 *
 * @module
 */

import { deepStrictEqual as assertEquals } from "node:assert/strict";

const MOD = new URL("../../mod/", import.meta.url);
/** Modules that may build a fault layer: the demo shows one at work. */
const ALLOWED = ["cli/commands/demo.ts"];

/** Paths of the TypeScript modules under `mod/`, relative to it. */
async function modulesUnder(directory: URL, prefix = ""): Promise<string[]> {
  const paths: string[] = [];
  for await (const entry of Deno.readDir(directory)) {
    const path = `${prefix}${entry.name}`;
    if (entry.isDirectory) {
      paths.push(...await modulesUnder(new URL(`${entry.name}/`, directory), `${path}/`));
    } else if (entry.name.endsWith(".ts")) paths.push(path);
  }
  return paths;
}

Deno.test("no product module outside mod/fault/ imports it, except the demo command", async () => {
  const importing = [];
  for (const path of await modulesUnder(MOD)) {
    if (path.startsWith("fault/") || ALLOWED.includes(path)) continue;
    const source = await Deno.readTextFile(new URL(path, MOD));
    if (/from\s+"[./]*\/fault\//.test(source)) importing.push(path);
  }
  assertEquals(importing, []);
});

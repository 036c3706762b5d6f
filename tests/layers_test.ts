/**
 * The import structure of `mod/`, checked the way std's
 * `_tools/check_circular_package_dependencies.ts` checks std's packages.
 *
 * Goal: the layers of docs/ARCHITECTURE.md stay true as code lands. Method:
 * read every static import of every file under `mod/`, then check three
 * rules: no file imports itself through a cycle; a package imports only
 * packages of a lower layer; a `_`-prefixed file is imported only from its
 * own folder (or the folders below it). The product never imports the
 * fault-injection layer. Imports of files outside `mod/` (deno.json) are not
 * part of the layers.
 */

import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";

const ROOT = normalize(join(dirname(new URL(import.meta.url).pathname), ".."));

/**
 * Each package with its layer: a package imports only lower layers. Files
 * directly in `mod/` are the shared helpers (constants, assertions, errors).
 */
const LAYERS: Record<string, number> = {
  "mod": 0,
  "mod/sys": 1,
  "mod/device": 2,
  "mod/fault": 3,
  "mod/metadata": 3,
  "mod/remap": 4,
  "mod/events": 5,
  "mod/health": 5,
  "mod/datapath": 5,
  "mod/assembly": 5,
  "mod/log": 1,
  "mod/export/nbd": 6,
  "mod/alerts": 6,
  "mod/policy": 6,
  "mod/export/ublk": 6,
  "mod/scan": 6,
  "mod/api": 7,
  "mod/service": 8,
  "mod/config": 9,
  "mod/cli": 10,
};

/** Packages the product may not import: they exist for tests and the demo. */
const TEST_ONLY = "mod/fault";
/** The one product file that builds a fault layer: the demo shows remapping on a failing disk. */
const FAULT_USERS = new Set(["mod/cli/commands/demo.ts"]);

const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*"(\.[^"]+)"|(?:^|\n)\s*import\s*"(\.[^"]+)"/g;

async function sourceFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(join(ROOT, dir))) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) files.push(...await sourceFiles(path));
    else if (entry.name.endsWith(".ts")) files.push(path);
  }
  return files;
}

async function importGraph(): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  for (const file of await sourceFiles("mod")) {
    const text = await Deno.readTextFile(join(ROOT, file));
    const targets = [...text.matchAll(IMPORT)]
      .map((match) => relative(ROOT, join(ROOT, dirname(file), match[1] ?? match[2]!)))
      .filter((target) => target.startsWith("mod/"));
    graph.set(file, targets);
  }
  return graph;
}

/** The package a file belongs to: the longest folder named in {@link LAYERS}. */
function packageOf(file: string): string {
  for (let dir = dirname(file); dir !== "."; dir = dirname(dir)) {
    if (dir in LAYERS) return dir;
  }
  throw new Error(`"${file}" is in no package of LAYERS: add its folder to tests/layers_test.ts`);
}

/** Every import cycle, each as the files around it (Tarjan's strongly connected components). */
function cyclesOf(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const lowest = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (file: string): void => {
    index.set(file, index.size);
    lowest.set(file, index.get(file)!);
    stack.push(file);
    onStack.add(file);
    for (const target of graph.get(file) ?? []) {
      if (!index.has(target)) {
        visit(target);
        lowest.set(file, Math.min(lowest.get(file)!, lowest.get(target)!));
      } else if (onStack.has(target)) {
        lowest.set(file, Math.min(lowest.get(file)!, index.get(target)!));
      }
    }
    if (lowest.get(file) !== index.get(file)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== file);
    if (component.length > 1 || graph.get(file)?.includes(file)) cycles.push(component.sort());
  };
  for (const file of graph.keys()) if (!index.has(file)) visit(file);
  return cycles;
}

Deno.test("mod/ has no import cycle", async () => {
  assertEquals(cyclesOf(await importGraph()), []);
});

Deno.test("a package of mod/ imports only packages of lower layers", async () => {
  const wrongWay: string[] = [];
  for (const [file, targets] of await importGraph()) {
    const from = packageOf(file);
    for (const target of targets) {
      const to = packageOf(target);
      if (to === from) continue;
      if (LAYERS[to]! >= LAYERS[from]!) wrongWay.push(`${file} -> ${target}`);
    }
  }
  assertEquals(wrongWay, []);
});

Deno.test("a _file of mod/ is imported only from its own folder and below", async () => {
  const leaks: string[] = [];
  for (const [file, targets] of await importGraph()) {
    for (const target of targets) {
      const name = target.split("/").at(-1)!;
      if (name.startsWith("_") && !file.startsWith(`${dirname(target)}/`)) {
        leaks.push(`${file} -> ${target}`);
      }
    }
  }
  assertEquals(leaks, []);
});

Deno.test("the product imports the fault layer only to run the demo", async () => {
  const users: string[] = [];
  for (const [file, targets] of await importGraph()) {
    if (packageOf(file) === TEST_ONLY || FAULT_USERS.has(file)) continue;
    for (const target of targets) {
      if (packageOf(target) === TEST_ONLY) users.push(`${file} -> ${target}`);
    }
  }
  assertEquals(users, []);
});

Deno.test("cyclesOf() finds a cycle through three files and none in a chain", () => {
  const cycle = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]]]);
  assertEquals(cyclesOf(cycle), [["a", "b", "c"]]);
  assertEquals(cyclesOf(new Map([["a", ["b"]], ["b", ["c"]], ["c", []]])), []);
});

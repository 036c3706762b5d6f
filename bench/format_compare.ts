/**
 * Format version 2 against the tree before it, side by side in one run
 * (issue 16): remap commit latency (bench/remap_commit_bench.ts) and the
 * 1M-remap open time and memory (bench/make_remaps.ts).
 *
 * Method: `--baseline DIR` is a checkout of the commit before the format
 * change (e.g. `git archive 54e7a6b | tar -x -C DIR`, with node_modules
 * linked). The two bench scripts are copied into it, so both trees run the
 * same measurement code over their own `mod/`. Each repetition runs every
 * case on both trees back to back, the order swapped every other repetition;
 * the summary gives the median of each figure and the ratio of medians
 * (version 2 ÷ version 1). Commit latency runs on files in `--dir` (a real
 * filesystem: flushes cost what they cost); the open runs in /dev/shm.
 * Writes bench/results/<time>-format2.json and prints a Markdown table.
 *
 * Usage: deno run -A bench/format_compare.ts --baseline DIR [--current DIR] [--reps 5] [--dir /tmp]
 *          [--writes 1000] [--remaps 1000000] [--only commit|open] [--control DIR] [--before DIR]
 *
 * `--only` runs one kind of case, or one case by its name (more
 * repetitions of the noisy commit p99 in the same time). Each summary row also lists the ratio of every
 * repetition (v2 ÷ v1 of the pair run back to back), sorted, so the spread
 * shows beside the ratio of medians.
 *
 * `--control DIR` is a second copy of the baseline, run as a third tree
 * ("v1b"): its ratio to the baseline (an A/A comparison) shows how far the
 * machine alone moves a figure in this run. `--before DIR` is a format 2
 * tree before a change to it ("v2pre"), to see what the change did. Each
 * repetition runs the trees in a rotated order, so none is always first.
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    baseline: { type: "string" },
    current: { type: "string" },
    reps: { type: "string", default: "5" },
    dir: { type: "string", default: "/tmp" },
    writes: { type: "string", default: "1000" },
    remaps: { type: "string", default: "1000000" },
    only: { type: "string" },
    control: { type: "string" },
    before: { type: "string" },
  },
});
const ROOT = new URL("..", import.meta.url).pathname;
const BASELINE = values.baseline!;
// A snapshot of the tree under test (e.g. `git archive HEAD`), so edits during the run change nothing.
const CURRENT = values.current ?? ROOT;
const reps = Number(values.reps);
type Tree = "v1" | "v2" | "v1b" | "v2pre";
const trees: [Tree, string][] = [["v1", BASELINE], ["v2", CURRENT]];
if (values.control !== undefined) trees.push(["v1b", values.control]);
if (values.before !== undefined) trees.push(["v2pre", values.before]);
for (const script of ["remap_commit_bench.ts", "make_remaps.ts"]) {
  for (const [, dir] of trees) {
    if (dir !== ROOT) await Deno.copyFile(`${ROOT}bench/${script}`, `${dir}/bench/${script}`);
  }
}

type Figures = Record<string, number>;
interface Case {
  id: string;
  args: (tree: string) => string[];
  figures: string[];
}
const shm = `/dev/shm/dm-remap-format-compare-${Deno.pid}`;
const cases: Case[] = [];
for (const spares of [1, 2]) {
  for (const qd of [1, 32]) {
    cases.push({
      id: `commit spares=${spares} qd=${qd}`,
      args: () => [
        "bench/remap_commit_bench.ts",
        "--dir",
        values.dir!,
        "--spares",
        String(spares),
        "--qd",
        String(qd),
        "--writes",
        values.writes!,
      ],
      figures: ["p50Us", "p99Us", "meanUs"],
    });
  }
  cases.push({
    id: `open ${values.remaps} remaps spares=${spares}`,
    args: () => [
      "bench/make_remaps.ts",
      "--name",
      "cmp",
      "--main",
      `${shm}-main.img`,
      "--spare",
      `${shm}-spare.img`,
      "--remaps",
      values.remaps!,
      "--spares",
      String(spares),
    ],
    figures: ["openSparesMs", "assembleMs", "heapGrowthBytesPerRemap", "rssGrowthBytesPerRemap"],
  });
}

if (values.only !== undefined) {
  const kept = cases.filter((testCase) =>
    testCase.id === values.only || testCase.id.startsWith(`${values.only} `)
  );
  if (kept.length === 0) {
    throw new Error(
      `--only takes commit, open or a case ("commit spares=2 qd=1"), not "${values.only}"`,
    );
  }
  cases.splice(0, cases.length, ...kept);
}

async function runCase(tree: string, testCase: Case): Promise<Figures> {
  const output = await new Deno.Command(`${tree}/node_modules/.bin/deno`, {
    args: ["run", "-A", ...testCase.args(tree)],
    cwd: tree,
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.remove(`${shm}-spare.img`).catch(() => {});
  if (!output.success) {
    throw new Error(`${testCase.id} in ${tree}: ${new TextDecoder().decode(output.stderr)}`);
  }
  const lines = new TextDecoder().decode(output.stdout).trim().split("\n");
  return JSON.parse(lines.at(-1)!);
}

const mainFile = await Deno.open(`${shm}-main.img`, { create: true, write: true });
await mainFile.truncate(16 * 1024 ** 3);
mainFile.close();
const runs: { rep: number; tree: Tree; case: string; figures: Figures }[] = [];
try {
  for (let rep = 0; rep < reps; rep++) {
    for (const testCase of cases) {
      const order = [...trees.slice(rep % trees.length), ...trees.slice(0, rep % trees.length)];
      for (const [tree, dir] of order) {
        const figures = await runCase(dir, testCase);
        runs.push({ rep, tree, case: testCase.id, figures });
        console.error(`rep ${rep} ${tree} ${testCase.id}: ${JSON.stringify(figures)}`);
      }
    }
  }
} finally {
  await Deno.remove(`${shm}-main.img`).catch(() => {});
}

function median(list: number[]): number {
  const sorted = [...list].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
const summary = cases.flatMap((testCase) =>
  testCase.figures.map((figure) => {
    const of = (tree: string) =>
      median(
        runs.filter((run) => run.tree === tree && run.case === testCase.id)
          .map((run) => run.figures[figure]!),
      );
    const v1 = of("v1"), v2 = of("v2");
    /** Each repetition's `tree` ÷ v1, sorted. */
    const paired = (tree: Tree) =>
      Array.from({ length: reps }, (_, rep) => {
        const figureOf = (each: Tree) =>
          runs.find((run) => run.rep === rep && run.tree === each && run.case === testCase.id)!
            .figures[figure]!;
        return Number((figureOf(tree) / figureOf("v1")).toFixed(2));
      }).sort((a, b) => a - b);
    const others = Object.fromEntries(
      trees.slice(2).map((
        [tree],
      ) => [tree, { median: of(tree), ratio: of(tree) / v1, pairedRatios: paired(tree) }]),
    );
    return {
      case: testCase.id,
      figure,
      v1,
      v2,
      ratio: v2 / v1,
      pairedRatios: paired("v2"),
      others,
    };
  })
);
const stamp = new Date().toISOString().slice(0, 16).replace(/[-:]/g, "").replace("T", "T");
const commit = new TextDecoder().decode(
  (await new Deno.Command("git", { args: ["-C", ROOT, "rev-parse", "--short", "HEAD"] }).output())
    .stdout,
).trim();
const path = `${ROOT}bench/results/${stamp}-format2.json`;
await Deno.writeTextFile(
  path,
  JSON.stringify(
    { commit, trees: Object.fromEntries(trees), reps, settings: values, summary, runs },
    null,
    1,
  ) +
    "\n",
);
const extra = trees.slice(2).map(([tree]) => tree);
console.log(
  `| case | figure | version 1 | version 2 | v2 ÷ v1 | per repetition |${
    extra.map((tree) => ` ${tree} ÷ v1 | per repetition |`).join("")
  }\n|---|---|---|---|---|---|${extra.map(() => "---|---|").join("")}`,
);
for (const row of summary) {
  const columns = extra.map((tree) => {
    const other = row.others[tree]!;
    return ` ${other.ratio.toFixed(2)} | ${other.pairedRatios.join(" ")} |`;
  });
  console.log(
    `| ${row.case} | ${row.figure} | ${row.v1.toFixed(1)} | ${row.v2.toFixed(1)} | ${
      row.ratio.toFixed(2)
    } | ${row.pairedRatios.join(" ")} |${columns.join("")}`,
  );
}
console.log(`written to ${path}`);

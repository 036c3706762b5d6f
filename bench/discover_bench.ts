/**
 * Discovery time per device, at 16 and 64 candidates (issue 14: ≤ 100 ms per device).
 *
 * Goal: how long `dm-remap discover` takes per candidate, as a user runs it
 * (a process: runtime start, workers, probes, report) and inside it (the
 * probes alone), over image files or loop devices. Method: setups of one
 * main disk and three spares made with `createSetup` on sparse files in a
 * work directory (/dev/shm by default), so N candidates are N/4 setups; with
 * `--loop` every file is bound to a loop device and the loop devices are the
 * candidates. Each count is run `--reps` times: `dm-remap discover --json
 * <candidates...>` as a process (wall time), whose report gives the
 * discovery's own time and each probe's. The work directory and loop
 * devices are removed at the end, also on error.
 *
 * Usage: deno run -A bench/discover_bench.ts [--counts 16,64] [--reps 5] [--loop]
 *          [--work-dir /dev/shm] [--no-write]
 * Writes bench/results/<date>-discover[-loop].json (or prints it with --no-write).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createSetup } from "../mod/assembly/create.ts";
import { closeAll, openPath } from "../mod/assembly/open_path.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const MIB = 1024 * 1024;
const FILES_PER_SETUP = 4;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    counts: { type: "string", default: "16,64" },
    reps: { type: "string", default: "5" },
    loop: { type: "boolean", default: false },
    "work-dir": { type: "string", default: "/dev/shm" },
    "no-write": { type: "boolean", default: false },
  },
});
const counts = values.counts.split(",").map(Number);
const reps = Number(values.reps);

/** Makes `count / 4` setups in `directory`; returns every file. */
async function makeCandidates(directory: string, count: number): Promise<string[]> {
  const files: string[] = [];
  for (let setup = 0; setup < count / FILES_PER_SETUP; setup++) {
    const mainPath = `${directory}/b${setup}-main.img`;
    const sparePaths = [0, 1, 2].map((index) => `${directory}/b${setup}-s${index}.img`);
    await Deno.writeFile(mainPath, new Uint8Array(0));
    await Deno.truncate(mainPath, 64 * MIB);
    for (const path of sparePaths) {
      await Deno.writeFile(path, new Uint8Array(0));
      await Deno.truncate(path, 32 * MIB);
    }
    const main = await openPath(mainPath, { readOnly: false });
    const spares = [];
    for (const path of sparePaths) {
      spares.push({ path, device: (await openPath(path, { readOnly: false })).device });
    }
    try {
      await createSetup({ name: `bench${setup}`, main, spares, blockBytes: 4096 });
    } finally {
      await closeAll([main.device, ...spares.map((spare) => spare.device)]);
    }
    files.push(mainPath, ...sparePaths);
  }
  return files;
}

async function run(argv: string[]): Promise<string> {
  const output = await new Deno.Command(argv[0]!, { args: argv.slice(1), stderr: "piped" })
    .output();
  if (!output.success) {
    throw new Error(`${argv.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
  }
  return new TextDecoder().decode(output.stdout).trim();
}

function summary(values: number[]): { median: number; min: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const round = (value: number) => Math.round(value * 10) / 10;
  return {
    median: round(sorted[Math.floor(sorted.length / 2)]!),
    min: round(sorted[0]!),
    max: round(sorted.at(-1)!),
  };
}

/** One count: `reps` discover processes over the candidates. */
async function measure(candidates: string[]) {
  const wallMsPerDevice = [];
  const discoveryMsPerDevice = [];
  const probeMs = [];
  for (let rep = 0; rep < reps; rep++) {
    const startMs = performance.now();
    const stdout = await run([
      Deno.execPath(),
      "run",
      "--allow-all",
      `${ROOT}main.ts`,
      "discover",
      "--json",
      ...candidates,
    ]);
    const wallMs = performance.now() - startMs;
    const report = JSON.parse(stdout);
    const complete = report.setups.filter((setup: { state: string }) => setup.state === "complete");
    if (complete.length !== candidates.length / FILES_PER_SETUP) {
      throw new Error(`expected every setup complete: ${stdout.slice(0, 2000)}`);
    }
    wallMsPerDevice.push(wallMs / candidates.length);
    discoveryMsPerDevice.push(report.elapsedMs / candidates.length);
    probeMs.push(...report.candidates.map((candidate: { probeMs: number }) => candidate.probeMs));
  }
  return {
    candidates: candidates.length,
    wallMsPerDevice: summary(wallMsPerDevice),
    discoveryMsPerDevice: summary(discoveryMsPerDevice),
    probeMs: summary(probeMs),
  };
}

const workDirectory = await Deno.makeTempDir({
  dir: values["work-dir"],
  prefix: "dm-remap-discover-bench-",
});
const loops: string[] = [];
try {
  const rows = [];
  for (const count of counts) {
    const directory = `${workDirectory}/${count}`;
    await Deno.mkdir(directory);
    let candidates = await makeCandidates(directory, count);
    if (values.loop) {
      const bound = [];
      for (const file of candidates) {
        bound.push(await run(["losetup", "--find", "--show", file]));
        loops.push(bound.at(-1)!);
      }
      candidates = bound;
    }
    rows.push(await measure(candidates));
  }
  const result = {
    date: new Date().toISOString(),
    commit: await run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
    kind: values.loop
      ? "loop devices over files in " + values["work-dir"]
      : "image files in " + values["work-dir"],
    reps,
    cpus: navigator.hardwareConcurrency,
    rows,
  };
  const json = JSON.stringify(result, null, 2);
  if (values["no-write"]) {
    console.log(json);
  } else {
    const stamp = result.date.slice(0, 16).replace(":", "").replace(/-(\d\d)T/, "-$1T");
    const path = `${ROOT}bench/results/${stamp}-discover${values.loop ? "-loop" : ""}.json`;
    await Deno.writeTextFile(path, json + "\n");
    console.log(`${json}\nwritten to ${path}`);
  }
} finally {
  for (const loop of loops) await run(["losetup", "-d", loop]).catch(() => {});
  await Deno.remove(workDirectory, { recursive: true });
}

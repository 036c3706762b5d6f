/**
 * Does a dead webhook slow I/O? fio random 4 KiB writes over NBD against two
 * setups that remap as they go (every `--bad-every`-th block of the main disk
 * fails writes, so writes keep raising `remap` events), side by side: one
 * server sends every event as an alert to a webhook that accepts connections
 * and never answers (no rate limit, no repeat interval: its queue fills and
 * drops), the other has no alerts, and a third, `control`, is a second
 * setup without alerts: its ratio to `no-alerts` is the noise of the machine
 * (an A/A comparison), the band a real cost must stand out of. Each
 * repetition makes the setups afresh, then runs `--rounds` rounds of short
 * fio runs, the sides back to back in an order that rotates per round; each
 * round gives the ratios dead-webhook ÷ no-alerts and control ÷ no-alerts of
 * write IOPS, and the report is the median and interquartile range of each
 * over all rounds (the machine is shared, so single runs are noisy; many
 * short interleaved runs see the same noise on every side).
 *
 * Usage: deno run -A bench/alerts_bench.ts [--reps 3] [--rounds 10] [--runtime 1] [--bad-every 16]
 * Writes bench/results/<stamp>-alerts.json and prints a markdown table.
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    reps: { type: "string", default: "3" },
    rounds: { type: "string", default: "10" },
    runtime: { type: "string", default: "1" },
    "bad-every": { type: "string", default: "16" },
  },
});
const REPS = Number(values.reps);
const ROUNDS = Number(values.rounds);
const RUNTIME_S = Number(values.runtime);
const BAD_EVERY = Number(values["bad-every"]);
const ROOT = new URL("..", import.meta.url).pathname;
const DENO = Deno.execPath();
const MAIN_BYTES = 1024 ** 3;
const SPARE_BYTES = 192 * 1024 ** 2;
const SIDES = ["dead-webhook", "no-alerts", "control"] as const;
type Side = typeof SIDES[number];

/** A port that accepts and never answers. */
const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const held: Deno.Conn[] = [];
let deadAccepted = 0;
(async () => {
  for await (const conn of dead) {
    deadAccepted++;
    held.push(conn);
  }
})().catch(() => {});
const DEAD_URL = `http://127.0.0.1:${(dead.addr as Deno.NetAddr).port}/alerts`;

interface Served {
  child: Deno.ChildProcess;
  uri: string;
  apiSocket: string;
  stderr: Promise<string>;
}

async function run(command: string, args: string[], env: Record<string, string> = {}) {
  const output = await new Deno.Command(command, { args, env, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    throw new Error(
      `${command} ${args.join(" ")} failed:\n${text}\n${new TextDecoder().decode(output.stderr)}`,
    );
  }
  return text;
}

async function prepare(dir: string, side: Side): Promise<{ main: string; spare: string }> {
  const main = `${dir}/${side}-main.img`;
  const spare = `${dir}/${side}-spare.img`;
  await Deno.writeFile(main, new Uint8Array());
  await Deno.truncate(main, MAIN_BYTES);
  await Deno.writeFile(spare, new Uint8Array());
  await Deno.truncate(spare, SPARE_BYTES);
  await run(
    DENO,
    ["run", "-A", `${ROOT}main.ts`, "create", side, "--main", main, "--spare", spare],
    {
      DM_REMAP_STATE_DIR: `${dir}/state`,
    },
  );
  return { main, spare };
}

async function serve(
  dir: string,
  side: Side,
  disks: { main: string; spare: string },
): Promise<Served> {
  const socket = `${dir}/${side}.nbd.sock`;
  const apiSocket = `${dir}/${side}.api.sock`;
  const args = [
    "run",
    "-A",
    `${ROOT}bench/serve_faulty.ts`,
    "--main",
    disks.main,
    "--spare",
    disks.spare,
    "--socket",
    socket,
    "--api-socket",
    apiSocket,
    "--bad-every",
    String(BAD_EVERY),
    "--events-db",
    `${dir}/${side}.events.sqlite`,
    ...(side === "dead-webhook" ? ["--alert-webhook", DEAD_URL] : []),
  ];
  const child = new Deno.Command(DENO, { args, stdout: "piped", stderr: "piped" }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/serving \d+ bytes/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`serve_faulty for ${side} exited: ${seen}`);
    seen += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  const stderr = new Response(child.stderr).text();
  return { child, uri: `nbd+unix:///${side}?socket=${socket}`, apiSocket, stderr };
}

async function fioWriteIops(uri: string): Promise<number> {
  const text = await run("fio", [
    "--name=alerts",
    "--rw=randwrite",
    "--bs=4k",
    "--iodepth=32",
    "--ioengine=nbd",
    `--uri=${uri}`,
    "--size=1G",
    "--norandommap=1",
    "--randrepeat=0",
    "--time_based=1",
    `--runtime=${RUNTIME_S}`,
    "--output-format=json",
  ]);
  const job = JSON.parse(text.slice(text.indexOf("{"))).jobs[0];
  if (job.error !== 0) throw new Error(`fio reported error ${job.error}`);
  return job.write.iops;
}

async function statusOf(apiSocket: string) {
  return JSON.parse(
    await run(DENO, ["run", "-A", `${ROOT}main.ts`, "status", "--api-socket", apiSocket, "--json"]),
  );
}

/** The q-quantile (0–1) by linear interpolation between the closest ranks. */
function quantile(xs: number[], q: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const position = (sorted.length - 1) * q;
  const below = Math.floor(position);
  const above = Math.min(sorted.length - 1, below + 1);
  return sorted[below]! + (sorted[above]! - sorted[below]!) * (position - below);
}

function summary(xs: number[]) {
  return {
    median: quantile(xs, 0.5),
    q1: quantile(xs, 0.25),
    q3: quantile(xs, 0.75),
    min: Math.min(...xs),
    max: Math.max(...xs),
  };
}

const reps: Record<string, unknown>[] = [];
for (let rep = 0; rep < REPS; rep++) {
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "dm-remap-alerts-bench-" });
  const servers = new Map<Side, Served>();
  try {
    for (const side of SIDES) servers.set(side, await serve(dir, side, await prepare(dir, side)));
    const pairs: { order: Side[]; iops: Record<string, number>; ratio: number; control: number }[] =
      [];
    for (let round = 0; round < ROUNDS; round++) {
      // Each side goes first, second and third equally often.
      const shift = (rep * ROUNDS + round) % SIDES.length;
      const order = [...SIDES.slice(shift), ...SIDES.slice(0, shift)];
      const iops: Record<string, number> = {};
      for (const side of order) iops[side] = await fioWriteIops(servers.get(side)!.uri);
      pairs.push({
        order,
        iops,
        ratio: iops["dead-webhook"]! / iops["no-alerts"]!,
        control: iops["control"]! / iops["no-alerts"]!,
      });
    }
    const statuses = Object.fromEntries(
      await Promise.all(
        SIDES.map(async (side) => [side, await statusOf(servers.get(side)!.apiSocket)]),
      ),
    );
    const row = {
      rep,
      pairs,
      remapsCreated: Object.fromEntries(
        SIDES.map((side) => [side, statuses[side].counters.remapsCreated]),
      ),
      alerts: statuses["dead-webhook"].alerts,
    };
    console.error(JSON.stringify(row));
    reps.push(row);
  } finally {
    for (const served of servers.values()) {
      served.child.kill("SIGTERM");
      await served.child.status;
      await served.stderr;
    }
    await Deno.remove(dir, { recursive: true });
  }
}
dead.close();
for (const conn of held) conn.close();

const rounds = reps.flatMap((row) => row.pairs as { ratio: number; control: number }[]);
const ratios = rounds.map((round) => round.ratio);
const controls = rounds.map((round) => round.control);
const commit = (await run("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"])).trim();
const stamp = new Date().toISOString().slice(0, 16).replace(":", "").replace(/-(\d\d)T/, "-$1T");
const result = {
  bench: "alerts_bench.ts",
  commit,
  date: new Date().toISOString(),
  workload:
    `fio randwrite 4k qd32, ${RUNTIME_S} s, nbd over a unix socket, every ${BAD_EVERY}th block fails writes`,
  deadWebhookConnections: deadAccepted,
  ratio: summary(ratios),
  controlRatio: summary(controls),
  reps,
};
const path = `${ROOT}bench/results/${stamp}-alerts.json`;
await Deno.writeTextFile(path, JSON.stringify(result, null, 2) + "\n");
console.log(`wrote ${path}`);
for (
  const [what, values] of [
    ["dead webhook ÷ no alerts", result.ratio],
    ["control ÷ no alerts (A/A)", result.controlRatio],
  ] as const
) {
  console.log(
    `${what}, write IOPS, ${ratios.length} rounds: median ${values.median.toFixed(2)}, IQR ${
      values.q1.toFixed(2)
    }–${values.q3.toFixed(2)}, range ${values.min.toFixed(2)}–${values.max.toFixed(2)}`,
  );
}

/**
 * dm-remap's benchmark suite (issue 4): one run, every target side by side.
 *
 * Goal: absolute figures and ratios for dm-remap against nbdkit's file plugin
 * and against the raw file, on the same machine in the same run, plus the
 * costs that are not throughput (open time and memory with 1M remaps, remap
 * commit latency, flush latency) and where the server's CPU goes (perf).
 * Method: a 1 GiB file of random data in /dev/shm. fio drives every NBD target
 * with its `nbd` engine over a unix socket with identical settings; the raw
 * target is fio io_uring with direct=1 on the file itself. Repetition is
 * outermost; within one, all servers are up and each workload runs on every
 * target back to back, so a ratio pairs runs seconds apart and slow drift of
 * the machine cancels instead of biasing one target. Servers are stopped and the
 * /dev/shm directory removed in `finally` and on SIGINT/SIGTERM.
 *
 * Usage: scripts/bench.sh [--runtime 3] [--ramp 1] [--reps 5] [--targets a,b]
 *          [--workloads a,b] [--no-profile] [--no-extras] [--quick] [--baseline DIR]
 * `--baseline DIR` adds the target dmremap-baseline: passthrough served by the
 * code in DIR (a checkout of an older commit), so a change is measured against
 * its parent in the same repetitions, seconds apart.
 * Output: bench/results/<date>.json and bench/RESULTS.md (+ bench/results/<date>-ratios.svg).
 *
 * @module
 */

import { parseArgs } from "node:util";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/**
 * Where servers and helper scripts run from: a copy of the tree taken at the
 * start, so commits landing in the repository during the run cannot change
 * the code under test halfway (each server start would load the new files).
 */
let CODE = ROOT;
/** The code of the dmremap-baseline target, copied at the start like {@link CODE}. */
let BASELINE_CODE: string | undefined;
const DENO = Deno.execPath();
const GIB = 1024 * 1024 * 1024;

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    runtime: { type: "string", default: "3" },
    ramp: { type: "string", default: "1" },
    reps: { type: "string", default: "5" },
    targets: { type: "string" },
    workloads: { type: "string" },
    remaps: { type: "string", default: "1000000" },
    "bad-every": { type: "string", default: "100" },
    "no-profile": { type: "boolean", default: false },
    "no-extras": { type: "boolean", default: false },
    "no-write": { type: "boolean", default: false },
    baseline: { type: "string" },
    quick: { type: "boolean", default: false },
  },
});
const RUNTIME_S = args.quick ? 1 : Number(args.runtime);
const RAMP_S = args.quick ? 0 : Number(args.ramp);
const REPS = args.quick ? 1 : Number(args.reps);
const REMAPS = Number(args.remaps);
const BAD_EVERY = Number(args["bad-every"]);

// ---------------------------------------------------------------- workloads

interface Workload {
  id: string;
  rw: string;
  bs: string;
  /** Queue depth per connection (job). */
  iodepth: number;
  /** Connections (fio jobs); the total queue depth is iodepth × conns. */
  conns: number;
}

const WORKLOADS: Workload[] = [
  { id: "randread-4k-qd1", rw: "randread", bs: "4k", iodepth: 1, conns: 1 },
  { id: "randread-4k-qd32", rw: "randread", bs: "4k", iodepth: 32, conns: 1 },
  { id: "randwrite-4k-qd1", rw: "randwrite", bs: "4k", iodepth: 1, conns: 1 },
  { id: "randwrite-4k-qd32", rw: "randwrite", bs: "4k", iodepth: 32, conns: 1 },
  { id: "randrw70-4k-qd1", rw: "randrw", bs: "4k", iodepth: 1, conns: 1 },
  { id: "randrw70-4k-qd32", rw: "randrw", bs: "4k", iodepth: 32, conns: 1 },
  { id: "seqread-1m-qd8", rw: "read", bs: "1m", iodepth: 8, conns: 1 },
  { id: "seqwrite-1m-qd8", rw: "write", bs: "1m", iodepth: 8, conns: 1 },
  // Multi-conn: 4 connections, the same total queue depth as one connection.
  { id: "randread-4k-qd32-4conn", rw: "randread", bs: "4k", iodepth: 8, conns: 4 },
  { id: "randwrite-4k-qd32-4conn", rw: "randwrite", bs: "4k", iodepth: 8, conns: 4 },
  { id: "randrw70-4k-qd32-4conn", rw: "randrw", bs: "4k", iodepth: 8, conns: 4 },
  { id: "seqread-1m-qd8-4conn", rw: "read", bs: "1m", iodepth: 2, conns: 4 },
  { id: "seqwrite-1m-qd8-4conn", rw: "write", bs: "1m", iodepth: 2, conns: 4 },
];

// ---------------------------------------------------------------- processes

const children = new Set<Deno.ChildProcess>();
let workDir = "";

interface Server {
  child: Deno.ChildProcess;
  pid: number;
  uri: string;
  readyMs: number;
  stdout: string[];
  stderr: string[];
  rssKiB(): Promise<{ rss: number; hwm: number }>;
  stop(): Promise<void>;
}

function drainLines(
  stream: ReadableStream<Uint8Array>,
  into: string[],
  onLine?: (l: string) => void,
) {
  return (async () => {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      let newline;
      while ((newline = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, newline);
        rest = rest.slice(newline + 1);
        into.push(line);
        onLine?.(line);
      }
    }
    if (rest) {
      into.push(rest);
      onLine?.(rest);
    }
  })();
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function readRss(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const field = (name: string) => Number(status.match(new RegExp(`${name}:\\s+(\\d+)`))?.[1] ?? 0);
  return { rss: field("VmRSS"), hwm: field("VmHWM") };
}

/**
 * Starts a server and waits until it serves: a stdout line matching `ready`,
 * or (when `ready` is a path) until that socket exists.
 */
async function startServer(
  command: string,
  argv: string[],
  options: { uri: string; ready: RegExp | string; env?: Record<string, string> },
): Promise<Server> {
  const start = performance.now();
  const child = new Deno.Command(command, {
    args: argv,
    stdout: "piped",
    stderr: "piped",
    cwd: CODE,
    env: options.env,
  }).spawn();
  children.add(child);
  const stdout: string[] = [];
  const stderr: string[] = [];
  let readyMs = -1;
  const ready = Promise.withResolvers<void>();
  const outDone = drainLines(child.stdout, stdout, (line) => {
    if (options.ready instanceof RegExp && options.ready.test(line) && readyMs < 0) {
      readyMs = performance.now() - start;
      ready.resolve();
    }
  });
  const errDone = drainLines(child.stderr, stderr);
  const status = child.status.then((s) => {
    children.delete(child);
    ready.reject(new Error(`${command} exited (${s.code}) before serving:\n${stderr.join("\n")}`));
    return s;
  });
  if (typeof options.ready === "string") {
    const path = options.ready;
    (async () => {
      while (readyMs < 0) {
        if (await exists(path)) {
          readyMs = performance.now() - start;
          ready.resolve();
          return;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
  }
  const timer = setTimeout(
    () => ready.reject(new Error(`${command} did not start in 120 s`)),
    120_000,
  );
  try {
    await ready.promise;
  } finally {
    clearTimeout(timer);
  }
  return {
    child,
    pid: child.pid,
    uri: options.uri,
    readyMs,
    stdout,
    stderr,
    rssKiB: () => readRss(child.pid),
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      const killer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 20_000);
      await status;
      clearTimeout(killer);
      await Promise.allSettled([outDone, errDone]);
    },
  };
}

async function run(command: string, argv: string[], opts: { allowFail?: boolean } = {}) {
  const output = await new Deno.Command(command, {
    args: argv,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const text = new TextDecoder().decode(output.stdout);
  const err = new TextDecoder().decode(output.stderr);
  if (!output.success && !opts.allowFail) {
    throw new Error(`${command} ${argv.join(" ")} failed (${output.code}):\n${text}\n${err}`);
  }
  return { text, err, code: output.code };
}

// ---------------------------------------------------------------- fio

interface FioResult {
  iops: number;
  readIops: number;
  writeIops: number;
  bytesPerS: number;
  readClatP50Us: number;
  readClatP99Us: number;
  writeClatP50Us: number;
  writeClatP99Us: number;
  syncP50Us?: number;
  syncP99Us?: number;
  syncMeanUs?: number;
  errors: number;
}

interface FioTarget {
  kind: "raw" | "nbd";
  /** The file (raw) or the NBD URI. */
  where: string;
  /** What the server printed on stderr so far, shown when fio fails. */
  serverStderr?: string[];
}

/** The end of the server's stderr, for the message of a failed fio run. */
function serverTail(target: FioTarget): string {
  const lines = target.serverStderr?.slice(-20) ?? [];
  return lines.length > 0
    ? `\nserver stderr (last ${lines.length} lines):\n${lines.join("\n")}`
    : "";
}

function fioArgs(target: FioTarget, workload: Workload, extra: string[] = []): string[] {
  const args = [
    "--name=bench",
    `--rw=${workload.rw}`,
    `--bs=${workload.bs}`,
    `--iodepth=${workload.iodepth}`,
    `--numjobs=${workload.conns}`,
    "--group_reporting=1",
    "--randrepeat=0",
    "--output-format=json",
  ];
  if (workload.rw === "randrw") args.push("--rwmixread=70");
  if (workload.rw === "read" || workload.rw === "write") {
    // Each connection streams its own quarter, so 4 connections do not read the same bytes.
    const share = GIB / workload.conns;
    args.push(`--size=${share}`, `--offset_increment=${share}`);
  } else {
    args.push(`--size=${GIB}`, "--norandommap=1");
  }
  if (target.kind === "raw") {
    args.push("--ioengine=io_uring", `--filename=${target.where}`, "--direct=1");
  } else {
    args.push("--ioengine=nbd", `--uri=${target.where}`);
  }
  return [...args, ...extra];
}

function percentile(lat: Record<string, unknown> | undefined, p: string): number {
  const percentiles = (lat?.percentile ?? {}) as Record<string, number>;
  return (percentiles[p] ?? 0) / 1000;
}

async function fio(
  target: FioTarget,
  workload: Workload,
  extra: string[] = [],
): Promise<FioResult> {
  const outPath = `${workDir}/fio.json`;
  const argv = [...fioArgs(target, workload, extra), `--output=${outPath}`];
  const result = await run("fio", argv, { allowFail: true });
  let json;
  try {
    json = JSON.parse(await Deno.readTextFile(outPath));
  } catch {
    throw new Error(
      `fio failed: fio ${argv.join(" ")}\n${result.text}\n${result.err}${serverTail(target)}`,
    );
  }
  await Deno.remove(outPath);
  const job = json.jobs[0];
  const read = job.read, write = job.write;
  const out: FioResult = {
    iops: read.iops + write.iops,
    readIops: read.iops,
    writeIops: write.iops,
    bytesPerS: read.bw_bytes + write.bw_bytes,
    readClatP50Us: percentile(read.clat_ns, "50.000000"),
    readClatP99Us: percentile(read.clat_ns, "99.000000"),
    writeClatP50Us: percentile(write.clat_ns, "50.000000"),
    writeClatP99Us: percentile(write.clat_ns, "99.000000"),
    errors: job.error,
  };
  if (job.sync?.lat_ns?.N) {
    out.syncP50Us = percentile(job.sync.lat_ns, "50.000000");
    out.syncP99Us = percentile(job.sync.lat_ns, "99.000000");
    out.syncMeanUs = job.sync.lat_ns.mean / 1000;
  }
  if (job.error !== 0) {
    throw new Error(
      `fio reported error ${job.error} for ${workload.id}: ${result.err}${serverTail(target)}`,
    );
  }
  return out;
}

function timing(): string[] {
  return [
    "--time_based=1",
    `--runtime=${RUNTIME_S}`,
    ...(RAMP_S > 0 ? [`--ramp_time=${RAMP_S}`] : []),
  ];
}

// ---------------------------------------------------------------- setups

/**
 * The disks of every target. A server locks its main disk and spares, and
 * all servers of a repetition are up at once (runMatrix), so each dm-remap
 * target has its own; raw and nbdkit read passthrough's main disk.
 */
interface Files {
  main: string;
  ptSpare: string;
  mainBuffered: string;
  bufferedSpare: string;
  mainBaseline: string;
  baselineSpare: string;
  mainFaulty: string;
  main16: string;
  spare1m: string;
  main1t: string;
  spare1mSpread: string;
  faultySpare: string;
}

/** The spread 1M-remap setup's main disk: a 4 TB-class disk with 1M bad blocks is 1 block in 268. */
const SPREAD_MAIN_BYTES = 1024 * GIB;

const cli = (argv: string[]) => run(DENO, ["run", "-A", `${CODE}/main.ts`, ...argv]);

async function createSetup(name: string, main: string, spare: string, spareBytes: number) {
  await Deno.remove(spare).catch(() => {});
  await Deno.writeFile(spare, new Uint8Array(0));
  await Deno.truncate(spare, spareBytes);
  await cli(["create", name, "--main", main, "--spare", spare, "--block-size", "4096"]);
}

/** What bench/make_remaps.ts measured: the dense layout's figures, the spread layout's under `spread`. */
interface RemapBuilds {
  [measurement: string]: number | Record<string, number>;
  spread: Record<string, number>;
}

async function prepareFiles(): Promise<
  { files: Files; remapBuild: RemapBuilds; mainDiskSpeeds: Record<string, number> }
> {
  const files: Files = {
    main: `${workDir}/main.img`,
    ptSpare: `${workDir}/pt-spare.img`,
    mainBuffered: `${workDir}/main-buffered.img`,
    bufferedSpare: `${workDir}/buffered-spare.img`,
    mainBaseline: `${workDir}/main-baseline.img`,
    baselineSpare: `${workDir}/baseline-spare.img`,
    mainFaulty: `${workDir}/main-faulty.img`,
    main16: `${workDir}/main16.img`,
    spare1m: `${workDir}/spare1m.img`,
    main1t: `${workDir}/main1t.img`,
    spare1mSpread: `${workDir}/spare1m-spread.img`,
    faultySpare: `${workDir}/faulty-spare.img`,
  };
  // Every main disk is a copy of one random file, and evenOutMainDisks makes
  // them read alike: a copy's speed depends on where its pages lie in memory.
  const seed = `${workDir}/seed.img`;
  log("filling the 1 GiB seed file with random data");
  await run("sh", ["-c", `head -c ${GIB} /dev/urandom > ${seed}`]);
  for (const main of [files.main, files.mainBuffered, files.mainBaseline, files.mainFaulty]) {
    await run("cp", ["--sparse=always", seed, main]);
  }
  for (
    const [main, mainBytes] of [[files.main16, 16 * GIB], [
      files.main1t,
      SPREAD_MAIN_BYTES,
    ]] as const
  ) {
    await run("cp", ["--sparse=always", seed, main]);
    await Deno.truncate(main, mainBytes);
  }
  await Deno.remove(seed);
  // Before any setup records its main disk: a copy made again is another
  // file (another inode), which serve would refuse as not the recorded disk.
  const mainDiskSpeeds = await evenOutMainDisks([
    files.main,
    files.mainBuffered,
    files.mainBaseline,
    files.mainFaulty,
    files.main16,
    files.main1t,
  ]);
  await createSetup("pt", files.main, files.ptSpare, 64 << 20);
  await createSetup("pb", files.mainBuffered, files.bufferedSpare, 64 << 20);
  await createSetup("bl", files.mainBaseline, files.baselineSpare, 64 << 20);
  // 1M remaps need 1M distinct 4 KiB blocks, more than a 1 GiB disk has. Two
  // layouts, each on a sparse main disk whose first GiB is a copy of main.img,
  // where fio runs: dense, 16 GiB with every 4th block remapped, so one block
  // in four of fio's range is on a spare (as in tests/scale); and spread, 1 TiB
  // with every 268th block remapped. Slots in fio's range hold the data.
  const build = async (
    name: string,
    main: string,
    spare: string,
    mainBytes: number,
  ): Promise<Record<string, number>> => {
    log(`creating ${REMAPS} remaps offline over ${mainBytes / GIB} GiB`);
    const built = await run(DENO, [
      "run",
      "-A",
      `${CODE}/bench/make_remaps.ts`,
      "--name",
      name,
      "--main",
      main,
      "--spare",
      spare,
      "--remaps",
      String(REMAPS),
      "--stride",
      String(Math.floor(mainBytes / 4096 / REMAPS)),
      "--fill-bytes",
      String(GIB),
    ]);
    return JSON.parse(built.text.trim().split("\n").pop()!);
  };
  const dense = await build("rm", files.main16, files.spare1m, 16 * GIB);
  const spread = await build("rs", files.main1t, files.spare1mSpread, SPREAD_MAIN_BYTES);

  return { files, remapBuild: { ...dense, spread }, mainDiskSpeeds };
}

/** Copies of a main disk made before one is accepted as reading as fast as the others. */
const MAIN_COPY_TRIES = 4;
/** A main disk reading slower than this share of the fastest one is copied again. */
const MAIN_SPEED_SHARE_MIN = 0.95;

/** fio's sequential 1 MiB read speed of a file's first GiB (io_uring, direct=1, 1 s), MB/s. */
async function rawReadSpeed(path: string): Promise<number> {
  const workload = { id: "main-disk-speed", rw: "read", bs: "1m", iodepth: 8, conns: 1 };
  const result = await fio({ kind: "raw", where: path }, workload, [
    "--time_based=1",
    "--runtime=1",
  ]);
  return result.bytesPerS / 1e6;
}

/**
 * Makes the main disks read alike. Where a tmpfs file's pages lie in memory
 * changes how fast it reads: in a development run, five cp copies of the
 * same data read at 9203, 13012, 15172, 16093 and 16239 MiB/s (fio psync,
 * 1 MiB, no huge pages on this tmpfs). Targets on
 * different main disks (passthrough and the 1M-remap layouts) would then
 * differ by up to a third before any code ran. A disk slower than
 * MAIN_SPEED_SHARE_MIN of the fastest is copied again, the slow copy kept
 * until the end so the new one gets other pages. Returns each disk's
 * accepted speed, MB/s, for the report.
 */
async function evenOutMainDisks(paths: string[]): Promise<Record<string, number>> {
  const speeds: Record<string, number> = {};
  for (const path of paths) speeds[path] = await rawReadSpeed(path);
  const rejected: string[] = [];
  for (let copy = 1; copy < MAIN_COPY_TRIES; copy++) {
    const fastest = Math.max(...Object.values(speeds));
    const slow = paths.filter((path) => speeds[path]! < MAIN_SPEED_SHARE_MIN * fastest);
    if (slow.length === 0) break;
    for (const path of slow) {
      const reject = `${path}.slow${copy}`;
      await Deno.rename(path, reject);
      rejected.push(reject);
      await run("cp", ["--sparse=always", reject, path]);
      const speed = await rawReadSpeed(path);
      log(
        `main disk ${path}: ${speeds[path]!.toFixed(0)} MB/s, copied again: ${
          speed.toFixed(0)
        } MB/s`,
      );
      speeds[path] = speed;
    }
  }
  for (const path of rejected) await Deno.remove(path);
  return Object.fromEntries(paths.map((path) => [path.slice(workDir.length + 1), speeds[path]!]));
}

type TargetId =
  | "raw"
  | "nbdkit"
  | "dmremap"
  | "dmremap-buffered"
  | "dmremap-1m"
  | "dmremap-1m-spread"
  | "dmremap-faulty"
  | "dmremap-baseline";
const TARGETS: TargetId[] = [
  "raw",
  "nbdkit",
  "dmremap",
  "dmremap-buffered",
  "dmremap-1m",
  "dmremap-1m-spread",
  "dmremap-faulty",
];

const TARGET_LABELS: Record<TargetId, string> = {
  "raw": "raw (fio io_uring, direct=1)",
  "nbdkit": "nbdkit file plugin",
  "dmremap": "dm-remap passthrough (O_DIRECT, default)",
  "dmremap-buffered": "dm-remap passthrough --buffered",
  "dmremap-1m": `dm-remap, ${REMAPS} remaps, dense (1 block in 4)`,
  "dmremap-1m-spread": `dm-remap, ${REMAPS} remaps, spread over 1 TiB (1 block in 268)`,
  "dmremap-faulty": `dm-remap, bad block every ${BAD_EVERY} (remaps being created)`,
  "dmremap-baseline": `dm-remap passthrough, the code of ${args.baseline ?? "--baseline"}`,
};

function sockets(tag: string) {
  return { nbd: `${workDir}/${tag}.nbd.sock`, api: `${workDir}/${tag}.api.sock` };
}

async function startTarget(
  id: TargetId,
  files: Files,
  extraDenoFlags: string[] = [],
  faultyArgs: string[] = ["--bad-every", String(BAD_EVERY)],
): Promise<Server | undefined> {
  const s = sockets(id);
  for (const path of [s.nbd, s.api]) await Deno.remove(path).catch(() => {});
  switch (id) {
    case "raw":
      return undefined;
    case "nbdkit":
      return await startServer("nbdkit", ["-f", "--unix", s.nbd, "file", files.main], {
        uri: `nbd+unix:///?socket=${s.nbd}`,
        ready: s.nbd,
      });
    case "dmremap":
    case "dmremap-buffered":
    case "dmremap-baseline":
    case "dmremap-1m":
    case "dmremap-1m-spread": {
      const [spare, main, name] = id === "dmremap-baseline"
        ? [files.baselineSpare, files.mainBaseline, "bl"]
        : id === "dmremap-1m"
        ? [files.spare1m, files.main16, "rm"]
        : id === "dmremap-1m-spread"
        ? [files.spare1mSpread, files.main1t, "rs"]
        : id === "dmremap-buffered"
        ? [files.bufferedSpare, files.mainBuffered, "pb"]
        : [files.ptSpare, files.main, "pt"];
      return await startServer(DENO, [
        "run",
        "-A",
        ...extraDenoFlags,
        `${id === "dmremap-baseline" ? BASELINE_CODE : CODE}/main.ts`,
        "serve",
        "--spare",
        spare,
        "--main",
        main,
        "--socket",
        s.nbd,
        "--api-socket",
        s.api,
        "--events-db",
        `${workDir}/${id}.events.sqlite`,
        ...(id === "dmremap-buffered" ? ["--buffered"] : []),
      ], { uri: `nbd+unix:///${name}?socket=${s.nbd}`, ready: /serving \d+ bytes/ });
    }
    case "dmremap-faulty": {
      // A fresh setup every time, so remaps are created during the measurement.
      await createSetup("faulty", files.mainFaulty, files.faultySpare, 64 << 20);
      return await startServer(DENO, [
        "run",
        "-A",
        ...extraDenoFlags,
        `${CODE}/bench/serve_faulty.ts`,
        "--spare",
        files.faultySpare,
        "--main",
        files.mainFaulty,
        "--socket",
        s.nbd,
        "--api-socket",
        s.api,
        "--events-db",
        `${workDir}/faulty.events.sqlite`,
        ...faultyArgs,
      ], { uri: `nbd+unix:///faulty?socket=${s.nbd}`, ready: /serving \d+ bytes/ });
    }
  }
}

function fioTargetOf(id: TargetId, files: Files, server: Server | undefined): FioTarget {
  return id === "raw"
    ? { kind: "raw", where: files.main }
    : { kind: "nbd", where: server!.uri, serverStderr: server!.stderr };
}

// ---------------------------------------------------------------- matrix

interface Sample extends FioResult {
  target: TargetId;
  workload: string;
  rep: number;
}

interface ServerStart {
  target: TargetId;
  rep: number;
  readyMs: number;
  rssAfterStartKiB: number;
  rssBeforeStopKiB: number;
  hwmKiB: number;
}

async function runMatrix(files: Files, targets: TargetId[], workloads: Workload[]) {
  const samples: Sample[] = [];
  const starts: ServerStart[] = [];
  const total = REPS * targets.length * workloads.length;
  let done = 0;
  for (let rep = 0; rep < REPS; rep++) {
    // Every long-lived server of this repetition is up at once, idle but for
    // the one fio drives, so each workload is measured on all targets within
    // seconds of each other and a ratio compares runs of the same moment.
    const servers = new Map<TargetId, { server: Server | undefined; rss: number | undefined }>();
    try {
      for (const target of targets) {
        if (target === "dmremap-faulty") continue;
        const server = await startTarget(target, files);
        servers.set(target, { server, rss: server ? (await server.rssKiB()).rss : undefined });
      }
      for (const [index, workload] of workloads.entries()) {
        // Rotated, so no target always runs first, and reversed every other
        // repetition, so no target always runs right after the same other one
        // (a rotation alone keeps neighbours: spread always followed dense).
        const shift = (rep + index) % targets.length;
        const rotated = [...targets.slice(shift), ...targets.slice(0, shift)];
        const order = rep % 2 === 0 ? rotated : rotated.reverse();
        for (const target of order) {
          const perRun = !servers.has(target);
          const server = perRun ? await startTarget(target, files) : servers.get(target)!.server;
          try {
            const result = await fio(fioTargetOf(target, files, server), workload, timing());
            samples.push({ target, workload: workload.id, rep, ...result });
            done++;
            log(
              `[${done}/${total}] rep ${rep + 1} ${target.padEnd(17)} ${workload.id.padEnd(24)} ` +
                `${(result.iops / 1000).toFixed(1).padStart(7)}K IOPS ${
                  (result.bytesPerS / 1e6).toFixed(0).padStart(6)
                } MB/s`,
            );
          } finally {
            if (perRun && server) {
              await server.stop();
              const summary = server.stderr.find((line) => line.includes("stopped cleanly"));
              if (summary) log(`    ${summary}`);
            }
          }
        }
      }
    } finally {
      for (const [target, { server, rss }] of servers) {
        if (!server) continue;
        const end = await server.rssKiB();
        starts.push({
          target,
          rep,
          readyMs: server.readyMs,
          rssAfterStartKiB: rss!,
          rssBeforeStopKiB: end.rss,
          hwmKiB: end.hwm,
        });
        await server.stop();
      }
    }
  }
  return { samples, starts };
}

// ---------------------------------------------------------------- extras

/** The range remapCommitLatency writes: every block of it fails writes on the faulty target. */
const REMAP_RANGE_BYTES = 32 << 20;

/** fio randwrite 4 KiB over REMAP_RANGE_BYTES, each block exactly once (random map on). */
async function writeRangeOnce(
  target: TargetId,
  files: Files,
  server: Server | undefined,
  iodepth: number,
): Promise<FioResult> {
  const workload: Workload = {
    id: `range-qd${iodepth}`,
    rw: "randwrite",
    bs: "4k",
    iodepth,
    conns: 1,
  };
  const fioTarget = fioTargetOf(target, files, server);
  const args = fioArgs(fioTarget, workload)
    .filter((a) => !a.startsWith("--size") && a !== "--norandommap=1");
  const outPath = `${workDir}/fio.json`;
  await run("fio", [...args, `--size=${REMAP_RANGE_BYTES}`, `--output=${outPath}`]).catch(
    (error: Error) => {
      throw new Error(`${error.message}${serverTail(fioTarget)}`);
    },
  );
  return parseFio(JSON.parse(await Deno.readTextFile(outPath)));
}

async function remapCommitLatency(files: Files) {
  // Every 4 KiB block of the first 32 MiB fails writes; fio writes each block
  // exactly once (random map on), so every write waits for its own remap.
  const out: Record<string, FioResult> = {};
  for (const iodepth of [1, 32]) {
    const server = await startTarget("dmremap-faulty", files, [], [
      "--bad-range",
      `0:${REMAP_RANGE_BYTES}`,
    ]);
    try {
      out[`remap-qd${iodepth}`] = await writeRangeOnce("dmremap-faulty", files, server, iodepth);
    } finally {
      await server!.stop();
      log(
        `    remap commit qd${iodepth}: ${
          server!.stderr.find((l) => l.includes("stopped cleanly"))
        }`,
      );
    }
  }
  // The same writes without faults, for comparison.
  const server = await startTarget("dmremap", files);
  try {
    for (const iodepth of [1, 32]) {
      out[`plain-qd${iodepth}`] = await writeRangeOnce("dmremap", files, server, iodepth);
    }
  } finally {
    await server!.stop();
  }
  return out;
}

// deno-lint-ignore no-explicit-any
function parseFio(json: { jobs: Record<string, any>[] }): FioResult {
  const job = json.jobs[0]!;
  const read = job.read, write = job.write;
  return {
    iops: read.iops + write.iops,
    readIops: read.iops,
    writeIops: write.iops,
    bytesPerS: read.bw_bytes + write.bw_bytes,
    readClatP50Us: percentile(read.clat_ns, "50.000000"),
    readClatP99Us: percentile(read.clat_ns, "99.000000"),
    writeClatP50Us: percentile(write.clat_ns, "50.000000"),
    writeClatP99Us: percentile(write.clat_ns, "99.000000"),
    syncP50Us: job.sync?.lat_ns?.N ? percentile(job.sync.lat_ns, "50.000000") : undefined,
    syncP99Us: job.sync?.lat_ns?.N ? percentile(job.sync.lat_ns, "99.000000") : undefined,
    syncMeanUs: job.sync?.lat_ns?.N ? job.sync.lat_ns.mean / 1000 : undefined,
    errors: job.error,
  };
}

async function flushCost(files: Files) {
  // A flush after every 4 KiB write, QD1: fio's "sync" latency is the flush's round trip.
  const out: Record<string, FioResult> = {};
  for (const target of ["nbdkit", "dmremap", "dmremap-buffered"] as TargetId[]) {
    const server = await startTarget(target, files);
    try {
      const workload: Workload = { id: "flush", rw: "randwrite", bs: "4k", iodepth: 1, conns: 1 };
      out[target] = await fio(fioTargetOf(target, files, server), workload, [
        ...timing(),
        "--fsync=1",
      ]);
      log(
        `    flush ${target}: sync p50 ${out[target]!.syncP50Us} us, p99 ${
          out[target]!.syncP99Us
        } us`,
      );
    } finally {
      await server?.stop();
    }
  }
  return out;
}

// ---------------------------------------------------------------- profiling

/** Where one target's server spends its CPU on one workload: perf over every thread. */
interface ProfileReport {
  target: TargetId;
  workload: string;
  /** fio's rates over its measured window (after the ramp): requests/s and bytes/s. */
  iops: number;
  bytesPerS: number;
  /** The server's CPU time inside the recording window (perf's cpu-clock count). */
  cpuMs: number;
  /** That CPU time divided by the requests fio completed in the window, at its mean rate. */
  cpuUsPerRequest: number;
  /** Share of the server's samples by where the code lives: kernel, JS (JIT), runtime, libc. */
  shares: { kernel: number; js: number; runtime: number; libc: number; other: number };
  top: string[];
}

/** Seconds perf records, starting once fio's ramp is over; fio runs 1 s longer. */
const PROFILE_SECONDS = 4;

/**
 * The cells the targets are judged by, each beside its passthrough twin:
 * per-request CPU shows what remapping adds, and where.
 */
const PROFILE_CASES: [TargetId, string][] = [
  ["dmremap", "seqread-1m-qd8"],
  ["dmremap-1m", "seqread-1m-qd8"],
  ["dmremap-1m-spread", "seqread-1m-qd8"],
  ["dmremap", "seqwrite-1m-qd8"],
  ["dmremap-1m", "seqwrite-1m-qd8"],
  ["dmremap", "randrw70-4k-qd32-4conn"],
  ["dmremap-1m", "randrw70-4k-qd32-4conn"],
  ["dmremap", "randread-4k-qd32"],
  ["dmremap", "randwrite-4k-qd32"],
  ["dmremap-baseline", "randwrite-4k-qd32"],
];

async function profile(files: Files, targets: TargetId[]): Promise<ProfileReport[]> {
  const perfRuns = await run("perf", ["--version"], { allowFail: true }).then(
    (result) => result.code === 0,
    () => false, // not installed: spawning it fails
  );
  if (!perfRuns) {
    throw new Error("perf does not run (scripts/bench.sh installs Debian's linux-perf)");
  }
  const reports: ProfileReport[] = [];
  for (const [target, workloadId] of PROFILE_CASES) {
    if (!targets.includes(target)) continue;
    const workload = WORKLOADS.find((w) => w.id === workloadId)!;
    const server = await startTarget(target, files, ["--v8-flags=--perf-basic-prof"]);
    const data = `${workDir}/perf.data`;
    let result: FioResult;
    try {
      const recording = (async () => {
        await new Promise((r) => setTimeout(r, 1000));
        const recorder = new Deno.Command("perf", {
          args: [
            "record",
            "-F",
            "999",
            "-p",
            String(server!.pid),
            "-o",
            data,
            "--",
            "sleep",
            String(PROFILE_SECONDS),
          ],
          stdout: "null",
          stderr: "null",
        }).spawn();
        children.add(recorder);
        await recorder.status;
        children.delete(recorder);
      })();
      result = await fio(fioTargetOf(target, files, server), workload, [
        "--time_based=1",
        "--ramp_time=1",
        `--runtime=${PROFILE_SECONDS + 1}`,
      ]);
      await recording;
    } finally {
      await server!.stop();
    }
    const report = (sort: string, percentLimit: string) =>
      run("perf", [
        "report",
        "-i",
        data,
        "--no-children",
        "--stdio",
        "--sort",
        sort,
        "--percent-limit",
        percentLimit,
      ], { allowFail: true });
    const byDso = await report("dso", "0");
    const cpuNs = Number(/Event count \(approx\.\): (\d+)/.exec(byDso.text)?.[1] ?? NaN);
    if (!(cpuNs > 0)) {
      throw new Error(`perf recorded no samples of ${target} (${workloadId}):\n${byDso.err}`);
    }
    const shares = { kernel: 0, js: 0, runtime: 0, libc: 0, other: 0 };
    for (const match of byDso.text.matchAll(/^\s+([\d.]+)%\s+(.+?)\s*$/gm)) {
      const percent = Number(match[1]), dso = match[2]!;
      if (dso.includes("kernel")) shares.kernel += percent;
      else if (dso.startsWith("[JIT]")) shares.js += percent;
      else if (dso === "deno") shares.runtime += percent;
      else if (dso.startsWith("libc")) shares.libc += percent;
      else shares.other += percent;
    }
    const bySymbol = await report("dso,sym", "1.5");
    const top = bySymbol.text.split("\n")
      .filter((line) => /^\s+\d+\.\d+%/.test(line))
      .slice(0, 14)
      .map((line) =>
        line.replace(/file:\/\/\S*?\/code\//g, "").replace(/\[JIT\] tid \d+/, "[JIT]")
      );
    const cpuMs = cpuNs / 1e6;
    reports.push({
      target,
      workload: workloadId,
      iops: result.iops,
      bytesPerS: result.bytesPerS,
      cpuMs,
      cpuUsPerRequest: (cpuMs * 1000) / (result.iops * PROFILE_SECONDS),
      shares,
      top,
    });
    log(
      `    profile ${target} ${workloadId}: ${
        (cpuMs / PROFILE_SECONDS / 10).toFixed(0)
      } % of a core, ${reports.at(-1)!.cpuUsPerRequest.toFixed(1)} µs per request`,
    );
    await Deno.remove(data).catch(() => {});
    await Deno.remove(`/tmp/perf-${server!.pid}.map`).catch(() => {});
  }
  return reports;
}

// ---------------------------------------------------------------- report

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface Stat {
  median: number;
  min: number;
  max: number;
  n: number;
}

function stat(xs: number[]): Stat {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

function aggregate(samples: Sample[]) {
  const table: Record<string, Record<string, { iops: Stat; mbps: Stat; p99Us: Stat }>> = {};
  for (const sample of samples) {
    table[sample.workload] ??= {};
    const cell = samples.filter((s) =>
      s.workload === sample.workload && s.target === sample.target
    );
    table[sample.workload]![sample.target] = {
      iops: stat(cell.map((s) => s.iops)),
      mbps: stat(cell.map((s) => s.bytesPerS / 1e6)),
      p99Us: stat(cell.map((s) => Math.max(s.readClatP99Us, s.writeClatP99Us))),
    };
  }
  return table;
}

const RATIOS: [string, TargetId, TargetId][] = [
  ["passthrough ÷ nbdkit", "dmremap", "nbdkit"],
  ["buffered ÷ nbdkit", "dmremap-buffered", "nbdkit"],
  ["passthrough ÷ raw", "dmremap", "raw"],
  ["nbdkit ÷ raw", "nbdkit", "raw"],
  ["1M remaps ÷ passthrough", "dmremap-1m", "dmremap"],
  ["1M remaps spread ÷ passthrough", "dmremap-1m-spread", "dmremap"],
  ["1M remaps ÷ nbdkit", "dmremap-1m", "nbdkit"],
  ["remapping ÷ passthrough", "dmremap-faulty", "dmremap"],
  ["passthrough ÷ baseline", "dmremap", "dmremap-baseline"],
  ["baseline ÷ nbdkit", "dmremap-baseline", "nbdkit"],
];

/**
 * Each ratio pairs the two targets' runs of the same repetition (measured
 * seconds apart, see runMatrix) and reports the median and spread of those
 * paired ratios, so drift between repetitions cancels instead of adding up.
 */
function ratios(samples: Sample[]) {
  const out: Record<string, Record<string, Stat | null>> = {};
  const iopsOf = (target: TargetId, workload: string, rep: number) =>
    samples.find((s) => s.target === target && s.workload === workload && s.rep === rep)?.iops;
  for (const workload of new Set(samples.map((s) => s.workload))) {
    out[workload] = {};
    const reps = new Set(samples.filter((s) => s.workload === workload).map((s) => s.rep));
    for (const [label, a, b] of RATIOS) {
      const paired: number[] = [];
      for (const rep of reps) {
        const x = iopsOf(a, workload, rep), y = iopsOf(b, workload, rep);
        if (x !== undefined && y) paired.push(x / y);
      }
      out[workload]![label] = paired.length > 0 ? stat(paired) : null;
    }
  }
  return out;
}

function fmtIops(s: Stat | undefined, big: boolean): string {
  if (!s) return "–";
  if (big) return `${s.median.toFixed(0)} MB/s (${s.min.toFixed(0)}–${s.max.toFixed(0)})`;
  const k = (v: number) => (v / 1000).toFixed(1);
  return `${k(s.median)}K (${k(s.min)}–${k(s.max)})`;
}

function svg(ratioTable: ReturnType<typeof ratios>, labels: string[]): string {
  const workloads = Object.keys(ratioTable);
  const colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];
  const barW = 9, groupW = labels.length * barW + 14, left = 50, top = 20, h = 260;
  const width = left + workloads.length * groupW + 20;
  const maxRatio = 1.6;
  const y = (v: number) => top + h - (Math.min(v, maxRatio) / maxRatio) * h;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${
      top + h + 170 + labels.length * 14
    }" font-family="sans-serif" font-size="10">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ];
  for (const v of [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5]) {
    parts.push(
      `<line x1="${left}" x2="${width - 10}" y1="${y(v)}" y2="${y(v)}" stroke="${
        v === 1 ? "#000" : "#ddd"
      }"/>`,
    );
    parts.push(`<text x="${left - 5}" y="${y(v) + 3}" text-anchor="end">${v.toFixed(2)}</text>`);
  }
  workloads.forEach((workload, i) => {
    const x0 = left + i * groupW + 7;
    labels.forEach((label, j) => {
      const v = ratioTable[workload]![label]?.median;
      if (v === undefined) return;
      parts.push(
        `<rect x="${x0 + j * barW}" y="${y(v)}" width="${barW - 1}" height="${
          top + h - y(v)
        }" fill="${colors[j % colors.length]}"><title>${workload} ${label}: ${
          v.toFixed(3)
        }</title></rect>`,
      );
    });
    parts.push(
      `<text transform="translate(${x0 + groupW / 2 - 4},${
        top + h + 6
      }) rotate(60)">${workload}</text>`,
    );
  });
  labels.forEach((label, j) => {
    const yy = top + h + 160 + j * 14;
    parts.push(
      `<rect x="${left}" y="${yy - 9}" width="10" height="10" fill="${
        colors[j % colors.length]
      }"/>`,
    );
    parts.push(`<text x="${left + 15}" y="${yy}">${label} (clipped at ${maxRatio})</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n");
}

async function machine() {
  const sh = async (cmd: string) => (await run("sh", ["-c", cmd], { allowFail: true })).text.trim();
  return {
    nproc: Number(await sh("nproc")),
    memTotal: await sh("grep MemTotal /proc/meminfo | awk '{print $2 \" kB\"}'"),
    kernel: await sh("uname -r"),
    cpu: await sh("lscpu | sed -n 's/^Model name:[ ]*//p' | head -1"),
    deno: await sh(`${DENO} --version | head -1`),
    fio: await sh("fio --version"),
    nbdkit: await sh("nbdkit --version"),
    libnbd: await sh("nbdsh --version 2>/dev/null | head -1"),
    perf: await sh("perf --version 2>/dev/null"),
    commit: await sh(`git -C ${ROOT} rev-parse --short HEAD`),
    modChanges: await sh(`git -C ${ROOT} status --porcelain mod | wc -l`),
  };
}

/** Copies the code under test into the work directory (node_modules linked). */
async function snapshotCode(from: string, name: string): Promise<string> {
  const code = `${workDir}/${name}`;
  await Deno.mkdir(code);
  const entries = ["main.ts", "deno.json", "deno.lock", "package.json", "mod", "bench"];
  for (const entry of entries) {
    if (await exists(`${from}/${entry}`)) await run("cp", ["-r", `${from}/${entry}`, `${code}/`]);
  }
  await Deno.remove(`${code}/bench/results`, { recursive: true }).catch(() => {});
  await Deno.symlink(`${ROOT}/node_modules`, `${code}/node_modules`);
  return code;
}

// ---------------------------------------------------------------- main

function log(line: string) {
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);
}

async function cleanup() {
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }
  if (workDir) await Deno.remove(workDir, { recursive: true }).catch(() => {});
}

async function main() {
  const onSignal = async () => {
    log("interrupted: stopping servers, removing files");
    await cleanup();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const startedAt = new Date();
  const stamp = startedAt.toISOString().slice(0, 16).replace(/:/g, "");
  workDir = Deno.env.get("BENCH_DIR") ??
    await Deno.makeTempDir({ dir: "/dev/shm", prefix: "dm-remap-bench-" });
  try {
    const targets = (args.targets?.split(",") ??
      TARGETS.filter((target) => target !== "dmremap-baseline")) as TargetId[];
    if (args.baseline !== undefined && !targets.includes("dmremap-baseline")) {
      targets.push("dmremap-baseline");
    }
    if (targets.includes("dmremap-baseline") && args.baseline === undefined) {
      throw new Error(
        "The target dmremap-baseline needs --baseline DIR: a checkout to compare with",
      );
    }
    const workloads = args.workloads
      ? WORKLOADS.filter((w) => args.workloads!.split(",").includes(w.id))
      : WORKLOADS;
    const info = await machine();
    CODE = await snapshotCode(ROOT, "code");
    if (args.baseline !== undefined) BASELINE_CODE = await snapshotCode(args.baseline, "baseline");
    log(
      `${info.cpu}, ${info.nproc} CPUs; ${targets.length} targets × ${workloads.length} workloads × ${REPS} reps × ${
        RUNTIME_S + RAMP_S
      } s`,
    );
    const { files, remapBuild, mainDiskSpeeds } = await prepareFiles();
    log(`main disk read speeds (MB/s): ${JSON.stringify(mainDiskSpeeds)}`);
    log(`1M remaps built: ${JSON.stringify(remapBuild)}`);
    const matrix = await runMatrix(files, targets, workloads);
    const extras = args["no-extras"] ? undefined : {
      remapCommit: await attempt("remap commit latency", () => remapCommitLatency(files)),
      flush: await attempt("flush cost", () => flushCost(files)),
    };
    const profiles = args["no-profile"]
      ? []
      : await attempt("profiles", () => profile(files, targets));
    const table = aggregate(matrix.samples);
    const ratioTable = ratios(matrix.samples);
    const result = {
      date: startedAt.toISOString(),
      durationS: (Date.now() - startedAt.getTime()) / 1000,
      machine: info,
      settings: {
        runtimeS: RUNTIME_S,
        rampS: RAMP_S,
        reps: REPS,
        remaps: REMAPS,
        badEvery: BAD_EVERY,
        targets,
        workloads,
      },
      remapBuild,
      mainDiskSpeeds,
      serverStarts: matrix.starts,
      table,
      ratios: ratioTable,
      extras,
      profiles,
      samples: matrix.samples,
    };
    if (args["no-write"]) {
      console.log(JSON.stringify(result, null, 2));
      return;
    }
    await Deno.mkdir(`${ROOT}/bench/results`, { recursive: true });
    await Deno.writeTextFile(
      `${ROOT}/bench/results/${stamp}.json`,
      JSON.stringify(result, null, 2) + "\n",
    );
    const svgLabels = RATIOS.map(([label]) => label).filter((l) =>
      Object.values(ratioTable).some((r) => r[l] !== null)
    );
    await Deno.writeTextFile(
      `${ROOT}/bench/results/${stamp}-ratios.svg`,
      svg(ratioTable, svgLabels),
    );
    // The development runs are written by hand; each report carries them on.
    const developmentRuns = await Deno.readTextFile(`${ROOT}/bench/DEVELOPMENT_RUNS.md`);
    await Deno.writeTextFile(
      `${ROOT}/bench/RESULTS.md`,
      `${markdown(result, stamp, workloads, targets)}\n${developmentRuns}`,
    );
    log(
      `wrote bench/results/${stamp}.json, bench/results/${stamp}-ratios.svg, bench/RESULTS.md in ${
        result.durationS.toFixed(0)
      } s`,
    );
  } finally {
    await cleanup();
  }
}

/** A step after the matrix that failed: reported in RESULTS.md instead of losing the run. */
interface FailedStep {
  failed: string;
}

async function attempt<T>(step: string, body: () => Promise<T>): Promise<T | FailedStep> {
  try {
    return await body();
  } catch (error) {
    const failed = error instanceof Error ? error.message : String(error);
    log(`${step} FAILED: ${failed}`);
    return { failed };
  }
}

function failure(value: unknown): string | undefined {
  return typeof value === "object" && value !== null && "failed" in value
    ? `**Failed:** \`\`\`${(value as FailedStep).failed}\`\`\``
    : undefined;
}

// deno-lint-ignore no-explicit-any
function markdown(r: any, stamp: string, workloads: Workload[], targets: TargetId[]): string {
  const m = r.machine;
  const lines: string[] = [];
  const big = (w: string) => w.includes("1m");
  lines.push(
    "# dm-remap benchmark results",
    "",
    `Generated by \`scripts/bench.sh\` (bench/run.ts) on ${r.date}; the run took ${
      (r.durationS / 60).toFixed(1)
    } min.`,
    `Raw data: \`bench/results/${stamp}.json\`; plot of the ratios: \`bench/results/${stamp}-ratios.svg\`.`,
    "",
    "## Machine and versions",
    "",
    `- CPU: ${m.cpu}, ${m.nproc} CPUs; memory ${m.memTotal}; kernel ${m.kernel}`,
    `- ${m.deno}; ${m.fio}; ${m.nbdkit}; ${m.libnbd}; ${m.perf}`,
    `- dm-remap at commit ${m.commit} (${m.modChanges} uncommitted changes under mod/ at the start); the tree was copied at the start and every server ran from that copy`,
    "",
    "## Method",
    "",
    "- Backing storage: a 1 GiB file of random data in /dev/shm (tmpfs). Spares on the same tmpfs. Every main disk is a \`cp\` of the same random file; raw, nbdkit and passthrough share one, and the other dm-remap targets each have their own (all servers of a repetition are up at once, and each locks its disks).",
    `- Main disks read alike: where a tmpfs file's pages lie in memory changes how fast it reads (in a development run five \`cp\` copies of the same data read at 9203–16239 MiB/s), so a main disk reading slower than ${MAIN_SPEED_SHARE_MIN} × the fastest is copied again (up to ${MAIN_COPY_TRIES} copies). Accepted speeds, fio 1 MiB sequential reads of the first GiB, MB/s: ${
      Object.entries(r.mainDiskSpeeds).map(([file, speed]) =>
        `${file} ${(speed as number).toFixed(0)}`
      ).join(", ")
    }. Spares are not evened out.`,
    "- NBD targets: fio `ioengine=nbd` over a unix socket, identical settings for all. Raw: fio `ioengine=io_uring`, `direct=1` on the file.",
    `- Each cell: ${r.settings.reps} runs × ${r.settings.runtimeS} s (after ${r.settings.rampS} s ramp). Repetition is outermost; within one, every server is up at once and each workload runs on all targets back to back, in an order rotated per workload and repetition and reversed every other repetition. Throughput shown: median (min–max). A ratio is taken per repetition from the two targets' runs of that workload (seconds apart) and shown as the median of those paired ratios (min–max).`,
    "- Multi-conn rows (`-4conn`): 4 fio jobs, each its own NBD connection (raw: 4 io_uring jobs), with the per-connection queue depth divided by 4 so the total depth equals the single-connection row. Sequential multi-conn jobs each stream their own quarter.",
    "- nbdkit: `nbdkit -f --unix SOCK file FILE` with the plugin defaults (cache=default, fadvise=normal, 16 threads). `cache=none` only evicts page cache, which on tmpfs *is* the storage, so it is not a meaningful setting here.",
    "- dm-remap passthrough: `dm-remap create` (block size 4096) + `dm-remap serve --spare S --main M --socket … --api-socket …`, default O_DIRECT; `--buffered` shown as its own column.",
    `- 1M remaps, two layouts, each made offline with SpareStore.appendRemaps (bench/make_remaps.ts) on a sparse main disk whose first GiB is the same data, where fio runs (a 1 GiB disk has only 262,144 4 KiB blocks, fewer than 1M). Dense: ${r.remapBuild.remaps} remaps, every ${r.remapBuild.stride}th 4 KiB block (jittered) of a 16 GiB disk, so 1 block in ${r.remapBuild.stride} of fio's range is on a spare and a 1 MiB request takes about ${
      256 / r.remapBuild.stride + 1
    } disk I/Os (its main-disk runs, and one vectored I/O for its slots, which are consecutive). Spread: ${r.remapBuild.spread?.remaps} remaps, every ${r.remapBuild.spread?.stride}th block of a 1 TiB disk (a 4 TB disk with 1M bad blocks), so fio's range holds ${r.remapBuild.spread?.filledSlots} of them; the table is the same size. In both, the slots of remapped blocks in fio's range hold the block's data (${r.remapBuild.filledSlots} and ${r.remapBuild.spread?.filledSlots} slots), as after a real remap; the others were never written.`,
    `- Remaps being created: bench/serve_faulty.ts (SetupService over a FaultyDevice) with one write-failing 4 KiB block in every ${r.settings.badEvery}, a fresh setup for each run, so every run creates remaps as fio first writes each bad block.`,
    "",
    "## Throughput (4 KiB rows: IOPS, read+write; 1 MiB rows: MB/s)",
    "",
    `| workload | ${targets.map((t) => TARGET_LABELS[t]).join(" | ")} |`,
    `| --- | ${targets.map(() => "---").join(" | ")} |`,
  );
  for (const w of workloads) {
    const cells = r.table[w.id] ?? {};
    lines.push(
      `| ${w.id} | ${
        targets.map((t) => fmtIops(big(w.id) ? cells[t]?.mbps : cells[t]?.iops, big(w.id))).join(
          " | ",
        )
      } |`,
    );
  }
  lines.push(
    "",
    "## Ratios (median of the paired runs, min–max)",
    "",
    `| workload | ${RATIOS.map(([l]) => l).join(" | ")} |`,
    `| --- | ${RATIOS.map(() => "---").join(" | ")} |`,
  );
  for (const w of workloads) {
    const row = r.ratios[w.id] ?? {};
    lines.push(`| ${w.id} | ${
      RATIOS.map(([l]) => {
        const v: Stat | null | undefined = row[l];
        if (!v) return "–";
        const target = l.startsWith("passthrough ÷ nbdkit")
          ? 1
          : l.startsWith("1M remaps") && l.endsWith("÷ passthrough")
          ? 0.98
          : undefined;
        const median = target !== undefined && v.median < target
          ? `**${v.median.toFixed(2)}**`
          : v.median.toFixed(2);
        return `${median} (${v.min.toFixed(2)}–${v.max.toFixed(2)})`;
      }).join(" | ")
    } |`);
  }
  lines.push(
    "",
    "Bold: below the issue's target (passthrough ≥ 1.0 × nbdkit; 1M remaps ≥ 0.98 × passthrough).",
    "",
  );
  lines.push(
    "## p99 completion latency (µs, median of runs; the worse of read/write)",
    "",
    `| workload | ${targets.join(" | ")} |`,
    `| --- | ${targets.map(() => "---").join(" | ")} |`,
  );
  for (const w of workloads) {
    const cells = r.table[w.id] ?? {};
    lines.push(
      `| ${w.id} | ${
        targets.map((t) => cells[t] ? cells[t].p99Us.median.toFixed(0) : "–").join(" | ")
      } |`,
    );
  }
  // Open time and memory.
  const starts = r.serverStarts as ServerStart[];
  const of = (t: string) => starts.filter((s) => s.target === t);
  const pt = of("dmremap"), rm = of("dmremap-1m");
  lines.push("", "## Opening a setup with 1M remaps, and memory per remap", "");
  lines.push(
    `- In-process (bench/make_remaps.ts): openSpares ${
      r.remapBuild.openSparesMs.toFixed(0)
    } ms, openSpares + assembleSetup ${r.remapBuild.assembleMs.toFixed(0)} ms; table ${
      r.remapBuild.tableBytesPerRemap.toFixed(1)
    } B/remap (RemapDevice.tableMemoryBytes), heap+external growth ${
      r.remapBuild.heapGrowthBytesPerRemap.toFixed(1)
    } B/remap, RSS growth ${
      r.remapBuild.rssGrowthBytesPerRemap.toFixed(1)
    } B/remap. Appending the 1M remaps offline took ${r.remapBuild.appendMs.toFixed(0)} ms.`,
  );
  if (pt.length && rm.length) {
    const ready = (xs: ServerStart[]) => stat(xs.map((s) => s.readyMs));
    const rss = (xs: ServerStart[]) => median(xs.map((s) => s.rssAfterStartKiB));
    const rssEnd = (xs: ServerStart[]) => median(xs.map((s) => s.rssBeforeStopKiB));
    const a = ready(pt), b = ready(rm);
    lines.push(
      `- \`dm-remap serve\` spawn → "serving" line: passthrough ${a.median.toFixed(0)} ms (${
        a.min.toFixed(0)
      }–${a.max.toFixed(0)}), 1M remaps ${b.median.toFixed(0)} ms (${b.min.toFixed(0)}–${
        b.max.toFixed(0)
      }); the difference, ${
        (b.median - a.median).toFixed(0)
      } ms, is the cost of the remaps (the rest is Deno start-up and module loading).`,
    );
    lines.push(
      `- Serve RSS right after "serving": passthrough ${
        (rss(pt) / 1024).toFixed(1)
      } MiB, 1M remaps ${(rss(rm) / 1024).toFixed(1)} MiB → ${
        ((rss(rm) - rss(pt)) * 1024 / r.remapBuild.remaps).toFixed(1)
      } B/remap. After the workloads: ${(rssEnd(pt) / 1024).toFixed(1)} vs ${
        (rssEnd(rm) / 1024).toFixed(1)
      } MiB → ${((rssEnd(rm) - rssEnd(pt)) * 1024 / r.remapBuild.remaps).toFixed(1)} B/remap.`,
    );
  }
  if (r.extras) {
    const rc = r.extras.remapCommit;
    lines.push(
      "",
      "## Remap commit latency",
      "",
      "Every 4 KiB block of the first 32 MiB fails writes; fio writes each block once (random map), so each write waits for its block's remap: compose, slot write, spare flush, log append, log flush (group commit).",
      "",
      "| case | write IOPS | clat p50 µs | clat p99 µs |",
      "| --- | --- | --- | --- |",
    );
    if (failure(rc)) lines.push("", failure(rc)!);
    else {for (const [k, v] of Object.entries(rc) as [string, FioResult][]) {
        lines.push(
          `| ${k} | ${v.writeIops.toFixed(0)} | ${v.writeClatP50Us.toFixed(0)} | ${
            v.writeClatP99Us.toFixed(0)
          } |`,
        );
      }}
    lines.push(
      "",
      "## Flush cost",
      "",
      "fio randwrite 4 KiB QD1 with `fsync=1` (an NBD_CMD_FLUSH after every write); `sync` latency is the flush round trip.",
      "",
      "| target | write IOPS | flush p50 µs | flush p99 µs | flush mean µs |",
      "| --- | --- | --- | --- | --- |",
    );
    if (failure(r.extras.flush)) lines.push("", failure(r.extras.flush)!);
    else {for (const [k, v] of Object.entries(r.extras.flush) as [string, FioResult][]) {
        lines.push(
          `| ${k} | ${v.writeIops.toFixed(0)} | ${v.syncP50Us?.toFixed(0)} | ${
            v.syncP99Us?.toFixed(0)
          } | ${v.syncMeanUs?.toFixed(0)} |`,
        );
      }}
  }
  if (failure(r.profiles)) {
    lines.push("", "## Where the server's CPU goes", "", failure(r.profiles)!);
  } else if (r.profiles.length) {
    lines.push(
      "",
      "## Where the server's CPU goes (perf, every thread of the server)",
      "",
      `\`perf record -F 999 -p PID\` for ${PROFILE_SECONDS} s after fio's 1 s ramp, one fresh server per row, run after the matrix. ` +
        "CPU per request is the server's CPU time in the window divided by the requests fio completed there at its mean rate; " +
        "a 1 MiB request is one MiB. Shares: kernel, JS (JIT-compiled code), the Deno runtime's own code, libc.",
      "",
      "| target | workload | throughput | server CPU, % of a core | CPU µs per request | kernel % | JS % | runtime % | libc % |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    );
    for (const p of r.profiles as ProfileReport[]) {
      const throughput = p.workload.includes("-1m-")
        ? `${(p.bytesPerS / 1e6).toFixed(0)} MB/s`
        : `${(p.iops / 1000).toFixed(1)}K IOPS`;
      lines.push(
        `| ${p.target} | ${p.workload} | ${throughput} | ${
          (p.cpuMs / PROFILE_SECONDS / 10).toFixed(0)
        } | ${p.cpuUsPerRequest.toFixed(1)} | ${p.shares.kernel.toFixed(0)} | ${
          p.shares.js.toFixed(0)
        } | ${p.shares.runtime.toFixed(0)} | ${p.shares.libc.toFixed(0)} |`,
      );
    }
    for (const p of r.profiles as ProfileReport[]) {
      lines.push(
        "",
        `### ${p.target}, ${p.workload}: symbols above 1.5 %`,
        "",
        "```",
        ...p.top,
        "```",
      );
    }
  }
  return lines.join("\n") + "\n";
}

await main();

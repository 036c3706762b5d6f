/**
 * `dm-remap assemble` in one place: discover, decide (`assembly_plan.ts`),
 * start, under one lock so two assemblies never start a setup twice.
 *
 * State under the runtime directory (/run/dm-remap):
 *
 * | path                        | what                                                        |
 * | --------------------------- | ----------------------------------------------------------- |
 * | `assemble.lock`             | `flock`ed around discover + decide + start                  |
 * | `assembled/<uuid>.json`     | a setup this machine's assemble started: process or unit     |
 * | `incremental/<uuid>.json`   | `--incremental`: which spare indexes have been seen, where   |
 *
 * A setup counts as running when its serving marker names a live process,
 * when a start record names a live process or an active unit, or when one of
 * its spares is held by another process (a running `serve` holds an
 * exclusive lock on a file spare and opens a block spare with `O_EXCL`).
 *
 * Nothing here writes to a disk: starting is the starter's job (a detached
 * `serve`, or systemd), and the server does its own checks again.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { ASSEMBLE_LOCK_WAIT_MS_MAX } from "../constants.ts";
import { heldByAnotherProcess } from "../device/device_users.ts";
import { ERRNO, FileDescriptor, OPEN_FLAGS, openPath } from "../sys/libc.ts";
import {
  type AssemblyDecision,
  type AssemblyPlan,
  decideAssembly,
  type DecideAssemblyOptions,
} from "./assembly_plan.ts";
import type { DiscoveryReport, SetupFinding } from "./discovery_report.ts";
import type { KernelExportDecision } from "./kernel_export_choice.ts";

/** How a setup was started: a process of its own, or a systemd unit. */
export interface StartRecord {
  name: string;
  startedMs: number;
  pid?: number;
  unit?: string;
  /** The kernel device given to a `serve` started as a process, and why. */
  kernelExport?: KernelExportDecision;
}

/** Starts one setup; returns what runs it now. */
export type SetupStarter = (decision: AssemblyDecision) => Promise<Omit<StartRecord, "startedMs">>;

/** What to assemble. */
export type AssembleMode =
  | { kind: "scan" }
  | { kind: "named"; names: readonly string[] }
  | { kind: "incremental"; device: string };

/** Options for {@link assembleSetups}. */
export interface AssembleSetupsOptions {
  mode: AssembleMode;
  /** Decide and report only: start nothing, record nothing under the runtime directory. */
  dryRun: boolean;
  /** The confidence a setup needs, 0-100. */
  threshold: number;
  /** Discovers setups on these paths, or on every candidate. */
  discover: (paths?: readonly string[]) => Promise<DiscoveryReport>;
  starter: SetupStarter;
  /** Where the lock and records live (/run/dm-remap). */
  runtimeDirectory: string;
  /** Whether what a start record names still runs (a process, or an active unit). */
  isStartAlive: (record: StartRecord) => Promise<boolean>;
}

/** What `--incremental` did with its device. */
export interface IncrementalNote {
  device: string;
  /** `recorded`: a spare, recorded; `not-a-spare`: nothing recorded. */
  outcome: "recorded" | "not-a-spare";
  setupUuid?: string;
  setupName?: string;
  spareIndex?: number;
  /** Spare indexes seen so far, and how many the setup has. */
  seen?: number[];
  expected?: number;
  /** Why not a spare (its discovery status and reason). */
  reason?: string;
}

/** What an assembly did. */
export interface AssembleOutcome extends AssemblyPlan {
  /** What runs each started setup, by UUID. */
  started: Record<string, StartRecord>;
  incremental?: IncrementalNote;
  /** The discovery the decisions came from (absent while `--incremental` still waits). */
  report?: DiscoveryReport;
}

/**
 * Discovers, decides and starts, holding the assemble lock throughout. With
 * `--incremental`, the one device is probed before the lock is taken (udev
 * runs many at once at boot; they queue only for the record and the start).
 *
 * @throws {Error} When the lock stays taken for {@link ASSEMBLE_LOCK_WAIT_MS_MAX}.
 */
export async function assembleSetups(options: AssembleSetupsOptions): Promise<AssembleOutcome> {
  await Deno.mkdir(options.runtimeDirectory, { recursive: true });
  const device = options.mode.kind === "incremental" ? options.mode.device : undefined;
  const deviceReport = device === undefined ? undefined : await options.discover([device]);
  return await withExclusiveLock(
    `${options.runtimeDirectory}/assemble.lock`,
    () => assembleLocked(options, deviceReport),
  );
}

async function assembleLocked(
  options: AssembleSetupsOptions,
  deviceReport: DiscoveryReport | undefined,
): Promise<AssembleOutcome> {
  let selection: DecideAssemblyOptions["selection"] = { kind: "all" };
  let incremental: IncrementalNote | undefined;
  if (options.mode.kind === "named") selection = { kind: "named", names: options.mode.names };
  if (options.mode.kind === "incremental") {
    assert(deviceReport !== undefined, "the incremental device was probed");
    incremental = await recordIncremental(options.mode.device, { report: deviceReport, options });
    const complete = incremental.seen !== undefined &&
      incremental.seen.length === incremental.expected;
    if (!complete) return { decisions: [], notFound: [], started: {}, incremental };
    selection = { kind: "named", names: [incremental.setupUuid!] };
  }
  const report = await options.discover();
  const running = new Map<string, string>();
  for (const setup of report.setups) {
    const reason = await runningReasonOf(setup, options);
    if (reason !== undefined) running.set(setup.uuid, reason);
  }
  const plan = decideAssembly(report, {
    threshold: options.threshold,
    selection,
    runningReason: (setup) => running.get(setup.uuid),
  });
  const started = options.dryRun ? {} : await startAll(plan.decisions, options);
  return { ...plan, started, incremental, report };
}

/**
 * Starts every setup decided `start`, recording each start; a start that
 * fails turns its decision into `start-failed` with the error, and the others go on.
 */
async function startAll(
  decisions: AssemblyDecision[],
  options: AssembleSetupsOptions,
): Promise<Record<string, StartRecord>> {
  const started: Record<string, StartRecord> = {};
  for (const decision of decisions.filter((d) => d.action === "start")) {
    let record: StartRecord;
    try {
      record = { ...await options.starter(decision), startedMs: Date.now() };
    } catch (error) {
      decision.action = "start-failed";
      decision.reasons = [(error as Error).message, ...decision.reasons];
      continue;
    }
    await writeJson(`${options.runtimeDirectory}/assembled/${decision.uuid}.json`, record);
    started[decision.uuid] = record;
  }
  return started;
}

/** Who runs the setup, or undefined when nothing does. */
async function runningReasonOf(
  setup: SetupFinding,
  options: AssembleSetupsOptions,
): Promise<string | undefined> {
  if (setup.lastStop === "serving") {
    return `being served by process ${setup.servingPid} (its spares' serving marker)`;
  }
  const record = await readJson<StartRecord>(
    `${options.runtimeDirectory}/assembled/${setup.uuid}.json`,
  );
  if (record !== undefined && await options.isStartAlive(record)) {
    const what = record.unit ?? `process ${record.pid}`;
    return `started by assemble as ${what} at ${new Date(record.startedMs).toISOString()}`;
  }
  for (const spare of setup.spares) {
    if (spare.found !== undefined && heldByAnotherProcess(spare.found.path)) {
      return `spare "${spare.found.path}" is held exclusively by another process (a running ` +
        `serve, or a mount or program that must let it go first)`;
    }
  }
  return undefined;
}

/** Records the device if it is a spare; says which indexes of its setup have been seen. */
async function recordIncremental(
  device: string,
  context: { report: DiscoveryReport; options: AssembleSetupsOptions },
): Promise<IncrementalNote> {
  const { report, options } = context;
  const candidate = report.candidates.find((found) => found.path === device);
  const setup = report.setups.find((found) => found.uuid === candidate?.setupUuid);
  if (candidate?.status !== "spare" || setup === undefined) {
    return {
      device,
      outcome: "not-a-spare",
      reason: `${candidate?.status ?? "not probed"}${
        candidate?.reason ? `: ${candidate.reason}` : ""
      }`,
    };
  }
  const path = `${options.runtimeDirectory}/incremental/${setup.uuid}.json`;
  const seen = (await readJson<{ seen: Record<string, string> }>(path))?.seen ?? {};
  seen[String(candidate.spareIndex)] = device;
  if (!options.dryRun) await writeJson(path, { name: setup.name, seen });
  return {
    device,
    outcome: "recorded",
    setupUuid: setup.uuid,
    setupName: setup.name,
    spareIndex: candidate.spareIndex,
    seen: Object.keys(seen).map(Number).sort((a, b) => a - b),
    expected: setup.sparesExpected,
  };
}

/**
 * Runs `body` holding an exclusive `flock` on `path` (created if missing),
 * waiting for another holder up to {@link ASSEMBLE_LOCK_WAIT_MS_MAX}.
 */
export async function withExclusiveLock<T>(path: string, body: () => Promise<T>): Promise<T> {
  await (await Deno.open(path, { create: true, append: true })).close();
  const fd = openPath(path, OPEN_FLAGS.O_RDONLY);
  if (fd < 0) throw new Error(`Cannot open the lock file "${path}": errno ${-fd}`);
  const descriptor = new FileDescriptor(fd);
  try {
    const deadlineMs = Date.now() + ASSEMBLE_LOCK_WAIT_MS_MAX;
    for (
      let result = descriptor.lockExclusive();
      result !== 0;
      result = descriptor.lockExclusive()
    ) {
      if (result !== -ERRNO.EAGAIN || Date.now() > deadlineMs) {
        throw new Error(
          `Cannot take the lock "${path}": ` +
            (result === -ERRNO.EAGAIN ? "another assemble holds it" : `errno ${-result}`),
        );
      }
      await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
    }
    return await body();
  } finally {
    descriptor.close();
  }
}

/** How often a waiting assemble tries the lock again. */
const LOCK_POLL_MS = 25;

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path)) as T;
  } catch {
    return undefined;
  }
}

/** Writes through a temporary file and a rename, so a reader never sees half a record. */
async function writeJson(path: string, value: unknown): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(`${path}.tmp`, JSON.stringify(value));
  await Deno.rename(`${path}.tmp`, path);
}

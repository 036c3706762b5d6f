/**
 * Probing discovery candidates on worker threads, each probe with a deadline.
 *
 * A read from a dead disk can block in the kernel for minutes, and nothing in
 * the process can interrupt it. So every probe runs on a worker (a small
 * pool, {@link PROBE_WORKERS_MAX} at a time); when a probe passes its
 * deadline the candidate is reported "timed out", its worker is abandoned
 * (terminated; a thread stuck in the kernel stays stuck, but nobody waits for
 * it) and a fresh worker takes the next candidate. The command then prints
 * and exits without waiting for the stuck read.
 *
 * Workers start from the program's own main module (`main.ts`, or the
 * single-file bundle), named {@link PROBE_WORKER_NAME} so it knows to run
 * {@link runProbeWorker}: the bundle needs no second file.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { PROBE_WORKER_START_MS_MAX, PROBE_WORKERS_MAX } from "../constants.ts";
import { type CandidateProbe, probeCandidate } from "./candidate_probe.ts";
import { PROBE_WORKER_NAME } from "./probe_worker_name.ts";

/** The outcome of one candidate's probe. */
export interface ProbeOutcome {
  path: string;
  /** From handing the path to a worker to its answer (or to the deadline). */
  elapsedMs: number;
  /** What was found; absent when the probe timed out. */
  probe?: CandidateProbe;
  timedOut: boolean;
}

/** Probes a list of paths; one outcome per path, in the same order. */
export type Prober = (paths: readonly string[]) => Promise<ProbeOutcome[]>;

/** Options for {@link probeInWorkers}. */
export interface ProbeInWorkersOptions {
  /** The module the workers run: the program's main module. */
  workerUrl: URL;
  /** A probe's deadline. */
  timeoutMs: number;
  /** Workers at once. @default PROBE_WORKERS_MAX */
  workersMax?: number;
}

/**
 * A message from a probe worker: `ready` once it listens (a message posted
 * before then could be lost while the main module still loads), then the
 * probe of each path it was given.
 */
type ProbeReply = { type: "ready" } | { type: "probe"; probe: CandidateProbe };

/**
 * Probes every path on a pool of workers, each probe within `timeoutMs` from
 * the moment its worker takes it.
 *
 * @returns One outcome per path, in the order of `paths`.
 * @throws {Error} When a worker cannot start (a wrong `workerUrl`), or does
 * not start within {@link PROBE_WORKER_START_MS_MAX}.
 */
export function probeInWorkers(
  paths: readonly string[],
  options: ProbeInWorkersOptions,
): Promise<ProbeOutcome[]> {
  assert(options.timeoutMs > 0, "a probe deadline");
  return new Promise((resolve, reject) => {
    const pool = new ProbePool(paths, options, { resolve, reject });
    pool.start(options.workersMax ?? PROBE_WORKERS_MAX);
  });
}

/** How the pool ends {@link probeInWorkers}' promise. */
interface PoolSettle {
  resolve: (outcomes: ProbeOutcome[]) => void;
  reject: (error: Error) => void;
}

/** The shared queue of {@link probeInWorkers} and the workers that take from it. */
class ProbePool {
  readonly #paths: readonly string[];
  readonly #unique: string[];
  readonly #options: ProbeInWorkersOptions;
  readonly #settle: PoolSettle;
  readonly #outcomes = new Map<string, ProbeOutcome>();
  #nextIndex = 0;

  constructor(
    paths: readonly string[],
    options: ProbeInWorkersOptions,
    settle: PoolSettle,
  ) {
    this.#paths = paths;
    this.#unique = [...new Set(paths)];
    this.#options = options;
    this.#settle = settle;
  }

  start(workersMax: number): void {
    const workerCount = Math.min(this.#unique.length, workersMax);
    for (let i = 0; i < workerCount; i++) this.#startWorker();
    this.#finishIfDone();
  }

  #finishIfDone(): void {
    if (this.#outcomes.size !== this.#unique.length) return;
    this.#settle.resolve(this.#paths.map((path) => this.#outcomes.get(path)!));
  }

  #startWorker(): void {
    const worker = new Worker(this.#options.workerUrl, { type: "module", name: PROBE_WORKER_NAME });
    let current: { path: string; startMs: number; timer: ReturnType<typeof setTimeout> };
    const fail = (message: string) => {
      clearTimeout(current?.timer);
      worker.terminate();
      this.#settle.reject(new Error(`A discovery probe worker failed: ${message}`));
    };
    const startTimer = setTimeout(() => fail("it did not start"), PROBE_WORKER_START_MS_MAX);
    const takeNext = () => {
      const path = this.#unique[this.#nextIndex++];
      if (path === undefined) {
        worker.terminate();
        return this.#finishIfDone();
      }
      const startMs = performance.now();
      const timer = setTimeout(() => {
        this.#outcomes.set(path, { path, elapsedMs: performance.now() - startMs, timedOut: true });
        // Abandoned: a read stuck in the kernel cannot be interrupted, only left behind.
        worker.terminate();
        if (this.#nextIndex < this.#unique.length) this.#startWorker();
        this.#finishIfDone();
      }, this.#options.timeoutMs);
      current = { path, startMs, timer };
      worker.postMessage({ path });
    };
    worker.onmessage = (event: MessageEvent<ProbeReply>) => {
      if (event.data.type === "ready") {
        clearTimeout(startTimer);
        return takeNext();
      }
      assert(event.data.probe.path === current.path, "one probe at a time per worker");
      clearTimeout(current.timer);
      const elapsedMs = performance.now() - current.startMs;
      this.#outcomes.set(current.path, {
        path: current.path,
        elapsedMs,
        probe: event.data.probe,
        timedOut: false,
      });
      takeNext();
    };
    worker.onerror = (event) => {
      event.preventDefault();
      clearTimeout(startTimer);
      fail(event.message);
    };
  }
}

/** Probes in this thread, one path after another, without a deadline: for tests and tools. */
export async function probeInProcess(paths: readonly string[]): Promise<ProbeOutcome[]> {
  const outcomes: ProbeOutcome[] = [];
  for (const path of paths) {
    const startMs = performance.now();
    const probe = await probeCandidate(path);
    outcomes.push({ path, elapsedMs: performance.now() - startMs, probe, timedOut: false });
  }
  return outcomes;
}

/** The body of a probe worker: probes each path it is sent and replies with what it found. */
export function runProbeWorker(): void {
  const scope = globalThis as unknown as {
    onmessage: ((event: MessageEvent<{ path: string }>) => void) | null;
    postMessage(message: ProbeReply): void;
  };
  scope.onmessage = async (event) => {
    const path = event.data.path;
    const probe = await probeCandidate(path).catch((error: unknown) => ({
      path,
      validCopies: 0,
      invalidReasons: [],
      error: (error as Error).message,
    }));
    scope.postMessage({ type: "probe", probe });
  };
  scope.postMessage({ type: "ready" });
}

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

/** Options for {@link ProbePool}. */
export interface ProbePoolOptions {
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

/** One call's paths and the outcomes found so far. */
interface ProbeBatch {
  paths: readonly string[];
  pending: number;
  outcomes: Map<string, ProbeOutcome>;
  resolve: (outcomes: ProbeOutcome[]) => void;
  reject: (error: Error) => void;
}

/** A worker of the pool, and the path it probes now. */
interface PoolWorker {
  worker: Worker;
  ready: boolean;
  current?: {
    path: string;
    batch: ProbeBatch;
    startMs: number;
    timer: ReturnType<typeof setTimeout>;
  };
}

/**
 * Workers that probe paths, each probe within `timeoutMs` from the moment
 * its worker takes it. Workers are kept between calls of {@link ProbePool.probe}
 * (discovery probes twice: the candidates, then recorded main-disk paths), so
 * a worker's start (loading the program) is paid once; {@link ProbePool.close}
 * ends them. A worker that cannot start (a wrong `workerUrl`), or does not
 * within {@link PROBE_WORKER_START_MS_MAX} (or the probe timeout, when longer), fails the
 * calls waiting on it.
 */
export class ProbePool {
  readonly #options: ProbePoolOptions;
  readonly #workers = new Set<PoolWorker>();
  readonly #queue: { path: string; batch: ProbeBatch }[] = [];

  constructor(options: ProbePoolOptions) {
    assert(options.timeoutMs > 0, "a probe deadline");
    this.#options = options;
  }

  /** Probes `paths`; one outcome per path, in order. */
  probe(paths: readonly string[]): Promise<ProbeOutcome[]> {
    const unique = [...new Set(paths)];
    if (unique.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const batch = { paths, pending: unique.length, outcomes: new Map(), resolve, reject };
      for (const path of unique) this.#queue.push({ path, batch });
      this.#pump();
    });
  }

  /** Ends every worker, idle or stuck. */
  close(): void {
    for (const member of this.#workers) this.#drop(member);
  }

  /** Gives queued paths to idle workers, and starts workers for the rest. */
  #pump(): void {
    for (const member of this.#workers) {
      if (member.ready && member.current === undefined) this.#takeNext(member);
    }
    const starting = [...this.#workers].filter((member) => !member.ready).length;
    const room = (this.#options.workersMax ?? PROBE_WORKERS_MAX) - this.#workers.size;
    for (let i = 0; i < Math.min(room, this.#queue.length - starting); i++) this.#startWorker();
  }

  #takeNext(member: PoolWorker): void {
    const next = this.#queue.shift();
    if (next === undefined) return;
    const { path, batch } = next;
    const startMs = performance.now();
    const timer = setTimeout(() => {
      // Abandoned: a read stuck in the kernel cannot be interrupted, only left behind.
      this.#drop(member);
      this.#settle(batch, { path, elapsedMs: performance.now() - startMs, timedOut: true });
      this.#pump();
    }, this.#options.timeoutMs);
    member.current = { path, batch, startMs, timer };
    member.worker.postMessage({ path });
  }

  #settle(batch: ProbeBatch, outcome: ProbeOutcome): void {
    batch.outcomes.set(outcome.path, outcome);
    if (--batch.pending === 0) batch.resolve(batch.paths.map((path) => batch.outcomes.get(path)!));
  }

  #drop(member: PoolWorker): void {
    clearTimeout(member.current?.timer);
    member.worker.terminate();
    this.#workers.delete(member);
  }

  #startWorker(): void {
    const worker = new Worker(this.#options.workerUrl, { type: "module", name: PROBE_WORKER_NAME });
    const member: PoolWorker = { worker, ready: false };
    this.#workers.add(member);
    const fail = (message: string) => {
      const batches = new Set([member.current?.batch, ...this.#queue.map((entry) => entry.batch)]);
      this.close();
      this.#queue.length = 0;
      const error = new Error(`A discovery probe worker failed: ${message}`);
      for (const batch of batches) batch?.reject(error);
    };
    // A worker gets at least as long to start as a probe gets to answer: a caller that allows
    // slow probes (the boot units, under emulation) is on a machine where loading is slow too.
    const startTimer = setTimeout(
      () => fail("it did not start"),
      Math.max(PROBE_WORKER_START_MS_MAX, this.#options.timeoutMs),
    );
    worker.onmessage = (event: MessageEvent<ProbeReply>) => {
      if (event.data.type === "ready") {
        clearTimeout(startTimer);
        member.ready = true;
        return this.#takeNext(member);
      }
      const current = member.current;
      assert(current?.path === event.data.probe.path, "one probe at a time per worker");
      clearTimeout(current.timer);
      member.current = undefined;
      const elapsedMs = performance.now() - current.startMs;
      this.#settle(current.batch, {
        path: current.path,
        elapsedMs,
        probe: event.data.probe,
        timedOut: false,
      });
      this.#takeNext(member);
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

/**
 * The background scanner: reads the whole main disk in passes, finds blocks
 * that are weak (read only on a retry) or slow (far slower than the disk's
 * own baseline) and copies them to a spare while they still read, so the
 * failure never reaches a client.
 *
 * Rules:
 * - It reads only through {@link ScanTarget.scanRead}: never a remapped or
 *   pending block on the main disk, never a write to it. The main disk is
 *   opened with O_DIRECT by `serve`, so scanning evicts nothing from the
 *   page cache.
 * - Relocation goes through the engine's journaled remap path
 *   ({@link ScanTarget.relocate}): copied under the exclusive gate, read
 *   back, compared, then logged, so a client write racing it wins.
 * - A block that cannot be read at all becomes pending (the engine does it),
 *   never invented. At the end of each pass every pending block is read
 *   once more; one that reads again failed only for a while (a flaky block)
 *   and is relocated like a weak one: its main-disk contents are the newest,
 *   since a client write to a pending block is remapped.
 * - Throttling: the rate is capped at the setting when idle and at
 *   SCAN_RATE_BYTES_PER_S_BUSY under load, so it catches up when the disk
 *   goes idle: after each read, the next waits until the read's share of
 *   the rate has passed. While foreground requests are in flight it waits
 *   too, at most SCAN_YIELD_MS_MAX, then reads its smallest chunk; the chunk
 *   halves under load and doubles when idle, between SCAN_CHUNK_SECTORS_MIN
 *   and _MAX. Both waits are one sleep, and looks are few (see
 *   `#waitForTurn`): each wake-up is a turn of the event loop that the
 *   server's CPUs could have spent on clients.
 * - Latency counts only for quiet reads (no foreground request in flight or
 *   started meanwhile): the baseline is learnt from them, and a block is
 *   slow only when it is slow on quiet reads.
 * - Clustering: around a weak or failed block it re-reads the neighbourhood
 *   (SCAN_NEIGHBOURHOOD_BLOCKS each side) first, and every weak block found
 *   there raises its region's risk.
 * - Blocks read one at a time (a failed or weak run, its neighbourhood) are
 *   paced too: it yields to the foreground before each, and reads at most
 *   SCAN_INSPECT_BLOCKS_PER_S_BUSY of them a second under load, so a large
 *   dead region costs the clients no more than a healthy one.
 * - Schedule: with `enabled`, a pass is due `intervalMs` after the last
 *   complete pass ended, or after the setup's creation before the first,
 *   so starting `serve` starts no pass; a pass in progress goes on at once
 *   after a restart. Pass times come from an injectable wall clock.
 * - Its position, pass times, baseline and region records go to the
 *   metadata's `scan` field every SCAN_PERSIST_INTERVAL_MS, at the end of a
 *   pass, at stop, and after findings, at most once per
 *   SCAN_RECORD_WRITE_INTERVAL_MS: the pending blocks found meanwhile go in
 *   the same write (the engine's background lane, behind client remaps). A
 *   restart goes on from there.
 *
 * @module
 */

import { alignedBytes } from "../aligned_bytes.ts";
import { assert } from "../assert.ts";
import {
  SCAN_BASELINE_READS_MIN,
  SCAN_CHUNK_SECTORS_MAX,
  SCAN_CHUNK_SECTORS_MIN,
  SCAN_IDLE_AFTER_MS,
  SCAN_INSPECT_BLOCKS_PER_S_BUSY,
  SCAN_NEIGHBOURHOOD_BLOCKS,
  SCAN_PERSIST_INTERVAL_MS,
  SCAN_RATE_BYTES_PER_S_BUSY,
  SCAN_RATE_WINDOW_MS,
  SCAN_RECORD_WRITE_INTERVAL_MS,
  SCAN_SCHEDULE_CHECK_MS,
  SCAN_SLOW_CONFIRM_READS,
  SCAN_SLOW_FACTOR,
  SCAN_SLOW_FLOOR_MS,
  SCAN_YIELD_MS_MAX,
  SCAN_YIELD_POLL_MS,
  SECTOR_BYTES,
} from "../constants.ts";
import type { ByteRange } from "../device/device.ts";
import type { ScanEvent } from "../events/setup_event.ts";
import type { SparePoolForecast } from "../health/forecast.ts";
import type { SmartReading } from "../health/smart_report.ts";
import type { SmartRisk } from "../health/smart_risk.ts";
import type { ScanRun } from "../remap/remap_device.ts";
import {
  emptyRegionRecord,
  judgeRegion,
  judgeSetup,
  type RegionHealth,
  type RegionRecord,
  regionScore,
  type SetupHealth,
} from "./region_health.ts";
import { regionsToRecord, type ScanRecord, type ScanSettings } from "./scan_record.ts";

/** What the scanner needs of the engine (a `RemapDevice`). */
export interface ScanTarget {
  readonly sizeBytes: number;
  readonly blockBytes: number;
  readonly foregroundInFlight: number;
  readonly foregroundRequests: number;
  readonly pendingBlocks: readonly number[];
  scanRead(range: ByteRange, buffer: Uint8Array): Promise<ScanRun[]>;
  relocate(blockIndex: number): Promise<boolean>;
  isPending(blockIndex: number): boolean;
  markPending(blockIndexes: readonly number[]): void;
  probePending(blockIndex: number, buffer: Uint8Array): Promise<boolean>;
  recordScan(record: Record<string, unknown>): Promise<void>;
}

/** Options of {@link Scanner}. */
export interface ScannerOptions {
  settings: ScanSettings;
  /** What the metadata holds from before. @default none (start at 0) */
  recorded?: ScanRecord;
  /** Receives relocations and completed passes. @default ignore */
  onEvent?: (event: ScanEvent) => void;
  /** Receives errors that stopped a pass (a failed disk). @default ignore */
  onError?: (error: unknown) => void;
  /** How often the position is written. @default SCAN_PERSIST_INTERVAL_MS */
  persistIntervalMs?: number;
  /** Extra latency any read may take before it is slow. @default SCAN_SLOW_FLOOR_MS */
  slowFloorMs?: number;
  /** When the setup was created: the first pass is due an interval later. @default now */
  createdMs?: number;
  /** The wall clock of pass times and the schedule. @default Date.now */
  now?: () => number;
  /** How often the waiting scanner reads the clock again. @default SCAN_SCHEDULE_CHECK_MS */
  scheduleCheckMs?: number;
}

/** What the scanner is doing. */
export type ScanState = "scanning" | "waiting" | "paused" | "stopped";

/** The scanner's status for the API and `dm-remap scan status`. */
export interface ScanStatus {
  state: ScanState;
  settings: ScanSettings;
  sizeBytes: number;
  positionBytes: number;
  /** Of the pass in progress (0 between passes). */
  progressRatio: number;
  /** Bytes per second over the last chunks read. */
  rateBytesPerS: number;
  /** Seconds to the end of the pass at the current rate, while scanning. */
  etaSeconds?: number;
  passStartedMs?: number;
  lastPassStartedMs?: number;
  lastPassCompletedMs?: number;
  /** When the next pass starts on its own, while waiting with the schedule on. */
  nextPassDueMs?: number;
  passesCompleted: number;
  chunkSectors: number;
  baselineMsPerMiB?: number;
  /** Since this server started. */
  bytesScanned: number;
  relocations: number;
  /** Chunks the scanner held back for the foreground: it waited, or shrank and slowed. */
  yields: number;
  /** Bad blocks (unreadable, read only on a retry, or slow) the pass in progress found. */
  findingsThisPass: number;
  /** Bad blocks the last complete pass found. */
  findingsLastPass: number;
}

/** The health report `dm-remap health` shows. */
export interface HealthReport {
  setup: SetupHealth;
  /** Every region, worst first. */
  regions: RegionHealth[];
  scan: ScanStatus;
  /**
   * SMART of the setup's disks, and the spare-pool forecast: the service
   * adds them (`mod/service/status_source.ts`, with the main disk's SMART
   * risk in `setup`); the scanner alone has neither, and null means off.
   */
  smart: SmartDiskRisk[] | null;
  forecast: SparePoolForecast | null;
}

/** One disk's SMART as the health report shows it (the SMART reader's view of a disk). */
export interface SmartDiskRisk {
  /** `main` or `spare N`. */
  role: string;
  path: string;
  /** The setup's path when `path` is a disk under it. */
  under?: string;
  reading?: SmartReading;
  risk?: SmartRisk;
}

/** What a look at one block found. */
type BlockFinding = "ok" | "skipped" | "retried" | "slow" | "unreadable";

/** The background scanner of one setup; a service component. */
export class Scanner {
  readonly #target: ScanTarget;
  readonly #settings: ScanSettings;
  readonly #onEvent: (event: ScanEvent) => void;
  readonly #onError: (error: unknown) => void;
  readonly #persistIntervalMs: number;
  readonly #slowFloorMs: number;
  readonly #createdMs: number;
  readonly #now: () => number;
  readonly #scheduleCheckMs: number;
  readonly #regions = new Map<number, RegionRecord>();
  readonly #buffer: Uint8Array;
  #positionBytes = 0;
  #passStartedMs: number | undefined;
  #lastPassStartedMs: number | undefined;
  #lastPassCompletedMs: number | undefined;
  #passesCompleted = 0;
  #baselineMsPerByte: number | undefined;
  /** Quiet clean reads the baseline was learnt from (a recorded baseline counts as learnt). */
  #baselineReads = 0;
  #state: ScanState = "stopped";
  #chunkSectors = SCAN_CHUNK_SECTORS_MIN;
  #rateBytesPerS = 0;
  /** Bytes read since the window started; reset after a pause. */
  #rateWindow: { startMs: number; bytes: number } | undefined;
  #bytesScanned = 0;
  #relocations = 0;
  #yields = 0;
  #findingsThisPass = 0;
  #findingsLastPass = 0;
  /** The first wait for a busy foreground: SCAN_YIELD_POLL_MS, or SCAN_YIELD_MS_MAX after a wait it never drained in. */
  #firstYieldWaitMs = SCAN_YIELD_POLL_MS;
  /** When (performance.now()) the rate cap lets the next read start: the last read's share has passed. */
  #nextReadMs = 0;
  #lastForegroundRequests = 0;
  #lastForegroundChangeMs = 0;
  #lastPersistMs = 0;
  /** Blocks read alone that failed, not yet marked pending: marked together. */
  #unreadable: number[] = [];
  /** Findings not yet written: written once SCAN_RECORD_WRITE_INTERVAL_MS has passed. */
  #findingsUnwritten = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #stopping = false;

  constructor(target: ScanTarget, options: ScannerOptions) {
    this.#target = target;
    this.#settings = options.settings;
    this.#onEvent = options.onEvent ?? (() => {});
    this.#onError = options.onError ?? (() => {});
    this.#persistIntervalMs = options.persistIntervalMs ?? SCAN_PERSIST_INTERVAL_MS;
    this.#slowFloorMs = options.slowFloorMs ?? SCAN_SLOW_FLOOR_MS;
    this.#now = options.now ?? Date.now;
    this.#createdMs = options.createdMs ?? this.#now();
    this.#scheduleCheckMs = options.scheduleCheckMs ?? SCAN_SCHEDULE_CHECK_MS;
    this.#buffer = alignedBytes(
      Math.max(SCAN_CHUNK_SECTORS_MAX * SECTOR_BYTES, target.blockBytes),
    );
    this.#restore(options.recorded);
  }

  /** Starts the loop: a pass in progress goes on, else the next one starts when due. */
  start(): Promise<void> {
    assert(this.#loop === undefined, "a scanner starts once");
    this.#state = this.#passStartedMs !== undefined && this.#settings.enabled
      ? "scanning"
      : "waiting";
    this.#lastPersistMs = Date.now();
    this.#loop = this.#run().catch((error) => {
      this.#state = "stopped";
      this.#onError(error);
    });
    return Promise.resolve();
  }

  /** Stops the loop after the chunk in flight and writes the position. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    await this.#loop;
    if (this.#state !== "stopped") {
      this.#state = "stopped";
      await this.#persist();
    }
  }

  /** `scan start`: a pass starts now, or a paused one goes on. */
  startPass(): void {
    assert(this.#loop !== undefined, "the scanner runs");
    if (this.#state === "stopped" || this.#state === "scanning") return;
    this.#beginPass();
    this.#wake?.();
  }

  /**
   * An early pass, because the main disk's SMART counts rose: starts one now
   * when the scanner waits for its next; a pass running goes on, and one a
   * person paused stays paused.
   * @returns Whether a pass started.
   */
  startEarlyPass(): boolean {
    assert(this.#loop !== undefined, "the scanner runs");
    if (this.#state !== "waiting") return false;
    this.#beginPass();
    this.#wake?.();
    return true;
  }

  /** `scan stop`: the pass pauses where it is (the position is kept) until `scan start`. */
  async stopPass(): Promise<void> {
    if (this.#state !== "scanning" && this.#state !== "waiting") return;
    this.#state = "paused";
    this.#wake?.();
    await this.#persist();
  }

  /** The scanner now. */
  status(): ScanStatus {
    const sizeBytes = this.#target.sizeBytes;
    const scanning = this.#state === "scanning";
    const remaining = sizeBytes - this.#positionBytes;
    const nextPassDueMs = this.#state === "waiting" ? this.#nextPassDueMs() : undefined;
    return {
      state: this.#state,
      settings: { ...this.#settings },
      sizeBytes,
      positionBytes: this.#positionBytes,
      progressRatio: this.#passStartedMs === undefined ? 0 : this.#positionBytes / sizeBytes,
      rateBytesPerS: Math.round(this.#rateBytesPerS),
      ...(scanning && this.#rateBytesPerS > 0
        ? { etaSeconds: Math.ceil(remaining / this.#rateBytesPerS) }
        : {}),
      ...optional("passStartedMs", this.#passStartedMs),
      ...optional("lastPassStartedMs", this.#lastPassStartedMs),
      ...optional("lastPassCompletedMs", this.#lastPassCompletedMs),
      ...optional("nextPassDueMs", nextPassDueMs),
      passesCompleted: this.#passesCompleted,
      chunkSectors: this.#chunkSectors,
      ...optional(
        "baselineMsPerMiB",
        this.#baselineMsPerByte === undefined ? undefined : this.#baselineMsPerByte * 1048576,
      ),
      bytesScanned: this.#bytesScanned,
      relocations: this.#relocations,
      yields: this.#yields,
      findingsThisPass: this.#findingsThisPass,
      findingsLastPass: this.#findingsLastPass,
    };
  }

  /** Every region judged, worst first, and the setup's score. */
  health(): HealthReport {
    const geometry = { regionBytes: this.#settings.regionBytes, diskBytes: this.#target.sizeBytes };
    const regionCount = Math.ceil(this.#target.sizeBytes / this.#settings.regionBytes);
    const regions: RegionHealth[] = [];
    for (let regionIndex = 0; regionIndex < regionCount; regionIndex++) {
      regions.push(judgeRegion(this.#region(regionIndex), geometry));
    }
    regions.sort((a, b) => a.score - b.score || a.regionIndex - b.regionIndex);
    return {
      setup: judgeSetup(regions, this.#target.pendingBlocks.length),
      regions,
      scan: this.status(),
      smart: null,
      forecast: null,
    };
  }

  /** What the metadata's `scan` field holds. */
  record(): ScanRecord {
    return {
      version: 1,
      settings: { ...this.#settings },
      scheduleOnByDefault: true,
      positionBytes: this.#positionBytes,
      ...optional("passStartedMs", this.#passStartedMs),
      ...optional("lastPassStartedMs", this.#lastPassStartedMs),
      ...optional("lastPassCompletedMs", this.#lastPassCompletedMs),
      passesCompleted: this.#passesCompleted,
      ...optional(
        "baselineMsPerMiB",
        this.#baselineMsPerByte === undefined ? undefined : this.#baselineMsPerByte * 1048576,
      ),
      findingsThisPass: this.#findingsThisPass,
      findingsLastPass: this.#findingsLastPass,
      regions: regionsToRecord(this.#regions.values()),
    };
  }

  #restore(recorded: ScanRecord | undefined): void {
    if (recorded === undefined) return;
    const sameRegions = recorded.settings.regionBytes === this.#settings.regionBytes;
    const inside = recorded.positionBytes >= 0 && recorded.positionBytes < this.#target.sizeBytes;
    this.#positionBytes = inside ? recorded.positionBytes : 0;
    this.#passStartedMs = recorded.passStartedMs;
    this.#lastPassStartedMs = recorded.lastPassStartedMs;
    this.#lastPassCompletedMs = recorded.lastPassCompletedMs;
    this.#passesCompleted = recorded.passesCompleted;
    this.#findingsThisPass = recorded.findingsThisPass ?? 0;
    this.#findingsLastPass = recorded.findingsLastPass ?? 0;
    if (recorded.baselineMsPerMiB !== undefined) {
      this.#baselineMsPerByte = recorded.baselineMsPerMiB / 1048576;
      this.#baselineReads = SCAN_BASELINE_READS_MIN;
    }
    // Records of another region size describe other regions: they start over.
    if (!sameRegions) return;
    for (const region of recorded.regions) this.#regions.set(region.regionIndex, { ...region });
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      if (this.#state === "scanning") {
        await this.#scanChunk();
        continue;
      }
      const dueMs = this.#state === "waiting" ? this.#nextPassDueMs() : undefined;
      const nowMs = this.#now();
      if (dueMs !== undefined && dueMs <= nowMs) {
        this.#beginPass();
        continue;
      }
      await this.#sleep(
        dueMs === undefined ? undefined : Math.min(dueMs - nowMs, this.#scheduleCheckMs),
      );
    }
  }

  /**
   * When the next pass starts on its own: an interval after the last
   * complete pass, or after the setup's creation; undefined when passes
   * start only on request. (A pass in progress goes on from start().)
   */
  #nextPassDueMs(): number | undefined {
    if (!this.#settings.enabled) return undefined;
    return (this.#lastPassCompletedMs ?? this.#createdMs) + this.#settings.intervalMs;
  }

  #beginPass(): void {
    this.#state = "scanning";
    this.#rateWindow = undefined;
    // A paused pass goes on from its position; otherwise a new one starts at 0.
    this.#passStartedMs ??= this.#now();
  }

  async #scanChunk(): Promise<void> {
    if (this.#positionBytes >= this.#target.sizeBytes) {
      // Stopped or paused while rechecking: that goes on, then the pass completes.
      if (await this.#recheckPending()) await this.#completePass();
      return;
    }
    const busy = await this.#waitForTurn();
    if (this.#state !== "scanning" || this.#stopping) return;
    if (busy) this.#yields++;
    this.#chunkSectors = busy
      ? Math.max(SCAN_CHUNK_SECTORS_MIN, this.#chunkSectors / 2)
      : Math.min(SCAN_CHUNK_SECTORS_MAX, this.#chunkSectors * 2);
    const blockBytes = this.#target.blockBytes;
    const chunkBytes = Math.ceil(this.#chunkSectors * SECTOR_BYTES / blockBytes) * blockBytes;
    const range = {
      offsetBytes: this.#positionBytes,
      lengthBytes: Math.min(chunkBytes, this.#target.sizeBytes - this.#positionBytes),
    };
    this.#capRate(range.lengthBytes, busy);
    const { runs, quiet } = await this.#read(range);
    const judged = await this.#judgeRuns(runs, quiet);
    // Stopped or paused half-way through its blocks: the chunk is read again.
    if (judged === "interrupted") return;
    if (judged === "found") this.#findingsUnwritten = true;
    this.#markScanned(range);
    this.#positionBytes += range.lengthBytes;
    this.#bytesScanned += range.lengthBytes;
    this.#measureRate(range.lengthBytes);
    if (this.#positionBytes >= this.#target.sizeBytes) {
      // The next turn rechecks the pending blocks and completes the pass.
      return;
    } else if (Date.now() - this.#lastPersistMs >= this.#persistIntervalMs) {
      await this.#persist();
    } else {
      await this.#persistFindings();
    }
  }

  /**
   * Reads every pending block once more, paced like the blocks of a failed
   * run; one that reads again is relocated (it counts as a retried read).
   * @returns False when a stop or pause came first.
   */
  async #recheckPending(): Promise<boolean> {
    for (const blockIndex of this.#target.pendingBlocks) {
      await this.#paceInspection();
      if (this.#stopping || this.#state !== "scanning") return false;
      const startMs = performance.now();
      if (!await this.#target.probePending(blockIndex, this.#buffer)) continue;
      this.#region(this.#regionOf(blockIndex)).retriedReads++;
      this.#findingsUnwritten = true;
      await this.#relocate(blockIndex, {
        reason: "retried",
        latencyMs: performance.now() - startMs,
      });
    }
    return true;
  }

  /** Writes findings not yet written, unless the last write was under SCAN_RECORD_WRITE_INTERVAL_MS ago. */
  async #persistFindings(): Promise<void> {
    if (!this.#findingsUnwritten) return;
    if (Date.now() - this.#lastPersistMs < SCAN_RECORD_WRITE_INTERVAL_MS) return;
    await this.#persist();
  }

  /** Marks the unreadable blocks found so far pending, at once (one event per run of them). */
  #markUnreadable(): void {
    if (this.#unreadable.length === 0) return;
    this.#target.markPending(this.#unreadable);
    this.#unreadable = [];
  }

  /**
   * Before a block read alone: waits for its turn (the foreground, and the
   * rate cap: SCAN_INSPECT_BLOCKS_PER_S_BUSY blocks a second under load),
   * and writes the findings so far when their interval has passed.
   */
  async #paceInspection(): Promise<void> {
    const busy = await this.#waitForTurn();
    if (this.#state !== "scanning" || this.#stopping) return;
    if (busy) this.#yields++;
    const shareMs = busy
      ? 1000 / SCAN_INSPECT_BLOCKS_PER_S_BUSY
      : this.#target.blockBytes / this.#settings.rateMaxBytesPerS * 1000;
    this.#nextReadMs = performance.now() + shareMs;
    if (Date.now() - this.#lastPersistMs >= SCAN_RECORD_WRITE_INTERVAL_MS) this.#markUnreadable();
    await this.#persistFindings();
  }

  /**
   * Waits until the next read may start: the rate cap allows it
   * (`#nextReadMs`) and no foreground request is in flight, or the
   * foreground stayed busy for SCAN_YIELD_MS_MAX.
   *
   * Every look is a wake-up: a turn of the event loop, four syscalls in
   * this runtime (strace: the timer's epoll_wait, two eventfd writes, one
   * more epoll_wait), that the CPUs of a busy server could have spent on
   * clients. So looks are few:
   * - the rate cap's wait and the first wait for the foreground are one sleep;
   * - while the foreground stays busy, each look comes after twice the time
   *   waited so far (first after SCAN_YIELD_POLL_MS, or the cap's wait);
   * - after a wait the foreground never drained in (a deep queue), the next
   *   first wait is SCAN_YIELD_MS_MAX: one sleep, then the read.
   * @returns Whether the foreground is busy: requests in flight, or new ones lately.
   */
  async #waitForTurn(): Promise<boolean> {
    const startMs = performance.now();
    let waited = false;
    let drained = true;
    for (let look = 0;; look++) {
      const nowMs = performance.now();
      const capLeftMs = this.#nextReadMs - nowMs;
      const waitedMs = nowMs - startMs;
      if (this.#target.foregroundInFlight === 0) {
        if (capLeftMs <= 0) break;
        await this.#sleep(capLeftMs);
      } else if (waitedMs >= SCAN_YIELD_MS_MAX) {
        drained = false;
        break;
      } else {
        waited = true;
        const foregroundWaitMs = look === 0 ? this.#firstYieldWaitMs : waitedMs;
        await this.#sleep(
          Math.max(capLeftMs, Math.min(foregroundWaitMs, SCAN_YIELD_MS_MAX - waitedMs)),
        );
      }
      if (this.#stopping || this.#state !== "scanning") return true;
    }
    this.#firstYieldWaitMs = drained ? SCAN_YIELD_POLL_MS : SCAN_YIELD_MS_MAX;
    const requests = this.#target.foregroundRequests;
    if (requests !== this.#lastForegroundRequests) {
      this.#lastForegroundRequests = requests;
      this.#lastForegroundChangeMs = Date.now();
    }
    return waited || Date.now() - this.#lastForegroundChangeMs < SCAN_IDLE_AFTER_MS;
  }

  /** Sets when the read after this one may start: once this one's share of the rate cap has passed. */
  #capRate(lengthBytes: number, busy: boolean): void {
    const rate = busy
      ? Math.min(SCAN_RATE_BYTES_PER_S_BUSY, this.#settings.rateMaxBytesPerS)
      : this.#settings.rateMaxBytesPerS;
    this.#nextReadMs = performance.now() + lengthBytes / rate * 1000;
  }

  /** The rate over windows of SCAN_RATE_WINDOW_MS of scanning: bytes over wall time, sleeps included. */
  #measureRate(lengthBytes: number): void {
    const nowMs = performance.now();
    this.#rateWindow ??= { startMs: nowMs, bytes: 0 };
    this.#rateWindow.bytes += lengthBytes;
    const elapsedMs = nowMs - this.#rateWindow.startMs;
    if (elapsedMs > 0) this.#rateBytesPerS = this.#rateWindow.bytes / (elapsedMs / 1000);
    if (elapsedMs >= SCAN_RATE_WINDOW_MS) this.#rateWindow = { startMs: nowMs, bytes: 0 };
  }

  /**
   * Looks at the runs of one chunk: good runs teach the baseline; a run that
   * needed a retry, was slow or failed is looked at block by block, with
   * the neighbourhood of each bad block.
   * @returns "found" when anything was (worth writing to the metadata),
   *   "interrupted" when a stop or pause came before every block was read.
   */
  async #judgeRuns(
    runs: readonly ScanRun[],
    quiet: boolean,
  ): Promise<"clean" | "found" | "interrupted"> {
    let found = false;
    for (const run of runs) {
      if (run.readable && run.attempts === 1 && !(quiet && this.#isSlow(run))) {
        if (quiet) this.#learnBaseline(run);
        continue;
      }
      found = true;
      const complete = await this.#inspect({
        firstBlock: Math.floor(run.offsetBytes / this.#target.blockBytes),
        endBlock: Math.ceil((run.offsetBytes + run.lengthBytes) / this.#target.blockBytes),
      });
      if (!complete) return "interrupted";
    }
    return found ? "found" : "clean";
  }

  /**
   * Reads blocks one at a time from a worklist: the given span, with the
   * neighbourhood of every bad block found put first. A bad block found in
   * a neighbourhood counts as clustered.
   * @returns False when a stop or pause came first.
   */
  async #inspect(work: { firstBlock: number; endBlock: number }): Promise<boolean> {
    const blockCount = Math.ceil(this.#target.sizeBytes / this.#target.blockBytes);
    const seen = new Set<number>();
    const queue: { blockIndex: number; neighbour: boolean }[] = [];
    for (let blockIndex = work.firstBlock; blockIndex < work.endBlock; blockIndex++) {
      queue.push({ blockIndex, neighbour: false });
    }
    const addNeighbours = (blockIndex: number) => {
      const first = Math.max(0, blockIndex - SCAN_NEIGHBOURHOOD_BLOCKS);
      const end = Math.min(blockCount, blockIndex + SCAN_NEIGHBOURHOOD_BLOCKS + 1);
      // Neighbours go first: bad sectors cluster, so they are the likeliest next.
      for (let neighbour = end - 1; neighbour >= first; neighbour--) {
        if (!seen.has(neighbour)) queue.unshift({ blockIndex: neighbour, neighbour: true });
      }
    };
    while (queue.length > 0) {
      const { blockIndex, neighbour } = queue.shift()!;
      if (seen.has(blockIndex)) continue;
      await this.#paceInspection();
      if (this.#stopping || this.#state !== "scanning") {
        this.#markUnreadable();
        return false;
      }
      seen.add(blockIndex);
      const finding = await this.#inspectBlock(blockIndex);
      if (finding === "ok" || finding === "skipped") continue;
      if (neighbour) this.#region(this.#regionOf(blockIndex)).clusteredBlocks++;
      addNeighbours(blockIndex);
    }
    this.#markUnreadable();
    return true;
  }

  /** Reads one block alone and acts on what it shows. */
  async #inspectBlock(blockIndex: number): Promise<BlockFinding> {
    const blockBytes = this.#target.blockBytes;
    const offsetBytes = blockIndex * blockBytes;
    const lengthBytes = Math.min(blockBytes, this.#target.sizeBytes - offsetBytes);
    const { runs: [run], quiet } = await this.#read({ offsetBytes, lengthBytes });
    if (run === undefined) return "skipped";
    const region = this.#region(this.#regionOf(blockIndex));
    region.lastScannedMs = this.#now();
    if (!run.readable) {
      region.readErrors++;
      this.#findingsThisPass++;
      this.#findingsUnwritten = true;
      this.#unreadable.push(blockIndex);
      return "unreadable";
    }
    const finding: BlockFinding = run.attempts > 1
      ? "retried"
      : quiet && this.#isSlow(run) && await this.#staysSlow(run)
      ? "slow"
      : "ok";
    if (finding === "ok") return finding;
    this.#findingsThisPass++;
    this.#findingsUnwritten = true;
    if (finding === "retried") region.retriedReads++;
    else region.slowReads++;
    await this.#relocate(blockIndex, { reason: finding, latencyMs: run.latencyMs });
    return finding;
  }

  async #relocate(
    blockIndex: number,
    why: { reason: "retried" | "slow"; latencyMs: number },
  ): Promise<void> {
    const moved = await this.#target.relocate(blockIndex);
    if (moved) {
      this.#relocations++;
      this.#region(this.#regionOf(blockIndex)).relocations++;
      this.#onEvent({ type: "relocated", blockIndex, ...why });
      return;
    }
    const reason = this.#target.isPending(blockIndex)
      ? "it could not be read any more (it is pending)"
      : "no spare could take it";
    if (this.#target.isPending(blockIndex)) this.#region(this.#regionOf(blockIndex)).readErrors++;
    this.#onEvent({ type: "relocation-failed", blockIndex, reason });
  }

  /** Reads a block that looked slow again; true when every read is slow too. */
  async #staysSlow(run: ScanRun): Promise<boolean> {
    for (let read = 0; read < SCAN_SLOW_CONFIRM_READS; read++) {
      const { runs: [again], quiet } = await this.#read(run);
      if (again === undefined || !again.readable || !quiet || !this.#isSlow(again)) return false;
    }
    return true;
  }

  /**
   * One scan read, and whether it was quiet: no foreground request was in
   * flight or started while it ran. Only a quiet read's latency says
   * something about the disk; under load every read is late, and judging
   * those would relocate healthy blocks (and stall clients while doing it).
   */
  async #read(range: ByteRange): Promise<{ runs: ScanRun[]; quiet: boolean }> {
    const requestsBefore = this.#target.foregroundRequests;
    const idleBefore = this.#target.foregroundInFlight === 0;
    const runs = await this.#target.scanRead(range, this.#buffer);
    const quiet = idleBefore && this.#target.foregroundInFlight === 0 &&
      this.#target.foregroundRequests === requestsBefore;
    return { runs, quiet };
  }

  #isSlow(run: ScanRun): boolean {
    // Without a baseline every cold read of a starting system would look slow.
    if (this.#baselineReads < SCAN_BASELINE_READS_MIN) return false;
    const expectedMs = (this.#baselineMsPerByte ?? 0) * run.lengthBytes;
    return run.latencyMs > SCAN_SLOW_FACTOR * expectedMs + this.#slowFloorMs;
  }

  /**
   * Learns the baseline: the fastest of the first SCAN_BASELINE_READS_MIN
   * quiet reads (a slow block among them must not set it), then a moving
   * average.
   */
  #learnBaseline(run: ScanRun): void {
    const msPerByte = run.latencyMs / run.lengthBytes;
    const learning = this.#baselineReads < SCAN_BASELINE_READS_MIN;
    this.#baselineReads++;
    this.#baselineMsPerByte = this.#baselineMsPerByte === undefined
      ? msPerByte
      : learning
      ? Math.min(this.#baselineMsPerByte, msPerByte)
      : this.#baselineMsPerByte * 0.9 + msPerByte * 0.1;
  }

  #markScanned(range: ByteRange): void {
    const first = this.#regionOf(Math.floor(range.offsetBytes / this.#target.blockBytes));
    const last = this.#regionOf(
      Math.floor((range.offsetBytes + range.lengthBytes - 1) / this.#target.blockBytes),
    );
    const nowMs = this.#now();
    for (let regionIndex = first; regionIndex <= last; regionIndex++) {
      this.#region(regionIndex).lastScannedMs = nowMs;
    }
  }

  async #completePass(): Promise<void> {
    const nowMs = this.#now();
    const startedMs = this.#passStartedMs ?? nowMs;
    this.#lastPassStartedMs = startedMs;
    this.#lastPassCompletedMs = nowMs;
    this.#passStartedMs = undefined;
    this.#passesCompleted++;
    this.#findingsLastPass = this.#findingsThisPass;
    this.#findingsThisPass = 0;
    this.#positionBytes = 0;
    this.#state = "waiting";
    for (const region of this.#regions.values()) region.scoreAtLastPass = regionScore(region);
    await this.#persist();
    this.#onEvent({
      type: "scan-pass-completed",
      durationMs: nowMs - startedMs,
      bytesScanned: this.#target.sizeBytes,
      score: this.health().setup.score,
    });
  }

  async #persist(): Promise<void> {
    this.#markUnreadable();
    this.#lastPersistMs = Date.now();
    this.#findingsUnwritten = false;
    await this.#target.recordScan(this.record() as unknown as Record<string, unknown>);
  }

  #regionOf(blockIndex: number): number {
    return Math.floor(blockIndex * this.#target.blockBytes / this.#settings.regionBytes);
  }

  /**
   * A region's record, made on first use. Regions never touched in memory
   * take their last scan time from the pass times: scanned in this pass when
   * the position is past them, else at the last complete pass.
   */
  #region(regionIndex: number): RegionRecord {
    let record = this.#regions.get(regionIndex);
    if (record === undefined) {
      record = emptyRegionRecord(regionIndex);
      const regionEnd = (regionIndex + 1) * this.#settings.regionBytes;
      const scannedMs = this.#passStartedMs !== undefined && regionEnd <= this.#positionBytes
        ? this.#passStartedMs
        : this.#lastPassCompletedMs;
      if (scannedMs !== undefined) record.lastScannedMs = scannedMs;
      this.#regions.set(regionIndex, record);
    }
    return record;
  }

  /**
   * Sleeps `ms` (forever when undefined) or until woken by start, stop or a
   * pass command. The timer's delay is rounded up: the runtime truncates a
   * fractional delay, and a timer that fires before its deadline costs one
   * more look (and wake-up) to sleep the rest.
   */
  #sleep(ms: number | undefined): Promise<void> {
    if (this.#stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(done, Math.max(0, Math.ceil(ms)));
      const wake = this.#wake = done;
      function done() {
        clearTimeout(timer);
        resolve();
      }
      void wake;
    });
  }
}

/** `{ [key]: value }` when the value is defined, else nothing: JSON without undefined fields. */
function optional<K extends string, V>(
  key: K,
  value: V | undefined,
): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

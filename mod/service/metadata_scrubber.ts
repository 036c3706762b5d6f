/**
 * The metadata scrub of a running setup: on start (the setup's open) and then
 * every interval (default hourly), every working spare's five copies, its
 * checkpoint and every log sector in use are read, and what is stale or
 * corrupt is rewritten from the newest state (`RemapDevice.scrubMetadata`,
 * which runs `SpareStore.scrub` in the engine's metadata queue), as md's
 * check/repair and ZFS's scrub keep redundancy from rotting unseen.
 *
 * A spare whose scrub fails (a read-back mismatch, a failed write) is tried
 * again after a backoff that doubles from {@link SCRUB_RETRY_BASE_MS}; after
 * {@link SCRUB_RETRIES_MAX} failures in a row its metadata is reported
 * degraded (a `metadata-degraded` event, the status) and it is not scrubbed
 * again until the next start. The spare is not failed in the engine: its
 * slots may still read, and failing it would turn readable data into EIO; it
 * is the operator's to replace.
 *
 * Time is read from an injectable clock, and {@link scrubDue} can be called
 * directly, so tests step through backoffs without waiting.
 *
 * @module
 */

import { assert, AssertionError } from "../assert.ts";
import {
  HEALTH_INTERVAL_MS_MIN,
  SCRUB_INTERVAL_MS_DEFAULT,
  SCRUB_RETRIES_MAX,
  SCRUB_RETRY_BASE_MS,
} from "../constants.ts";
import type { ScrubHealth, SpareScrubHealth } from "../api/status.ts";
import type { HealthEvent } from "../events/setup_event.ts";
import type { ScrubReport } from "../metadata/spare_store.ts";
import type { ServiceComponent } from "./component.ts";

/** What the scrubber works on: the engine. */
export interface ScrubTarget {
  readonly spares: readonly {
    readonly index: number;
    readonly state: "active" | "failed" | "missing" | "draining" | "removed";
  }[];
  /** Undefined when the spare failed meanwhile. */
  scrubMetadata(spareIndex: number): Promise<ScrubReport | undefined>;
}

/** Options of {@link MetadataScrubber}. */
export interface MetadataScrubberOptions {
  /** Between two scrubs of a healthy spare. @default SCRUB_INTERVAL_MS_DEFAULT */
  intervalMs?: number;
  /** The first retry wait; doubled per failure. @default SCRUB_RETRY_BASE_MS */
  retryBaseMs?: number;
  /** Failures in a row before the spare is reported degraded. @default SCRUB_RETRIES_MAX */
  retriesMax?: number;
  /** Receives the scrub's events. */
  publish: (event: HealthEvent) => void;
  /** @default Date.now */
  now?: () => number;
}

/** One spare as the scrub last saw it. */
export type SpareScrubStatus = SpareScrubHealth;

/** The scrub's state for the status API. */
export type ScrubStatus = ScrubHealth;

/** Scrubs the setup's metadata on start and periodically. */
export class MetadataScrubber implements ServiceComponent {
  readonly #target: ScrubTarget;
  readonly #intervalMs: number;
  readonly #retryBaseMs: number;
  readonly #retriesMax: number;
  readonly #publish: (event: HealthEvent) => void;
  readonly #now: () => number;
  readonly #spares = new Map<number, SpareScrubStatus>();
  #passes = 0;
  #lastPassMs: number | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(target: ScrubTarget, options: MetadataScrubberOptions) {
    this.#target = target;
    this.#intervalMs = options.intervalMs ?? SCRUB_INTERVAL_MS_DEFAULT;
    this.#retryBaseMs = options.retryBaseMs ?? SCRUB_RETRY_BASE_MS;
    this.#retriesMax = options.retriesMax ?? SCRUB_RETRIES_MAX;
    this.#publish = options.publish;
    this.#now = options.now ?? Date.now;
    assert(this.#intervalMs >= HEALTH_INTERVAL_MS_MIN, "scrub interval in range");
    assert(this.#retriesMax >= 0 && this.#retriesMax <= SCRUB_RETRIES_MAX, "retries in range");
    for (const spare of target.spares) {
      this.#spares.set(spare.index, {
        spareIndex: spare.index,
        state: "not-yet",
        lastRepairs: [],
        repairsTotal: 0,
        failures: 0,
      });
    }
  }

  /** Scrubs every spare once (the scrub on open), then keeps the schedule. */
  async start(): Promise<void> {
    await this.#run();
  }

  /** Cancels the schedule and waits for a scrub in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** What the scrub found so far. */
  status(): ScrubStatus {
    return {
      intervalMs: this.#intervalMs,
      passes: this.#passes,
      lastPassMs: this.#lastPassMs,
      spares: [...this.#spares.values()].map((spare) => ({
        ...spare,
        lastRepairs: [...spare.lastRepairs],
      })),
    };
  }

  /**
   * Scrubs every spare that is due now (all of them on the first call), one
   * after the other.
   */
  async scrubDue(): Promise<void> {
    const nowMs = this.#now();
    for (const member of this.#target.spares) {
      const spare = this.#spares.get(member.index)!;
      if (member.state !== "active") {
        spare.state = "failed-spare";
        spare.nextScrubMs = undefined;
        continue;
      }
      if (spare.state === "degraded") continue;
      if (spare.nextScrubMs !== undefined && spare.nextScrubMs > nowMs) continue;
      await this.#scrubOne(spare);
    }
    this.#passes++;
    this.#lastPassMs = nowMs;
  }

  async #scrubOne(spare: SpareScrubStatus): Promise<void> {
    try {
      const report = await this.#target.scrubMetadata(spare.spareIndex);
      const nowMs = this.#now();
      if (report === undefined) {
        spare.state = "failed-spare";
        spare.nextScrubMs = undefined;
        return;
      }
      spare.failures = 0;
      spare.lastError = undefined;
      spare.lastScrubMs = nowMs;
      spare.nextScrubMs = nowMs + this.#intervalMs;
      spare.state = report.repairs.length > 0 ? "repaired" : "ok";
      if (report.repairs.length > 0) {
        spare.lastRepairs = report.repairs;
        spare.repairsTotal += report.repairs.length;
        this.#publish({
          type: "metadata-repaired",
          spareIndex: spare.spareIndex,
          repairs: report.repairs,
        });
      }
    } catch (error) {
      // A broken invariant is not a failing spare: it ends the process.
      if (error instanceof AssertionError) throw error;
      this.#failed(spare, error);
    }
  }

  #failed(spare: SpareScrubStatus, error: unknown): void {
    const reason = error instanceof Error ? error.message : String(error);
    const nowMs = this.#now();
    spare.failures++;
    spare.lastError = reason;
    spare.lastScrubMs = nowMs;
    if (spare.failures > this.#retriesMax) {
      spare.state = "degraded";
      spare.nextScrubMs = undefined;
      this.#publish({
        type: "metadata-degraded",
        spareIndex: spare.spareIndex,
        reason,
        attempts: spare.failures,
      });
      return;
    }
    const retryInMs = this.#retryBaseMs * 2 ** (spare.failures - 1);
    spare.state = "retrying";
    spare.nextScrubMs = nowMs + retryInMs;
    this.#publish({
      type: "metadata-scrub-failed",
      spareIndex: spare.spareIndex,
      reason,
      attempt: spare.failures,
      retryInMs,
    });
  }

  /** One run, then the timer for the next due spare. */
  #run(): Promise<void> {
    this.#timer = undefined;
    this.#running = this.scrubDue().finally(() => {
      this.#running = undefined;
      this.#schedule();
    });
    return this.#running;
  }

  #schedule(): void {
    if (this.#stopped) return;
    const due = [...this.#spares.values()]
      .map((spare) => spare.nextScrubMs)
      .filter((timeMs): timeMs is number => timeMs !== undefined);
    if (due.length === 0) return;
    const waitMs = Math.max(Math.min(...due) - this.#now(), HEALTH_INTERVAL_MS_MIN);
    // Not caught: only a broken invariant rejects, and that must end the process.
    this.#timer = setTimeout(() => void this.#run(), waitMs);
  }
}

/**
 * Hands alerts to their targets without ever making the caller wait: each
 * target has a lane with a bounded queue ({@link ALERT_QUEUE_MAX}) and its
 * own delivery loop, so a dead webhook delays only its own lane and an
 * engine event costs one array push. An alert passes its target's kind
 * filter and limiter (`alert_limiter.ts`), then waits in the lane; when the
 * lane is full it is dropped. Sent, failed, dropped and held-back alerts are
 * counted per target for the metrics, and failures and drops are logged.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { ALERT_DRAIN_MS_MAX, ALERT_QUEUE_MAX } from "../constants.ts";
import type { StructuredLog } from "../log/structured_log.ts";
import type { Alert, AlertSettings, AlertTargetCounts, AlertTargetSettings } from "./alert.ts";
import { deliverAlert } from "./alert_delivery.ts";
import { AlertLimiter } from "./alert_limiter.ts";

/** Options of {@link AlertDispatcher}. */
export interface AlertDispatcherOptions {
  log: StructuredLog;
  /** @default Date.now */
  now?: () => number;
}

/** An alert as raised: the dispatcher stamps the time and the held-back count. */
export type RaisedAlert = Omit<Alert, "timeMs" | "suppressedCount">;

/** Every target's lane, replaced as a whole on reload. */
export class AlertDispatcher {
  readonly #log: StructuredLog;
  readonly #now: () => number;
  #lanes: TargetLane[] = [];
  /** Lanes of an older configuration still sending what they held. */
  readonly #retired = new Set<TargetLane>();
  #settings: AlertSettings | undefined;

  constructor(settings: AlertSettings | undefined, options: AlertDispatcherOptions) {
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
    this.replace(settings);
  }

  /** The spare usage (percent) that raises `spare-nearly-full`; undefined without targets. */
  get spareNearlyFullPercent(): number | undefined {
    return this.#settings?.spareNearlyFullPercent;
  }

  /** Queues an alert for every target that takes its kind. Never waits, never throws. */
  raise(alert: RaisedAlert): void {
    const stamped: Alert = { ...alert, timeMs: this.#now(), suppressedCount: 0 };
    for (const lane of this.#lanes) lane.offer(stamped);
  }

  /**
   * Takes new settings (SIGHUP): new lanes from now on, counts carried over
   * by target name; the old lanes finish what they hold.
   */
  replace(settings: AlertSettings | undefined): void {
    const old = new Map(this.#lanes.map((lane) => [lane.settings.name, lane]));
    this.#settings = settings;
    this.#lanes = (settings?.targets ?? []).map((target) => {
      const before = old.get(target.name);
      const counts = before === undefined
        ? undefined
        : { ...before.counts, suppressed: before.suppressed };
      return new TargetLane(target, { log: this.#log, now: this.#now, counts });
    });
    for (const lane of old.values()) {
      this.#retired.add(lane);
      lane.idle().then(() => this.#retired.delete(lane));
    }
  }

  /** Per-target counts, for the metrics. */
  counts(): AlertTargetCounts[] {
    return this.#lanes.map((lane) => ({ ...lane.counts, suppressed: lane.suppressed }));
  }

  /**
   * Waits up to {@link ALERT_DRAIN_MS_MAX} for the queued alerts (the last
   * ones, like `stopped`, are worth a short wait), then drops the rest.
   */
  async stop(): Promise<void> {
    const lanes = [...this.#lanes, ...this.#retired];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<void>((resolve) =>
      timer = setTimeout(resolve, ALERT_DRAIN_MS_MAX)
    );
    await Promise.race([Promise.all(lanes.map((lane) => lane.idle())), deadline]);
    clearTimeout(timer);
    for (const lane of lanes) lane.abandon();
  }
}

/** One target's queue and delivery loop. */
class TargetLane {
  readonly settings: AlertTargetSettings;
  readonly counts: Omit<AlertTargetCounts, "suppressed">;
  readonly #limiter: AlertLimiter;
  readonly #log: StructuredLog;
  readonly #queue: Alert[] = [];
  readonly #abort = new AbortController();
  #loop: Promise<void> = Promise.resolve();
  #running = false;
  #suppressedBefore: number;

  constructor(
    settings: AlertTargetSettings,
    options: { log: StructuredLog; now: () => number; counts?: AlertTargetCounts },
  ) {
    this.settings = settings;
    this.#log = options.log;
    this.counts = options.counts === undefined
      ? { name: settings.name, sent: 0, failed: 0, dropped: 0 }
      : { ...options.counts };
    this.#suppressedBefore = options.counts?.suppressed ?? 0;
    this.#limiter = new AlertLimiter({
      ratePerMinute: settings.ratePerMinute,
      repeatIntervalMs: settings.repeatIntervalMs,
      now: options.now,
    });
  }

  get suppressed(): number {
    return this.#suppressedBefore + this.#limiter.suppressedTotal;
  }

  offer(alert: Alert): void {
    const { kinds } = this.settings;
    // A test alert goes through whatever the target's filter, so `alert test` tests the path.
    if (alert.kind !== "test" && kinds.length > 0 && !kinds.includes(alert.kind)) return;
    const admission = alert.kind === "test"
      ? { send: true as const, suppressedCount: 0 }
      : this.#limiter.admit(alert);
    if (!admission.send) return;
    if (this.#queue.length >= ALERT_QUEUE_MAX || this.#abort.signal.aborted) {
      if (this.counts.dropped++ === 0 || this.counts.dropped % ALERT_QUEUE_MAX === 0) {
        this.#log.log({
          level: "warning",
          message: `alert queue of target "${this.settings.name}" is full: alerts dropped`,
          fields: {
            event: "alert-dropped",
            target: this.settings.name,
            dropped: this.counts.dropped,
          },
        });
      }
      return;
    }
    this.#queue.push({ ...alert, suppressedCount: admission.suppressedCount });
    if (!this.#running) {
      this.#running = true;
      this.#loop = this.#drain();
    }
  }

  /** Resolves when the queue is empty and nothing is being sent. */
  idle(): Promise<void> {
    return this.#loop;
  }

  /** Stops retrying and drops what is queued. */
  abandon(): void {
    this.counts.dropped += this.#queue.length;
    this.#queue.length = 0;
    this.#abort.abort();
  }

  async #drain(): Promise<void> {
    try {
      for (let alert = this.#queue.shift(); alert !== undefined; alert = this.#queue.shift()) {
        try {
          await deliverAlert(alert, this.settings, { signal: this.#abort.signal });
          this.counts.sent++;
        } catch (error) {
          this.counts.failed++;
          this.#log.log({
            level: "warning",
            message: (error as Error).message,
            fields: { event: "alert-failed", target: this.settings.name, kind: alert.kind },
          });
        }
      }
    } finally {
      assert(this.#queue.length === 0, "the loop ends with an empty queue");
      this.#running = false;
    }
  }
}

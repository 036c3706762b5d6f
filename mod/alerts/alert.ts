/**
 * What an alert is, and what its targets are told: the kinds of alert, the
 * alert itself (the four words an exec hook gets as argv, as mdadm's PROGRAM
 * and smartd's `-M exec` do), and the settings of alert targets.
 *
 * @module
 */

/**
 * Every kind of alert. Most are events of the setup's bus; `spare-nearly-full`
 * and `metadata-repaired` are derived by the service, `policy` is raised by a
 * policy's `alert` action, `test` by `dm-remap alert test`. `health-threshold`
 * is raised when a disk's SMART risk rises; a threshold on the scanner's
 * health score is a policy (`health-score-below` with `alert`).
 */
export const ALERT_KINDS = [
  "remap",
  "pending",
  "read-error",
  "remap-failed",
  "spare-failed",
  "spare-nearly-full",
  "degraded",
  "main-failed",
  "metadata-repaired",
  "started",
  "stopped",
  "health-threshold",
  "policy",
  "test",
] as const;

/** One kind of alert. */
export type AlertKind = typeof ALERT_KINDS[number];

/** Whether a word names an alert kind. */
export function isAlertKind(word: string): word is AlertKind {
  return (ALERT_KINDS as readonly string[]).includes(word);
}

/** One alert, as every target receives it. */
export interface Alert {
  kind: AlertKind;
  /** The setup's name. */
  setup: string;
  /** The device concerned: the main disk's or a spare's path. */
  device: string;
  /** One line in words. */
  details: string;
  /** When it happened, ms since the epoch. */
  timeMs: number;
  /** Alerts of the same kind, setup and device held back since the last one sent. */
  suppressedCount: number;
}

/** One place alerts go: a program to run or a URL to POST to. */
export type AlertDestination = { exec: string } | { webhook: string };

/** A configured alert target. */
export interface AlertTargetSettings {
  /** Its name in the configuration, for `alert test NAME`, logs and metrics. */
  name: string;
  destination: AlertDestination;
  /** The kinds it receives; `test` always goes through. */
  kinds: readonly AlertKind[];
  /** How long one attempt may take. */
  timeoutMs: number;
  /** Extra attempts after a failed one (webhooks; an exec hook runs once). */
  retries: number;
  /** The delay before the first retry; each next one doubles. */
  backoffMs: number;
  /** Alerts sent per minute at most; the rest are counted as suppressed. */
  ratePerMinute: number;
  /** The same kind, setup and device is sent again only after this long. */
  repeatIntervalMs: number;
}

/** Everything about alerts a service is told. */
export interface AlertSettings {
  targets: readonly AlertTargetSettings[];
  /** A spare this full (percent of its slots) raises `spare-nearly-full`. */
  spareNearlyFullPercent: number;
}

/** Per-target delivery counts, for the metrics. */
export interface AlertTargetCounts {
  name: string;
  sent: number;
  failed: number;
  /** Dropped because the target's queue was full. */
  dropped: number;
  /** Held back by the rate limit or the repeat interval. */
  suppressed: number;
}

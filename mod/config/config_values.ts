/**
 * The checked configuration as plain values, keyed as the file spells them
 * (`config_schema.ts` is the authority on which keys exist and what they
 * hold; these types only name them for the code that reads them).
 *
 * @module
 */

/** A setup's section, or `serve` (the defaults of every setup). */
export interface SetupSection {
  "nbd"?: {
    "socket"?: string;
    "tcp"?: string;
    "export-name"?: string;
    "attach"?: string;
    "connections"?: number;
    "io-timeout"?: number;
    "dead-timeout"?: number;
  };
  "api"?: { "socket"?: string; "tcp"?: string; "token"?: string; "group"?: string };
  /** `auto`, `ublk` or `nbd`: the kernel device `assemble` starts the setup with. */
  "export"?: string;
  "read-retries"?: number;
  "events-db"?: string;
  "backup-dir"?: string;
  "buffered"?: boolean;
  "scan-dir"?: string[];
  "alerts"?: string[];
  "policies"?: string[];
  "policy-interval-s"?: number;
  "scan"?: {
    "schedule"?: boolean;
    "interval"?: string;
    "rate-max"?: string;
    "region-size"?: string;
  };
  "allocation"?: string;
}

/** One alert target. */
export interface TargetSection {
  "exec"?: string;
  "webhook"?: string;
  "events"?: string[];
  "timeout-ms"?: number;
  "retries"?: number;
  "backoff-ms"?: number;
  "rate-per-minute"?: number;
  "repeat-interval-s"?: number;
}

/** One policy. */
export interface PolicySection {
  "when"?: {
    "pending-blocks"?: number;
    "spare-used-percent"?: number;
    "spare-errors"?: number;
    "degraded"?: boolean;
    "health-score-below"?: number;
    "scan-findings"?: number;
  };
  "then"?: string[];
}

/** The whole file. */
export interface ConfigValues {
  "log"?: { "level"?: string };
  "serve"?: SetupSection;
  "setups"?: Record<string, SetupSection>;
  "alerts"?: {
    "spare-nearly-full-percent"?: number;
    "rate-per-minute"?: number;
    "repeat-interval-s"?: number;
    "timeout-ms"?: number;
    "targets"?: Record<string, TargetSection>;
  };
  "policies"?: Record<string, PolicySection>;
}

/**
 * The schema of `/etc/dm-remap/dm-remap.yaml`: one table of sections, each
 * key with its type, its range, the `serve` flag it stands for, whether a
 * SIGHUP applies it live, and one line of documentation (docs/CONFIG.md
 * says the same, and `config_schema_test.ts` checks that every key is there).
 *
 * A section that arrives with another capability (as the scanner's `scan`
 * and the spare pool's `allocation` did) adds one entry to {@link SETUP_FIELDS}
 * or {@link CONFIG_SCHEMA}; the walker, the messages and `config show` need
 * no change.
 *
 * @module
 */

import {
  ALERT_BACKOFF_MS_MAX,
  ALERT_RATE_PER_MINUTE_MAX,
  ALERT_REPEAT_INTERVAL_S_MAX,
  ALERT_RETRIES_MAX,
  ALERT_TARGETS_MAX,
  ALERT_TIMEOUT_MS_MAX,
  CONFIG_SETUPS_MAX,
  KERNEL_TIMEOUT_S_MAX,
  NBD_CONNECTIONS_MAX,
  POLICIES_MAX,
  POLICY_INTERVAL_S_MAX,
  READ_RETRIES_MAX,
} from "../constants.ts";
import { ALERT_KINDS } from "../alerts/alert.ts";
import { KERNEL_EXPORT_CHOICES } from "../assembly/kernel_export_choice.ts";
import { LOG_LEVELS } from "../log/structured_log.ts";
import { POLICY_ACTIONS } from "../policy/policy.ts";
import { ALLOCATION_POLICIES } from "../remap/allocation_policy.ts";

/** What a key holds, and how it is checked. */
export type FieldType =
  | { kind: "integer"; min: number; max: number }
  | { kind: "boolean" }
  /** Non-empty text; with a pattern, text that matches it (`expected` says what in words). */
  | { kind: "string"; pattern?: RegExp; expected?: string }
  | { kind: "enum"; values: readonly string[] }
  /** `[host:]port`, as `--tcp` takes it. */
  | { kind: "address" }
  /** An `http://` or `https://` URL. */
  | { kind: "url" }
  | { kind: "list"; of: FieldType; itemsMax: number }
  | { kind: "section"; fields: Readonly<Record<string, Field>>; reservedFor?: string }
  /** A map whose keys are names the operator chooses (setups, targets, policies). */
  | { kind: "named"; of: FieldType; entriesMax: number; keyExpected: string };

/** One key of the schema. */
export interface Field {
  type: FieldType;
  /** One line for docs/CONFIG.md and `config show`. */
  doc: string;
  /** The `serve` flag this key gives a default for; the flag wins. */
  flag?: string;
  /** For a boolean whose false is a flag of its own (`--no-scan`): that flag. */
  falseFlag?: string;
  /** Whether SIGHUP applies a change without a restart. @default false */
  live?: boolean;
}

const PATH: FieldType = { kind: "string", pattern: /^\//, expected: "an absolute path" };
const NAME: FieldType = {
  kind: "string",
  pattern: /^[A-Za-z0-9][A-Za-z0-9_.-]*$/,
  expected: "a name of letters, digits, '.', '_' and '-'",
};
const SECONDS = { kind: "integer", min: 1, max: KERNEL_TIMEOUT_S_MAX } as const;

/** The NBD export of a setup. */
const NBD_FIELDS: Record<string, Field> = {
  "socket": { type: PATH, doc: "Unix socket NBD clients connect to", flag: "socket" },
  "tcp": { type: { kind: "address" }, doc: "TCP address to serve NBD on", flag: "tcp" },
  "export-name": { type: NAME, doc: "the export's name", flag: "export-name" },
  "attach": {
    type: { kind: "string", pattern: /^(auto|\/dev\/nbd\d+)$/, expected: "auto or /dev/nbdN" },
    doc: "attach the kernel's /dev/nbdN",
    flag: "attach",
  },
  "connections": {
    type: { kind: "integer", min: 1, max: NBD_CONNECTIONS_MAX },
    doc: "connections of an attached kernel device",
    flag: "connections",
  },
  "io-timeout": { type: SECONDS, doc: "kernel request timeout, seconds", flag: "io-timeout" },
  "dead-timeout": {
    type: SECONDS,
    doc: "how long the kernel holds I/O while no server is connected, seconds",
    flag: "dead-timeout",
  },
};

/**
 * The status API's binding and guard. `token` and `group` are read and
 * shown here; the API branch (issue 17, part 2) enforces them.
 */
const API_FIELDS: Record<string, Field> = {
  "socket": { type: PATH, doc: "Unix socket of the status API", flag: "api-socket" },
  "tcp": { type: { kind: "address" }, doc: "TCP address of the status API", flag: "api-tcp" },
  "token": {
    type: { kind: "string", pattern: /^\S{16,}$/, expected: "at least 16 characters, no spaces" },
    doc: "bearer token that mutating requests must carry (settings api.token)",
  },
  "group": {
    type: NAME,
    doc: "group whose members may mutate over the Unix socket (settings api.socketGroup)",
  },
};

const DURATION: FieldType = {
  kind: "string",
  pattern: /^\d+[smhdw]$/,
  expected: "a duration like 90s, 15m, 24h or 7d",
};
const SIZE: FieldType = {
  kind: "string",
  pattern: /^\d+[kmgt]?(i?b)?$/i,
  expected: "a size like 1G, 64M or 4096",
};

/** The scanner's schedule and limits (docs/scan.md); each the default of a `serve` flag. */
const SCAN_FIELDS: Record<string, Field> = {
  "schedule": {
    type: { kind: "boolean" },
    doc: "run passes on the schedule (the default; --no-scan for false)",
    flag: "scan",
    falseFlag: "no-scan",
  },
  "interval": {
    type: DURATION,
    doc: "from the end of a pass (or create) to the next",
    flag: "scan-interval",
  },
  "rate-max": { type: SIZE, doc: "the scanner's hard rate cap, per second", flag: "scan-rate-max" },
  "region-size": { type: SIZE, doc: "the size of a health region", flag: "region-size" },
};

/** What a setup's section (and `serve`, the defaults of every setup) may say. */
export const SETUP_FIELDS: Readonly<Record<string, Field>> = {
  "nbd": { type: { kind: "section", fields: NBD_FIELDS }, doc: "the NBD export" },
  "api": { type: { kind: "section", fields: API_FIELDS }, doc: "the status API" },
  "export": {
    type: { kind: "enum", values: KERNEL_EXPORT_CHOICES },
    doc: "kernel device assemble and serve --export (the systemd unit) give the setup: " +
      "auto (ublk with ublk_drv, else NBD), ublk, nbd",
  },
  "read-retries": {
    type: { kind: "integer", min: 0, max: READ_RETRIES_MAX },
    doc: "extra attempts at a failing main-disk read",
    flag: "read-retries",
    live: true,
  },
  "events-db": { type: PATH, doc: "the event history database", flag: "events-db" },
  "backup-dir": { type: PATH, doc: "where metadata backups go", flag: "backup-dir" },
  "buffered": {
    type: { kind: "boolean" },
    doc: "open the disks through the page cache",
    flag: "buffered",
  },
  "scan-dir": {
    type: { kind: "list", of: PATH, itemsMax: 64 },
    doc: "directories searched for image-file spares",
    flag: "scan-dir",
  },
  "alerts": {
    type: { kind: "list", of: NAME, itemsMax: ALERT_TARGETS_MAX },
    doc: "alert targets this setup uses (default: every target)",
    live: true,
  },
  "policies": {
    type: { kind: "list", of: NAME, itemsMax: POLICIES_MAX },
    doc: "policies this setup evaluates (default: every policy)",
    live: true,
  },
  "policy-interval-s": {
    type: { kind: "integer", min: 1, max: POLICY_INTERVAL_S_MAX },
    doc: "how often policies are evaluated besides on events, seconds",
    live: true,
  },
  "scan": { type: { kind: "section", fields: SCAN_FIELDS }, doc: "the background scanner" },
  "allocation": {
    type: { kind: "enum", values: ALLOCATION_POLICIES },
    doc: "which spare new remaps go to: fill-first, round-robin, most-free, health-weighted",
    flag: "allocation",
    live: true,
  },
};

const TARGET_FIELDS: Record<string, Field> = {
  "exec": { type: PATH, doc: "program run as PROGRAM EVENT SETUP DEVICE DETAILS", live: true },
  "webhook": { type: { kind: "url" }, doc: "URL the alert is POSTed to as JSON", live: true },
  "events": {
    type: { kind: "list", of: { kind: "enum", values: ALERT_KINDS }, itemsMax: ALERT_KINDS.length },
    doc: "alert kinds sent to this target (default: all)",
    live: true,
  },
  "timeout-ms": {
    type: { kind: "integer", min: 1, max: ALERT_TIMEOUT_MS_MAX },
    doc: "how long one attempt may take",
    live: true,
  },
  "retries": {
    type: { kind: "integer", min: 0, max: ALERT_RETRIES_MAX },
    doc: "extra webhook attempts after a failure",
    live: true,
  },
  "backoff-ms": {
    type: { kind: "integer", min: 1, max: ALERT_BACKOFF_MS_MAX },
    doc: "delay before the first retry; doubles each time",
    live: true,
  },
  "rate-per-minute": {
    type: { kind: "integer", min: 1, max: ALERT_RATE_PER_MINUTE_MAX },
    doc: "alerts sent per minute at most",
    live: true,
  },
  "repeat-interval-s": {
    type: { kind: "integer", min: 0, max: ALERT_REPEAT_INTERVAL_S_MAX },
    doc: "the same kind, setup and device is sent again only after this long",
    live: true,
  },
};

const ALERTS_FIELDS: Record<string, Field> = {
  "spare-nearly-full-percent": {
    type: { kind: "integer", min: 1, max: 100 },
    doc: "a spare this full raises spare-nearly-full",
    live: true,
  },
  "rate-per-minute": { ...TARGET_FIELDS["rate-per-minute"]!, doc: "default for every target" },
  "repeat-interval-s": { ...TARGET_FIELDS["repeat-interval-s"]!, doc: "default for every target" },
  "timeout-ms": { ...TARGET_FIELDS["timeout-ms"]!, doc: "default for every target" },
  "targets": {
    type: {
      kind: "named",
      of: { kind: "section", fields: TARGET_FIELDS },
      entriesMax: ALERT_TARGETS_MAX,
      keyExpected: NAME.expected!,
    },
    doc: "where alerts go, by name",
    live: true,
  },
};

const CONDITION_FIELDS: Record<string, Field> = {
  "pending-blocks": {
    type: { kind: "integer", min: 1, max: Number.MAX_SAFE_INTEGER },
    doc: "at least this many pending blocks",
    live: true,
  },
  "spare-used-percent": {
    type: { kind: "integer", min: 1, max: 100 },
    doc: "an active spare at least this full",
    live: true,
  },
  "spare-errors": {
    type: { kind: "integer", min: 1, max: Number.MAX_SAFE_INTEGER },
    doc: "an active spare has at least this many I/O errors on its slots",
    live: true,
  },
  "degraded": { type: { kind: "boolean" }, doc: "the setup is (not) degraded", live: true },
  "health-score-below": {
    type: { kind: "integer", min: 1, max: 100 },
    doc: "the scanner's setup health score is below this",
    live: true,
  },
  "scan-findings": {
    type: { kind: "integer", min: 1, max: Number.MAX_SAFE_INTEGER },
    doc: "the last scan pass found at least this many bad blocks",
    live: true,
  },
};

const POLICY_FIELDS: Record<string, Field> = {
  "when": {
    type: { kind: "section", fields: CONDITION_FIELDS },
    doc: "conditions, all of which must hold",
    live: true,
  },
  "then": {
    type: { kind: "list", of: { kind: "enum", values: POLICY_ACTIONS }, itemsMax: 3 },
    doc: "actions taken when the conditions start to hold",
    live: true,
  },
};

/** The whole file. */
export const CONFIG_SCHEMA: Readonly<Record<string, Field>> = {
  "log": {
    type: {
      kind: "section",
      fields: {
        "level": {
          type: { kind: "enum", values: LOG_LEVELS },
          doc: "the lowest level logged",
          live: true,
        },
      },
    },
    doc: "logging",
  },
  "serve": {
    type: { kind: "section", fields: SETUP_FIELDS },
    doc: "defaults for every setup; flags override them",
  },
  "setups": {
    type: {
      kind: "named",
      of: { kind: "section", fields: SETUP_FIELDS },
      entriesMax: CONFIG_SETUPS_MAX,
      keyExpected: "a setup's name or UUID",
    },
    doc: "per-setup sections, by name or UUID; they override serve",
  },
  "alerts": { type: { kind: "section", fields: ALERTS_FIELDS }, doc: "alert targets and limits" },
  "policies": {
    type: {
      kind: "named",
      of: { kind: "section", fields: POLICY_FIELDS },
      entriesMax: POLICIES_MAX,
      keyExpected: NAME.expected!,
    },
    doc: "policies by name: conditions and actions",
    live: true,
  },
};

/** The pattern names of targets and policies must match. */
export const NAME_PATTERN: RegExp = (NAME as { pattern: RegExp }).pattern;

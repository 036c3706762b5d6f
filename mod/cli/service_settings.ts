/**
 * The one place the CLI turns flags, the configuration file and defaults
 * into the settings of a running setup ({@link ServiceSettings}): a flag
 * wins over the setup's section of the file (by name or UUID), which wins
 * over the file's `serve` section, which wins over the built-in default.
 * `serve` puts its sockets under {@link RUN_DIR} and its history under
 * {@link STATE_DIR}, named after the setup; `demo` keeps everything in its
 * own state directory.
 *
 * @module
 */

import { exportOption, type KernelExportChoice } from "../assembly/kernel_export_choice.ts";
import type { AlertSettings, AlertTargetSettings } from "../alerts/alert.ts";
import type { ConfigFile } from "../config/config_file.ts";
import { type Field, SETUP_FIELDS } from "../config/config_schema.ts";
import type { ConfigValues, SetupSection, TargetSection } from "../config/config_values.ts";
import {
  ALERT_BACKOFF_MS_DEFAULT,
  ALERT_RATE_PER_MINUTE_DEFAULT,
  ALERT_REPEAT_INTERVAL_S_DEFAULT,
  ALERT_RETRIES_DEFAULT,
  ALERT_TIMEOUT_MS_DEFAULT,
  ATTACH_CONNECTIONS_DEFAULT,
  ATTACH_DEAD_CONNECTION_TIMEOUT_S_DEFAULT,
  ATTACH_REQUEST_TIMEOUT_S_DEFAULT,
  HEALTH_INTERVAL_MS_MIN,
  HEALTH_INTERVAL_S_MAX,
  KERNEL_TIMEOUT_S_MAX,
  NBD_CONNECTIONS_MAX,
  POLICY_INTERVAL_S_DEFAULT,
  READ_RETRIES_DEFAULT,
  READ_RETRIES_MAX,
  SPARE_NEARLY_FULL_PERCENT_DEFAULT,
  UBLK_QUEUE_DEPTH_DEFAULT,
  UBLK_QUEUE_DEPTH_MAX,
  UBLK_QUEUES_DEFAULT,
  UBLK_QUEUES_MAX,
} from "../constants.ts";
import type { LogLevel } from "../log/structured_log.ts";
import type { PolicyAction, PolicySettings } from "../policy/policy.ts";
import type { AlertKind } from "../alerts/alert.ts";
import { UsageError } from "../errors.ts";
import type {
  KernelAttachSettings,
  PolicyRunSettings,
  ServiceSettings,
  TcpListener,
  UblkSettings,
} from "../service/settings.ts";
import {
  ALLOCATION_POLICIES,
  type AllocationPolicy,
  isAllocationPolicy,
} from "../remap/allocation_policy.ts";
import type { ScanSettings } from "../scan/mod.ts";
import type { OptionValue } from "./command.ts";
import {
  BACKUP_DIR,
  durationOption,
  integerOption,
  listOption,
  RUN_DIR,
  sizeOption,
  STATE_DIR,
  stringOption,
  tcpOption,
} from "./options.ts";

/** The value a bare `serve --export` stands for: the configuration's choice, else auto. */
export const EXPORT_AS_CONFIGURED = "configured";

/** `serve`'s flags, checked; undefined where not given. */
export interface ServeFlags {
  socket?: string;
  tcp?: TcpListener;
  apiSocket?: string;
  apiTcp?: TcpListener;
  exportName?: string;
  readRetries?: number;
  /** `--allocation`: the policy new remaps follow from now on (recorded in the setup). */
  allocation?: AllocationPolicy;
  eventsDb?: string;
  backupDir?: string;
  attach?: KernelAttachSettings;
  /** False with `--no-smart`; seconds between SMART readings with `--smart-interval`. */
  smart?: false | { intervalMs?: number };
  scrubIntervalMs?: number;
  ublk?: UblkSettings;
  /** `--scan-interval`, `--scan-rate-max`, `--region-size`, `--no-scan`. */
  scan: Partial<ScanSettings>;
}

/**
 * Checks `serve`'s service flags before any disk is opened, so a usage
 * error comes first.
 *
 * @throws {UsageError} When a number or an address is malformed.
 */
export function parseServeFlags(values: Record<string, OptionValue>): ServeFlags {
  if (values.export !== undefined) {
    // serve_kernel_export.ts turns --export into --ublk or --attach before the settings are made;
    // its value is checked here, before any disk is opened.
    if (values.export !== EXPORT_AS_CONFIGURED) exportOption(stringOption(values.export));
    const other = ["ublk", "attach"].find((flag) => values[flag] !== undefined);
    if (other !== undefined) {
      throw new UsageError(
        `--export and --${other} each make a kernel device: give one of them`,
      );
    }
  }
  return {
    readRetries: integerOption("read-retries", stringOption(values["read-retries"]), {
      min: 0,
      max: READ_RETRIES_MAX,
    }),
    allocation: allocationOption(stringOption(values.allocation)),
    tcp: tcpOption("tcp", stringOption(values.tcp)),
    apiTcp: tcpOption("api-tcp", stringOption(values["api-tcp"])),
    socket: stringOption(values.socket),
    apiSocket: stringOption(values["api-socket"]),
    exportName: stringOption(values["export-name"]),
    eventsDb: stringOption(values["events-db"]),
    backupDir: stringOption(values["backup-dir"]),
    attach: attachFlags(values),
    smart: smartFlags(values),
    scrubIntervalMs: intervalOption("scrub-interval", values),
    ublk: ublkFlags(values),
    scan: {
      enabled: values["no-scan"] ? false : values.scan ? true : undefined,
      intervalMs: durationOption("scan-interval", stringOption(values["scan-interval"])),
      rateMaxBytesPerS: sizeOption("scan-rate-max", stringOption(values["scan-rate-max"])),
      regionBytes: sizeOption("region-size", stringOption(values["region-size"])),
    },
  };
}

/** `--ublk` and its `--queues`, `--depth` and `--no-recovery`; undefined without `--ublk`. */
function ublkFlags(values: Record<string, OptionValue>): UblkSettings | undefined {
  if (values.ublk !== true) {
    const shaping = ["queues", "depth", "no-recovery"].filter((flag) => values[flag]);
    if (shaping.length > 0) throw new UsageError(`--${shaping[0]} needs --ublk`);
    return undefined;
  }
  if (values.attach !== undefined) {
    throw new UsageError("--ublk and --attach each make a kernel device: give one of them");
  }
  return {
    queues:
      integerOption("queues", stringOption(values.queues), { min: 1, max: UBLK_QUEUES_MAX }) ??
        UBLK_QUEUES_DEFAULT,
    queueDepth: integerOption("depth", stringOption(values.depth), {
      min: 1,
      max: UBLK_QUEUE_DEPTH_MAX,
    }) ?? UBLK_QUEUE_DEPTH_DEFAULT,
    recovery: values["no-recovery"] !== true,
  };
}

/** `--smart-interval S` or `--no-smart`; undefined for the default. */
function smartFlags(values: Record<string, OptionValue>): ServeFlags["smart"] {
  const intervalMs = intervalOption("smart-interval", values);
  if (values["no-smart"]) {
    if (intervalMs !== undefined) throw new UsageError("--smart-interval contradicts --no-smart");
    return false;
  }
  return intervalMs === undefined ? undefined : { intervalMs };
}

/** An interval flag in seconds, as milliseconds. */
function intervalOption(name: string, values: Record<string, OptionValue>): number | undefined {
  const seconds = integerOption(name, stringOption(values[name]), {
    min: HEALTH_INTERVAL_MS_MIN / 1000,
    max: HEALTH_INTERVAL_S_MAX,
  });
  return seconds === undefined ? undefined : seconds * 1000;
}

/** `--attach` and the flags that shape it; undefined without `--attach`. */
function attachFlags(values: Record<string, OptionValue>): KernelAttachSettings | undefined {
  const device = stringOption(values.attach);
  const shaping = ["connections", "io-timeout", "dead-timeout"].filter((flag) => values[flag]);
  if (device === undefined) {
    if (shaping.length > 0) throw new UsageError(`--${shaping[0]} needs --attach`);
    return undefined;
  }
  if (device !== "auto" && !/^\/dev\/nbd\d+$/.test(device)) {
    throw new UsageError(`--attach "${device}": give auto or /dev/nbdN`);
  }
  const seconds = { min: 1, max: KERNEL_TIMEOUT_S_MAX };
  return {
    device,
    connections: integerOption("connections", stringOption(values.connections), {
      min: 1,
      max: NBD_CONNECTIONS_MAX,
    }) ?? ATTACH_CONNECTIONS_DEFAULT,
    requestTimeoutS: integerOption("io-timeout", stringOption(values["io-timeout"]), seconds) ??
      ATTACH_REQUEST_TIMEOUT_S_DEFAULT,
    deadConnectionTimeoutS:
      integerOption("dead-timeout", stringOption(values["dead-timeout"]), seconds) ??
        ATTACH_DEAD_CONNECTION_TIMEOUT_S_DEFAULT,
    ...unansweredConnectionsOption(),
  };
}

/**
 * The VM test's stand-in for a kernel that leaves a connection unread
 * (`KernelAttachSettings.unansweredConnections`, docs/vm.md): set only by
 * `DM_REMAP_TEST_UNANSWERED_CONNECTIONS`, never by a flag.
 */
function unansweredConnectionsOption(): Pick<KernelAttachSettings, "unansweredConnections"> {
  const text = Deno.env.get(UNANSWERED_CONNECTIONS_VARIABLE);
  if (text === undefined) return {};
  if (!/^\d$/.test(text) || Number(text) > NBD_CONNECTIONS_MAX) {
    throw new UsageError(
      `${UNANSWERED_CONNECTIONS_VARIABLE} takes a whole number from 0 to ${NBD_CONNECTIONS_MAX}, ` +
        `not "${text}" (unset it outside tests)`,
    );
  }
  return { unansweredConnections: Number(text) };
}

const UNANSWERED_CONNECTIONS_VARIABLE = "DM_REMAP_TEST_UNANSWERED_CONNECTIONS";

/** Where a setup's event history is kept by default: `serve` and `assemble` write there. */
export function eventsPathOf(setupName: string): string {
  return `${STATE_DIR}/${setupName}.events.sqlite`;
}

/** `serve`'s settings: the flags, and where they are absent the defaults for `setupName`. */
export function serveSettings(flags: ServeFlags, setupName: string): ServiceSettings {
  return {
    nbd: {
      exportName: flags.exportName ?? setupName,
      unixPath: flags.socket ?? `${RUN_DIR}/${setupName}.nbd.sock`,
      tcp: flags.tcp,
      attach: flags.attach,
      ublk: flags.ublk,
    },
    api: { unixPath: flags.apiSocket ?? `${RUN_DIR}/${setupName}.api.sock`, tcp: flags.apiTcp },
    // The history lives with the setup's state, where it survives reboots.
    eventsPath: flags.eventsDb ?? eventsPathOf(setupName),
    backupDir: flags.backupDir ?? BACKUP_DIR,
    readRetries: flags.readRetries,
    allocation: flags.allocation,
    scan: flags.scan,
    runtimeDir: RUN_DIR,
    smart: flags.smart,
    scrub: { intervalMs: flags.scrubIntervalMs },
  };
}

/** The demo's export name. */
export const DEMO_EXPORT_NAME = "demo";

/**
 * `demo`'s settings: sockets, history and backups in `stateDir`; NBD and the
 * API also on their usual local ports unless `--tcp`/`--api-tcp` say otherwise.
 *
 * @throws {UsageError} When an address is malformed.
 */
export function demoSettings(
  values: Record<string, OptionValue>,
  stateDir: string,
): ServiceSettings {
  return {
    nbd: {
      exportName: DEMO_EXPORT_NAME,
      unixPath: `${stateDir}/demo.nbd.sock`,
      tcp: tcpOption("tcp", stringOption(values.tcp) ?? "127.0.0.1:10809"),
    },
    api: {
      unixPath: `${stateDir}/demo.api.sock`,
      tcp: tcpOption("api-tcp", stringOption(values["api-tcp"]) ?? "127.0.0.1:8080"),
    },
    eventsPath: `${stateDir}/demo.events.sqlite`,
    backupDir: `${stateDir}/backup`,
  };
}

// ---- the configuration file (issue 17) ----

/** One effective setting: its key as the file spells it, its value, and where it came from. */
export interface EffectiveSetting {
  key: string;
  value: unknown;
  /** `flag --x`, `file:line:column`, or `default`. */
  source: string;
  /** Whether SIGHUP applies a change of it without a restart. */
  live: boolean;
}

/** Everything `serve` takes from its flags and the configuration. */
export interface ServeConfiguration {
  settings: ServiceSettings;
  logLevel: LogLevel;
  /** Open the disks through the page cache (`--buffered`). */
  buffered: boolean;
  /** Where image-file spares are searched (`--scan-dir`). */
  scanDirs: string[];
  /** Every setting with its value and source, for `config show` and reloads. */
  effective: EffectiveSetting[];
}

/** What a setup's section may be keyed by. */
export interface SetupKeys {
  name?: string;
  uuid?: string;
}

/** A section of the file that applies to the setup, with its dotted path. */
interface AppliedSection {
  path: string;
  values: SetupSection;
}

/** The setup's own section first (by name, then UUID), then `serve`. */
function appliedSections(config: ConfigValues | undefined, setup: SetupKeys): AppliedSection[] {
  const sections: AppliedSection[] = [];
  for (const key of [setup.name, setup.uuid]) {
    const values = key === undefined ? undefined : config?.setups?.[key];
    if (values !== undefined) sections.push({ path: `setups.${key}`, values });
  }
  if (config?.serve !== undefined) sections.push({ path: "serve", values: config.serve });
  return sections;
}

/**
 * The kernel device `assemble` (and `serve --export`) is to start a setup
 * with, from the file: the setup's section (by name, then UUID), then
 * `serve`; undefined when none says.
 */
export function kernelExportChoiceOf(
  config: ConfigValues | undefined,
  setup: SetupKeys,
): KernelExportChoice | undefined {
  const section = appliedSections(config, setup).find((each) => each.values.export !== undefined);
  return section?.values.export as KernelExportChoice | undefined;
}

/** The schema's leaf keys of a setup section, dotted, skipping reserved sections. */
function leafFields(fields: Readonly<Record<string, Field>>, prefix = ""): [string, Field][] {
  const leaves: [string, Field][] = [];
  for (const [key, field] of Object.entries(fields)) {
    if (field.type.kind === "section") {
      leaves.push(...leafFields(field.type.fields, `${prefix}${key}.`));
    } else leaves.push([`${prefix}${key}`, field]);
  }
  return leaves;
}

function valueAt(section: SetupSection, key: string): unknown {
  let value: unknown = section;
  for (const part of key.split(".")) value = (value as Record<string, unknown> | undefined)?.[part];
  return value;
}

/** The first section that sets `key`, with the value's position as its source. */
function fromFile(
  config: ConfigFile | undefined,
  sections: readonly AppliedSection[],
  key: string,
): { value: unknown; source: string } | undefined {
  for (const section of sections) {
    const value = valueAt(section.values, key);
    if (value === undefined) continue;
    const position = config?.positions.get(`${section.path}.${key}`);
    const where = position === undefined
      ? config?.path ?? "file"
      : `${position.file}:${position.line}:${position.column}`;
    return { value, source: `${where} (${section.path}.${key})` };
  }
  return undefined;
}

/** A file value as the flag parser takes it. */
function optionValueOf(value: unknown): OptionValue {
  if (typeof value === "boolean") return value || undefined;
  if (Array.isArray(value)) return value.map(String);
  return String(value);
}

/**
 * Merges flags, the configuration and defaults into `serve`'s settings.
 *
 * @param values `serve`'s parsed flags.
 * @param setup The setup's name and UUID, as far as known: its section is found by either.
 * @param config The checked configuration, or undefined without one.
 * @throws {UsageError} When a flag, or a combination of flag and file values, is wrong.
 */
export function serveConfiguration(
  values: Record<string, OptionValue>,
  setup: SetupKeys,
  config: ConfigFile | undefined,
): ServeConfiguration {
  const sections = appliedSections(config?.values, setup);
  const merged: Record<string, OptionValue> = { ...values };
  const chosen = new Map<string, { value: unknown; source: string }>();
  for (const [key, field] of leafFields(SETUP_FIELDS)) {
    const negated = field.falseFlag !== undefined && values[field.falseFlag] === true;
    const flagValue = field.flag === undefined ? undefined : negated ? false : values[field.flag];
    const given = flagValue !== undefined && !(Array.isArray(flagValue) && flagValue.length === 0);
    const found = given
      ? { value: flagValue, source: `flag --${negated ? field.falseFlag : field.flag}` }
      : fromFile(config, sections, key);
    if (found === undefined) continue;
    chosen.set(key, found);
    if (given || field.flag === undefined) continue;
    if (found.value === false && field.falseFlag !== undefined) merged[field.falseFlag] = true;
    else merged[field.flag] = optionValueOf(found.value);
  }
  const name = setup.name ?? "unnamed";
  const settings = serveSettings(parseMergedFlags(merged, chosen), name);
  const file = (key: string) => chosen.get(key)?.value;
  settings.api.token = file("api.token") as string | undefined;
  settings.api.socketGroup = file("api.group") as string | undefined;
  settings.alerts = alertSettingsOf(config?.values, file("alerts") as string[] | undefined);
  settings.policies = policyRunSettingsOf(
    config?.values,
    file("policies") as string[] | undefined,
    (file("policy-interval-s") as number | undefined) ?? POLICY_INTERVAL_S_DEFAULT,
  );
  const scanDirs = listOption(merged["scan-dir"]);
  const configuration: ServeConfiguration = {
    settings,
    logLevel: (config?.values.log?.level as LogLevel | undefined) ?? "info",
    buffered: merged.buffered === true,
    scanDirs,
    effective: [],
  };
  configuration.effective = effectiveSettings(configuration, chosen, config);
  return configuration;
}

/**
 * Checks the merged flags; a problem with a value that came from the file
 * says where in the file it is, not only which flag it stands for.
 */
function parseMergedFlags(
  merged: Record<string, OptionValue>,
  chosen: ReadonlyMap<string, { value: unknown; source: string }>,
): ServeFlags {
  try {
    return parseServeFlags(merged);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    const flag = /--([a-z-]+)/.exec(error.message)?.[1];
    const key = leafFields(SETUP_FIELDS).find(([, field]) => field.flag === flag)?.[0];
    const source = key === undefined ? undefined : chosen.get(key)?.source;
    if (source === undefined || source.startsWith("flag ")) throw error;
    throw new UsageError(`${error.message} (set by ${source})`, { cause: error });
  }
}

/** Built-in defaults, read back from the settings they produced, for `config show`. */
const DEFAULT_OF: Readonly<Record<string, (configuration: ServeConfiguration) => unknown>> = {
  "nbd.socket": ({ settings }) => settings.nbd.unixPath,
  "nbd.export-name": ({ settings }) => settings.nbd.exportName,
  "api.socket": ({ settings }) => settings.api.unixPath,
  "export": () => "auto",
  "read-retries": () => READ_RETRIES_DEFAULT,
  "events-db": ({ settings }) => settings.eventsPath,
  "backup-dir": ({ settings }) => settings.backupDir,
  "buffered": () => false,
  "scan-dir": () => [STATE_DIR],
  "alerts": () => "every target",
  "policies": () => "every policy",
  "policy-interval-s": () => POLICY_INTERVAL_S_DEFAULT,
};

function effectiveSettings(
  configuration: ServeConfiguration,
  chosen: ReadonlyMap<string, { value: unknown; source: string }>,
  config: ConfigFile | undefined,
): EffectiveSetting[] {
  const effective: EffectiveSetting[] = [];
  for (const [key, field] of leafFields(SETUP_FIELDS)) {
    const found = chosen.get(key);
    const live = field.live === true;
    if (found !== undefined) {
      // A token is a secret: say that it is set and where, never what it is.
      const value = key === "api.token" ? "(set)" : found.value;
      effective.push({ key, value, source: found.source, live });
    } else {
      effective.push({
        key,
        value: DEFAULT_OF[key]?.(configuration) ?? "none",
        source: "default",
        live,
      });
    }
  }
  const level = config?.positions.get("log.level");
  effective.push({
    key: "log.level",
    value: configuration.logLevel,
    source: level === undefined ? "default" : `${level.file}:${level.line}:${level.column}`,
    live: true,
  });
  for (const target of configuration.settings.alerts?.targets ?? []) {
    const position = config?.positions.get(`alerts.targets.${target.name}`);
    effective.push({
      key: `alerts.targets.${target.name}`,
      value: target,
      source: position === undefined
        ? "file"
        : `${position.file}:${position.line}:${position.column}`,
      live: true,
    });
  }
  for (const policy of configuration.settings.policies?.rules ?? []) {
    const position = config?.positions.get(`policies.${policy.name}`);
    effective.push({
      key: `policies.${policy.name}`,
      value: policy,
      source: position === undefined
        ? "file"
        : `${position.file}:${position.line}:${position.column}`,
      live: true,
    });
  }
  return effective;
}

/**
 * The alert targets a setup uses (all, or the ones its section lists), with
 * defaults filled in; undefined when there is none.
 */
export function alertSettingsOf(
  config: ConfigValues | undefined,
  names: readonly string[] | undefined,
): AlertSettings | undefined {
  const alerts = config?.alerts;
  const targets = Object.entries(alerts?.targets ?? {})
    .filter(([name]) => names === undefined || names.includes(name))
    .map(([name, target]) => alertTargetOf(name, target, alerts ?? {}));
  if (targets.length === 0) return undefined;
  return {
    targets,
    spareNearlyFullPercent: alerts?.["spare-nearly-full-percent"] ??
      SPARE_NEARLY_FULL_PERCENT_DEFAULT,
  };
}

function alertTargetOf(
  name: string,
  target: TargetSection,
  defaults: NonNullable<ConfigValues["alerts"]>,
): AlertTargetSettings {
  return {
    name,
    destination: target.exec !== undefined ? { exec: target.exec } : { webhook: target.webhook! },
    kinds: (target.events ?? []) as AlertKind[],
    timeoutMs: target["timeout-ms"] ?? defaults["timeout-ms"] ?? ALERT_TIMEOUT_MS_DEFAULT,
    retries: target.retries ?? ALERT_RETRIES_DEFAULT,
    backoffMs: target["backoff-ms"] ?? ALERT_BACKOFF_MS_DEFAULT,
    ratePerMinute: target["rate-per-minute"] ?? defaults["rate-per-minute"] ??
      ALERT_RATE_PER_MINUTE_DEFAULT,
    repeatIntervalMs: 1000 *
      (target["repeat-interval-s"] ?? defaults["repeat-interval-s"] ??
        ALERT_REPEAT_INTERVAL_S_DEFAULT),
  };
}

/** The policies a setup evaluates (all, or the ones its section lists). */
function policyRunSettingsOf(
  config: ConfigValues | undefined,
  names: readonly string[] | undefined,
  intervalS: number,
): PolicyRunSettings | undefined {
  const rules: PolicySettings[] = Object.entries(config?.policies ?? {})
    .filter(([name]) => names === undefined || names.includes(name))
    .map(([name, policy]) => ({
      name,
      when: {
        pendingBlocksAtLeast: policy.when?.["pending-blocks"],
        spareUsedPercentAtLeast: policy.when?.["spare-used-percent"],
        spareErrorsAtLeast: policy.when?.["spare-errors"],
        degraded: policy.when?.degraded,
        healthScoreBelow: policy.when?.["health-score-below"],
        scanFindingsAtLeast: policy.when?.["scan-findings"],
      },
      then: (policy.then ?? []) as PolicyAction[],
    }));
  if (rules.length === 0) return undefined;
  return { rules, intervalMs: intervalS * 1000 };
}
/** `--allocation <policy>`, checked. */
function allocationOption(value: string | undefined): AllocationPolicy | undefined {
  if (value === undefined) return undefined;
  if (!isAllocationPolicy(value)) {
    throw new UsageError(
      `--allocation "${value}" is not a policy: use one of ${ALLOCATION_POLICIES.join(", ")}`,
    );
  }
  return value;
}

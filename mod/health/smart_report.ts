/**
 * What `smartctl --json -a DEV` says about a disk, reduced to what dm-remap
 * judges a disk by: the SATA attributes that predict media failure (5
 * Reallocated_Sector_Ct, 187 Reported_Uncorrect, 188 Command_Timeout, 197
 * Current_Pending_Sector, 198 Offline_Uncorrectable, 199 UDMA_CRC_Error_Count,
 * the ones Backblaze watches), the temperature, NVMe media errors and
 * percentage used, and the self-test results.
 *
 * Parsing is pure: it reads the JSON smartctl printed (format version 1) and
 * never runs anything. A device that has no SMART (an image file, a virtio or
 * device-mapper disk, a loop device) gives a {@link SmartReading} in state
 * `no-smart` with smartctl's own reason, never an error: a setup on files is
 * an ordinary setup.
 *
 * @example Reading a report smartctl printed
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSmartctlJson } from "./smart_report.ts";
 *
 * const reading = parseSmartctlJson({
 *   device: { name: "/dev/sda", protocol: "ATA" },
 *   serial_number: "Z295RVX4",
 *   smart_status: { passed: true },
 *   ata_smart_attributes: { table: [{ id: 5, name: "Reallocated_Sector_Ct", raw: { value: 3 } }] },
 * }, { device: "/dev/sda", timeMs: 0 });
 * assert.equal(reading.state, "ok");
 * assert.equal(reading.state === "ok" && reading.counters.reallocatedSectors, 3);
 * ```
 *
 * @module
 */

/** How the disk speaks SMART. */
export type SmartProtocol = "ata" | "nvme";

/** What kind of disk it is, as far as SMART tells. */
export type SmartDiskKind = "hdd" | "ssd" | "nvme";

/**
 * The counters the risk rules read; absent when the disk does not report it.
 * Raw values as smartctl decoded them (some vendors pack several counters in
 * one raw value, e.g. Seagate's 188; a rise is still a rise).
 */
export interface SmartCounters {
  /** Attribute 5, Reallocated_Sector_Ct. */
  reallocatedSectors?: number;
  /** Attribute 187, Reported_Uncorrect. */
  reportedUncorrectable?: number;
  /** Attribute 188, Command_Timeout. */
  commandTimeouts?: number;
  /** Attribute 197, Current_Pending_Sector. */
  pendingSectors?: number;
  /** Attribute 198, Offline_Uncorrectable. */
  offlineUncorrectable?: number;
  /** Attribute 199, UDMA_CRC_Error_Count (the cable or the link, not the media). */
  crcErrors?: number;
  /** NVMe: media and data integrity errors. */
  mediaErrors?: number;
  /** NVMe: percentage of the rated endurance used (may pass 100). */
  percentageUsed?: number;
  /** NVMe: spare capacity left, percent. */
  availableSparePercent?: number;
  /** NVMe: the threshold under which the spare capacity is critical, percent. */
  availableSpareThresholdPercent?: number;
  /** NVMe: the critical warning bits (0 when none). */
  criticalWarning?: number;
}

/** The name of each counter, in the words of the attribute table. */
export const COUNTER_NAMES: Readonly<Record<keyof SmartCounters, string>> = {
  reallocatedSectors: "5 Reallocated_Sector_Ct",
  reportedUncorrectable: "187 Reported_Uncorrect",
  commandTimeouts: "188 Command_Timeout",
  pendingSectors: "197 Current_Pending_Sector",
  offlineUncorrectable: "198 Offline_Uncorrectable",
  crcErrors: "199 UDMA_CRC_Error_Count",
  mediaErrors: "NVMe media_errors",
  percentageUsed: "NVMe percentage_used",
  availableSparePercent: "NVMe available_spare",
  availableSpareThresholdPercent: "NVMe available_spare_threshold",
  criticalWarning: "NVMe critical_warning",
};

/** The SATA attribute behind each counter. */
const ATTRIBUTE_COUNTERS: ReadonlyMap<number, keyof SmartCounters> = new Map([
  [5, "reallocatedSectors"],
  [187, "reportedUncorrectable"],
  [188, "commandTimeouts"],
  [197, "pendingSectors"],
  [198, "offlineUncorrectable"],
  [199, "crcErrors"],
]);

/** One watched SATA attribute as the disk reports it. */
export interface SmartAttribute {
  id: number;
  name: string;
  /** Normalized value, worst and threshold (vendor scale, usually 1-253). */
  value?: number;
  worst?: number;
  thresh?: number;
  raw: number;
  /** `now` when the normalized value is at or below its threshold, `past` if it was. */
  whenFailed: string;
}

/** One self-test from the disk's log, newest first. */
export interface SmartSelfTest {
  type: string;
  status: string;
  passed: boolean;
  lifetimeHours?: number;
}

/** A disk that answered SMART. */
export interface SmartOk {
  state: "ok";
  /** The path smartctl was given. */
  device: string;
  protocol: SmartProtocol;
  kind: SmartDiskKind;
  model?: string;
  /** What the disk is (never its path): the key readings are compared by. */
  serial?: string;
  wwn?: string;
  /** The disk's overall verdict (SMART RETURN STATUS / NVMe critical warning). */
  passed: boolean;
  temperatureC?: number;
  powerOnHours?: number;
  counters: SmartCounters;
  /** The watched SATA attributes (none for NVMe). */
  attributes: SmartAttribute[];
  /** Attributes at or below their threshold now (`when_failed` = `now`). */
  failingAttributes: string[];
  selfTests: SmartSelfTest[];
  timeMs: number;
}

/** A device without SMART: a file, a virtual disk, or smartctl missing. */
export interface SmartAbsent {
  state: "no-smart";
  device: string;
  /** Why, in smartctl's words or ours. */
  reason: string;
  timeMs: number;
}

/** One reading of one device. */
export type SmartReading = SmartOk | SmartAbsent;

/** Where and when the JSON was read. */
export interface ParseContext {
  /** The path smartctl was run on. */
  device: string;
  timeMs: number;
}

/**
 * Reduces `smartctl --json -a` output to a {@link SmartReading}.
 *
 * @param json The parsed JSON smartctl printed.
 * @param context The device path and the time of the reading.
 * @returns `ok` when the disk reported SMART data, else `no-smart` with the reason.
 */
export function parseSmartctlJson(json: unknown, context: ParseContext): SmartReading {
  const root = objectOf(json);
  const nvmeLog = objectOf(root.nvme_smart_health_information_log);
  const attributeTable = arrayOf(objectOf(root.ata_smart_attributes).table);
  const status = objectOf(root.smart_status);
  const hasNvme = Object.keys(nvmeLog).length > 0;
  if (!hasNvme && attributeTable.length === 0 && typeof status.passed !== "boolean") {
    return {
      state: "no-smart",
      device: context.device,
      reason: absentReason(root),
      timeMs: context.timeMs,
    };
  }
  const counters: SmartCounters = {};
  const attributes: SmartAttribute[] = [];
  const failingAttributes: string[] = [];
  for (const entry of attributeTable.map(objectOf)) {
    const id = numberOf(entry.id);
    const name = stringOf(entry.name) ?? `attribute ${id}`;
    const whenFailed = stringOf(entry.when_failed) ?? "";
    if (whenFailed === "now") failingAttributes.push(`${id} ${name}`);
    const key = id === undefined ? undefined : ATTRIBUTE_COUNTERS.get(id);
    const raw = numberOf(objectOf(entry.raw).value);
    if (key === undefined || id === undefined || raw === undefined) continue;
    counters[key] = raw;
    attributes.push({
      id,
      name,
      value: numberOf(entry.value),
      worst: numberOf(entry.worst),
      thresh: numberOf(entry.thresh),
      raw,
      whenFailed,
    });
  }
  if (hasNvme) Object.assign(counters, nvmeCountersOf(nvmeLog));
  const protocol: SmartProtocol = hasNvme ? "nvme" : "ata";
  const wwn = objectOf(root.wwn);
  return {
    state: "ok",
    device: context.device,
    protocol,
    kind: hasNvme ? "nvme" : root.rotation_rate === 0 ? "ssd" : "hdd",
    model: stringOf(root.model_name),
    serial: stringOf(root.serial_number),
    wwn: typeof wwn.naa === "number"
      ? `${wwn.naa}-${numberOf(wwn.oui)}-${numberOf(wwn.id)}`
      : undefined,
    passed: status.passed !== false && (counters.criticalWarning ?? 0) === 0,
    temperatureC: numberOf(objectOf(root.temperature).current),
    powerOnHours: numberOf(objectOf(root.power_on_time).hours),
    counters,
    attributes,
    failingAttributes,
    selfTests: hasNvme ? nvmeSelfTestsOf(root) : ataSelfTestsOf(root),
    timeMs: context.timeMs,
  };
}

function nvmeCountersOf(log: Record<string, unknown>): SmartCounters {
  const counters: SmartCounters = {};
  const fields: [keyof SmartCounters, string][] = [
    ["mediaErrors", "media_errors"],
    ["percentageUsed", "percentage_used"],
    ["availableSparePercent", "available_spare"],
    ["availableSpareThresholdPercent", "available_spare_threshold"],
    ["criticalWarning", "critical_warning"],
  ];
  for (const [key, field] of fields) {
    const value = numberOf(log[field]);
    if (value !== undefined) counters[key] = value;
  }
  return counters;
}

/** The ATA self-test log, newest first (smartctl lists it so). */
function ataSelfTestsOf(root: Record<string, unknown>): SmartSelfTest[] {
  const log = objectOf(objectOf(root.ata_smart_self_test_log).standard);
  return arrayOf(log.table).map(objectOf).map((entry) => {
    const status = objectOf(entry.status);
    return {
      type: stringOf(objectOf(entry.type).string) ?? "unknown",
      status: stringOf(status.string) ?? "unknown",
      passed: status.passed !== false,
      lifetimeHours: numberOf(entry.lifetime_hours),
    };
  });
}

/** The NVMe self-test log (smartctl 7.4 and later print it), newest first. */
function nvmeSelfTestsOf(root: Record<string, unknown>): SmartSelfTest[] {
  const log = objectOf(root.nvme_self_test_log);
  return arrayOf(log.table).map(objectOf).map((entry) => {
    const result = objectOf(entry.self_test_result);
    return {
      type: stringOf(objectOf(entry.self_test_code).string) ?? "unknown",
      status: stringOf(result.string) ?? "unknown",
      passed: numberOf(result.value) === 0,
      lifetimeHours: numberOf(entry.power_on_hours),
    };
  });
}

/** smartctl's own error message, or a plain one when it printed none. */
function absentReason(root: Record<string, unknown>): string {
  const smartctl = objectOf(root.smartctl);
  const messages = arrayOf(smartctl.messages).map(objectOf)
    .filter((message) => message.severity === "error")
    .map((message) => stringOf(message.string))
    .filter((text): text is string => text !== undefined);
  if (messages.length > 0) return messages.join("; ");
  const support = objectOf(root.smart_support);
  if (support.available === false) return "the device has no SMART capability";
  if (support.enabled === false) return "SMART is disabled on the device";
  return "the device reported no SMART data";
}

function objectOf(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as Record<string, unknown>
    : {};
}

function arrayOf(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function numberOf(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

function stringOf(value: unknown): string | undefined {
  return typeof value === "string" && value.length > 0 ? value : undefined;
}

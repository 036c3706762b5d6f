/**
 * The periodic SMART reader of a running setup: reads every disk of the setup
 * (main disk and spares; for a dm or md device or a partition, the physical
 * disks under it, `smart_disks.ts`) with smartctl on start and then every interval
 * (default 30 min), judges each reading against the previous reading of the
 * same disk (`smart_risk.ts`), keeps the readings in the history database
 * (`smart_history.ts`), and publishes `smart-risk-raised` when a disk's risk
 * level goes up or one of its counters rose: the signal a scanner uses to
 * start an early pass.
 *
 * A disk without SMART (image files, virtio, device-mapper) is shown as such
 * in the status and never logged or published. The first reading runs in the
 * background, so a slow smartctl never delays serving.
 *
 * @module
 */

import { assert, AssertionError } from "../assert.ts";
import { HEALTH_INTERVAL_MS_MIN, SMART_INTERVAL_MS_DEFAULT } from "../constants.ts";
import type { SmartDiskHealth, SmartHealth } from "../api/status.ts";
import type { HealthEvent } from "../events/setup_event.ts";
import { diskKeyOf, type SmartHistory } from "../health/smart_history.ts";
import { smartDisksOf } from "../health/smart_disks.ts";
import { readSmart } from "../health/smart_reader.ts";
import type { SmartReading } from "../health/smart_report.ts";
import { assessSmartRisk, isHigherRisk } from "../health/smart_risk.ts";
import type { ServiceComponent } from "./component.ts";

/** A disk of the setup. */
export interface SmartDisk {
  /** `main` or `spare N`. */
  role: string;
  path: string;
}

/** What the status shows of one disk. */
export type SmartDiskStatus = SmartDiskHealth;

/** The SMART part of the status. */
export type SmartStatus = SmartHealth;

/** Options of {@link SmartMonitor}. */
export interface SmartMonitorOptions {
  disks: readonly SmartDisk[];
  /** @default SMART_INTERVAL_MS_DEFAULT */
  intervalMs?: number;
  /** Where readings are kept across restarts. @default none (only in memory) */
  history?: SmartHistory;
  publish: (event: HealthEvent) => void;
  /** Reads one device. @default readSmart */
  read?: (path: string) => Promise<SmartReading>;
  /** The disks to read for a path of the setup. @default smartDisksOf */
  disksUnder?: (path: string) => Promise<string[]>;
}

/** Reads the setup's disks' SMART data periodically. */
export class SmartMonitor implements ServiceComponent {
  readonly #setupDisks: readonly SmartDisk[];
  /** The disks read, found under the setup's paths in the first round. */
  #disks: SmartDiskStatus[] | undefined;
  readonly #disksUnder: (path: string) => Promise<string[]>;
  readonly #intervalMs: number;
  readonly #history: SmartHistory | undefined;
  readonly #publish: (event: HealthEvent) => void;
  readonly #read: (path: string) => Promise<SmartReading>;
  #rounds = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #running: Promise<void> | undefined;

  constructor(options: SmartMonitorOptions) {
    this.#setupDisks = options.disks;
    this.#disksUnder = options.disksUnder ?? ((path) => smartDisksOf(path));
    this.#intervalMs = options.intervalMs ?? SMART_INTERVAL_MS_DEFAULT;
    assert(this.#intervalMs >= HEALTH_INTERVAL_MS_MIN, "SMART interval in range");
    this.#history = options.history;
    this.#publish = options.publish;
    this.#read = options.read ?? ((path) => readSmart(path));
  }

  /** Starts the first round in the background and the schedule. */
  start(): Promise<void> {
    this.#tick();
    this.#timer = setInterval(() => this.#tick(), this.#intervalMs);
    return Promise.resolve();
  }

  /** Cancels the schedule and waits for a round in progress. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** The latest reading and risk of every disk. */
  status(): SmartStatus {
    return {
      intervalMs: this.#intervalMs,
      rounds: this.#rounds,
      disks: (this.#disks ?? []).map((disk) => ({ ...disk })),
    };
  }

  /** The main disk's counters that rose at its last reading, in words (for the forecast). */
  mainDiskRises(): string[] {
    const main = (this.#disks ?? []).filter((disk) => disk.role === "main");
    return main.flatMap((disk) => disk.risk?.rising ?? []).map((rise) =>
      `${rise.name} rose ${rise.from}→${rise.to} since ${new Date(rise.sinceMs).toISOString()}`
    );
  }

  /** Reads every disk once now (waits for a round in progress first). */
  async readNow(): Promise<SmartStatus> {
    await this.#running;
    this.#running = this.#round().finally(() => this.#running = undefined);
    await this.#running;
    return this.status();
  }

  #tick(): void {
    // One round at a time: a disk that is slow to answer does not pile up smartctl runs.
    if (this.#running !== undefined) return;
    this.#running = this.#round().finally(() => this.#running = undefined);
  }

  async #round(): Promise<void> {
    this.#disks ??= await this.#findDisks();
    for (const disk of this.#disks) {
      const reading = await this.#read(disk.path);
      this.#judge(disk, reading);
    }
    this.#rounds++;
  }

  #judge(disk: SmartDiskStatus, reading: SmartReading): void {
    const previous = this.#previousOf(disk, reading);
    const risk = assessSmartRisk(reading, previous);
    // The level the disk was known at: the last judgement, or the stored reading's own.
    const knownRisk = disk.risk ??
      (previous === undefined ? undefined : assessSmartRisk(previous));
    disk.reading = reading;
    disk.risk = risk;
    if (reading.state !== "ok") return;
    try {
      this.#history?.record(reading);
    } catch (error) {
      if (error instanceof AssertionError) throw error;
      // A full or read-only disk under the history must not stop the readings.
    }
    const raised = risk.rising.length > 0 || isHigherRisk(knownRisk?.level ?? "none", risk.level);
    if (raised) {
      this.#publish({
        type: "smart-risk-raised",
        device: `${disk.path} (${disk.role}${
          disk.under === undefined ? "" : ` under ${disk.under}`
        })`,
        level: risk.level,
        reasons: risk.reasons,
      });
    }
  }

  /** The physical disks under each of the setup's paths. */
  async #findDisks(): Promise<SmartDiskStatus[]> {
    const disks: SmartDiskStatus[] = [];
    for (const disk of this.#setupDisks) {
      for (const path of await this.#disksUnder(disk.path)) {
        disks.push(path === disk.path ? { ...disk } : { role: disk.role, path, under: disk.path });
      }
    }
    return disks;
  }

  /** The last reading of the same disk: in memory, else from the history. */
  #previousOf(disk: SmartDiskStatus, reading: SmartReading): SmartReading | undefined {
    if (reading.state !== "ok") return undefined;
    if (disk.reading?.state === "ok" && disk.reading.serial === reading.serial) {
      return disk.reading;
    }
    const key = diskKeyOf(reading);
    return key === undefined ? undefined : this.#history?.latest(key);
  }
}

/**
 * The one settings object of a running setup: every address, path and
 * choice the service needs. The CLI builds it from flags and defaults
 * (`mod/cli/service_settings.ts`); the service reads nothing else, no flag,
 * environment variable or module-level default of the CLI's.
 *
 * @module
 */

import type { SmartReading } from "../health/smart_report.ts";
import type { AlertSettings } from "../alerts/alert.ts";
import type { AllocationPolicy } from "../remap/allocation_policy.ts";
import type { KernelAttachSettings } from "../export/nbd/kernel_attachment.ts";
import type { PolicySettings } from "../policy/policy.ts";
import type { UblkSettings } from "../export/ublk/ublk_attachment.ts";
export type { AlertSettings, KernelAttachSettings, PolicySettings, UblkSettings };
import type { ScanSettings } from "../scan/mod.ts";

/** A TCP address to listen on; port 0 picks a free port. */
export interface TcpListener {
  hostname: string;
  port: number;
}

/**
 * Parses `[host:]port`; the host defaults to 127.0.0.1 so nothing is exposed
 * by accident. The one reading of an address, for flags and the configuration.
 *
 * @returns The address, or undefined when the text is not one.
 */
export function parseTcpListener(text: string): TcpListener | undefined {
  const match = /^(?:(\[[0-9a-fA-F:]+\]|[^:]+):)?(\d+)$/.exec(text);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) return undefined;
  return { hostname: (match[1] ?? "127.0.0.1").replace(/^\[|\]$/g, ""), port };
}

/** Where a server listens: a Unix socket, TCP, or both. */
export interface ListenSettings {
  /** A Unix socket path; its directory is created if missing. @default none */
  unixPath?: string;
  /** A TCP address. @default none */
  tcp?: TcpListener;
}

/** The status API: where it listens, and who may change the setup through it. */
export interface ApiSettings extends ListenSettings {
  /**
   * The bearer token that allows mutations (POST) from any address; needed
   * to listen on TCP beyond loopback. @default none (mutations only over the
   * Unix socket, as root or `socketGroup`)
   */
  token?: string;
  /**
   * The group, by name or number, that owns the Unix socket (mode 0660): its
   * members may connect and change the setup. @default none (root only)
   */
  socketGroup?: string | number;
}

/** The NBD export. */
export interface NbdSettings extends ListenSettings {
  /** The export's name. */
  exportName: string;
  /**
   * The module the data plane's connection workers start (it must call
   * `runNbdConnectionWorker()` when loaded in a worker, as main.ts and the
   * bundle do). Workers serve the Unix socket when every disk is a file or
   * block device this process opened; otherwise requests go through the
   * engine on the event loop. @default workerModuleUrl()
   */
  workerUrl?: URL;
  /** The kernel's `/dev/nbdN`, attached by the server itself. @default not attached */
  attach?: KernelAttachSettings;
  /**
   * The kernel's `/dev/ublkbN` instead of `/dev/nbdN` (not both): the ublk
   * backend of the same kernel-device lifecycle. @default none
   */
  ublk?: UblkSettings;
}

/** The policies a setup evaluates, and how often besides on events. */
export interface PolicyRunSettings {
  rules: readonly PolicySettings[];
  intervalMs: number;
}

/** Everything a {@link SetupService} is told. */
export interface ServiceSettings {
  nbd: NbdSettings;
  /** The status API. */
  api: ApiSettings;
  /** The setup's event history database (SQLite); its directory is created if missing. */
  eventsPath: string;
  /** Where the metadata backups go (`backup_directory.ts`). @default none (no backups) */
  backupDir?: string;
  /** Extra attempts at a failing main-disk read. @default READ_RETRIES_DEFAULT */
  readRetries?: number;
  /** The allocation policy to serve with, recorded in the setup. @default the setup's own */
  allocation?: AllocationPolicy;
  /**
   * The background scanner's settings given as flags; each one missing is
   * taken from the metadata, else the default (`mod/scan/scan_record.ts`).
   * @default {} (the recorded settings)
   */
  scan?: Partial<ScanSettings>;
  /**
   * The runtime directory: the service records itself in
   * `<dir>/setups/<uuid>.json` while it serves (`runtime_state.ts`).
   * @default none (nothing recorded)
   */
  runtimeDir?: string;
  /** Where alerts go; SIGHUP may replace them (`SetupService.reconfigure`). @default no alerts */
  alerts?: AlertSettings;
  /** Policies evaluated by the server; SIGHUP may replace them. @default none */
  policies?: PolicyRunSettings;
  /**
   * The periodic SMART reader of the setup's disks; `false` turns it off
   * (`--no-smart`). @default every SMART_INTERVAL_MS_DEFAULT
   */
  smart?: false | {
    intervalMs?: number;
    /** Reads one device (a test gives readings of its own). @default smartctl --json */
    read?: (path: string) => Promise<SmartReading>;
    /** The disks to read for a path of the setup. @default the physical disks under it */
    disksUnder?: (path: string) => Promise<string[]>;
  };
  /** The metadata scrub on start and every interval. @default every SCRUB_INTERVAL_MS_DEFAULT */
  scrub?: { intervalMs?: number };
}

/**
 * The one settings object of a running setup: every address, path and
 * choice the service needs. The CLI builds it from flags and defaults
 * (`mod/cli/service_settings.ts`); the service reads nothing else, no flag,
 * environment variable or module-level default of the CLI's.
 *
 * @module
 */

import type { KernelAttachSettings } from "../export/nbd/kernel_attachment.ts";
import type { ScanSettings } from "../scan/mod.ts";
export type { KernelAttachSettings };

/** A TCP address to listen on; port 0 picks a free port. */
export interface TcpListener {
  hostname: string;
  port: number;
}

/** Where a server listens: a Unix socket, TCP, or both. */
export interface ListenSettings {
  /** A Unix socket path; its directory is created if missing. @default none */
  unixPath?: string;
  /** A TCP address. @default none */
  tcp?: TcpListener;
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
   * engine on the event loop. @default Deno.mainModule
   */
  workerUrl?: URL;
  /** The kernel's `/dev/nbdN`, attached by the server itself. @default not attached */
  attach?: KernelAttachSettings;
}

/** Everything a {@link SetupService} is told. */
export interface ServiceSettings {
  nbd: NbdSettings;
  /** The status API. */
  api: ListenSettings;
  /** The setup's event history database (SQLite); its directory is created if missing. */
  eventsPath: string;
  /** Where the metadata backups go (`backup_directory.ts`). @default none (no backups) */
  backupDir?: string;
  /** Extra attempts at a failing main-disk read. @default READ_RETRIES_DEFAULT */
  readRetries?: number;
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
}

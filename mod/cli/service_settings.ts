/**
 * The one place the CLI turns flags and defaults into the settings of a
 * running setup ({@link ServiceSettings}): `serve` puts its sockets under
 * {@link RUN_DIR} and its history under {@link STATE_DIR}, named after the
 * setup; `demo` keeps everything in its own state directory.
 *
 * @module
 */

import {
  ATTACH_CONNECTIONS_DEFAULT,
  ATTACH_DEAD_CONNECTION_TIMEOUT_S_DEFAULT,
  ATTACH_REQUEST_TIMEOUT_S_DEFAULT,
  KERNEL_TIMEOUT_S_MAX,
  NBD_CONNECTIONS_MAX,
  READ_RETRIES_MAX,
} from "../constants.ts";
import { UsageError } from "../errors.ts";
import type { KernelAttachSettings, ServiceSettings, TcpListener } from "../service/settings.ts";
import type { ScanSettings } from "../scan/mod.ts";
import type { OptionValue } from "./command.ts";
import {
  BACKUP_DIR,
  durationOption,
  integerOption,
  RUN_DIR,
  sizeOption,
  STATE_DIR,
  stringOption,
  tcpOption,
} from "./options.ts";

/** `serve`'s flags, checked; undefined where not given. */
export interface ServeFlags {
  socket?: string;
  tcp?: TcpListener;
  apiSocket?: string;
  apiTcp?: TcpListener;
  exportName?: string;
  readRetries?: number;
  eventsDb?: string;
  backupDir?: string;
  attach?: KernelAttachSettings;
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
  return {
    readRetries: integerOption("read-retries", stringOption(values["read-retries"]), {
      min: 0,
      max: READ_RETRIES_MAX,
    }),
    tcp: tcpOption("tcp", stringOption(values.tcp)),
    apiTcp: tcpOption("api-tcp", stringOption(values["api-tcp"])),
    socket: stringOption(values.socket),
    apiSocket: stringOption(values["api-socket"]),
    exportName: stringOption(values["export-name"]),
    eventsDb: stringOption(values["events-db"]),
    backupDir: stringOption(values["backup-dir"]),
    attach: attachFlags(values),
    scan: {
      enabled: values["no-scan"] ? false : undefined,
      intervalMs: durationOption("scan-interval", stringOption(values["scan-interval"])),
      rateMaxBytesPerS: sizeOption("scan-rate-max", stringOption(values["scan-rate-max"])),
      regionBytes: sizeOption("region-size", stringOption(values["region-size"])),
    },
  };
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
  };
}

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
    },
    api: { unixPath: flags.apiSocket ?? `${RUN_DIR}/${setupName}.api.sock`, tcp: flags.apiTcp },
    // The history lives with the setup's state, where it survives reboots.
    eventsPath: flags.eventsDb ?? eventsPathOf(setupName),
    backupDir: flags.backupDir ?? BACKUP_DIR,
    readRetries: flags.readRetries,
    scan: flags.scan,
    runtimeDir: RUN_DIR,
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

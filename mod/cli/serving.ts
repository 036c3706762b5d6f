/**
 * Running a setup: assemble the engine, export it over NBD, serve the status
 * API, and shut down gracefully on SIGTERM/SIGINT (finish in-flight requests,
 * flush every device, write the metadata, close).
 *
 * @module
 */

import { createApp } from "../api/app.ts";
import { serveApi } from "../api/http_server.ts";
import { assembleSetup, type OpenedSpares } from "../assembly/assemble.ts";
import { BackupKeeper } from "../assembly/backup_directory.ts";
import type { ProbedIdentity } from "../assembly/identity.ts";
import type { SetupStatus } from "../api/status.ts";
import type { Device } from "../device/device.ts";
import { serveNbd } from "../export/nbd/server.ts";
import type { RemapDevice, RemapEvent } from "../remap/remap_device.ts";
import type { CliOutput } from "./mod.ts";
import type { TcpAddress } from "./options.ts";
import { statusSourceOf } from "./status_source.ts";
import { EventHistory } from "../events/event_history.ts";
import { DataPlane } from "../datapath/data_plane.ts";
import { servingMarkerOfThisProcess } from "./serving_marker.ts";

/** Where and how to serve. */
export interface ServingOptions {
  main: { device: Device; identity: ProbedIdentity };
  spares: OpenedSpares;
  exportName: string;
  nbdUnixPath?: string;
  nbdTcp?: TcpAddress;
  apiUnixPath?: string;
  apiTcp?: TcpAddress;
  readRetries?: number;
  /** The setup's event history database (SQLite). */
  eventsPath: string;
  /** Where the metadata backups go (`backup_directory.ts`); none are written without it. */
  backupDir?: string;
  output: CliOutput;
  /**
   * The module NBD connection workers start (it must call `runConnectionWorker()`
   * when loaded in a worker, as main.ts and the bundle do). @default Deno.mainModule
   */
  workerUrl?: URL;
}

/** A running setup. */
export interface Serving {
  engine: RemapDevice;
  /** The same view the status API serves. */
  status(): SetupStatus;
  nbdAddresses: string[];
  apiAddresses: string[];
  /** Stops accepting, drains, flushes, persists and closes everything. */
  stop(): Promise<void>;
}

/** Describes an engine event as one log line (journald keeps them). */
export function describeEvent(event: RemapEvent): string {
  switch (event.type) {
    case "remap":
      return `remapped block ${event.blockIndex} to spare ${event.spareIndex} slot ${event.slotIndex}`;
    case "pending":
      return `block ${event.blockIndex} is unreadable: pending until it is rewritten`;
    case "read-error":
      return `read error on the main disk: offset ${event.offsetBytes}, length ${event.lengthBytes}`;
    case "remap-failed":
      return `could not remap block ${event.blockIndex}: ${event.reason}`;
    case "spare-failed":
      return `spare ${event.spareIndex} failed and takes no new remaps: ${event.reason}`;
    case "degraded":
      return `setup degraded: ${event.reason}`;
  }
}

/** Assembles and serves a setup until {@link Serving.stop}. */
export async function startServing(options: ServingOptions): Promise<Serving> {
  const { output } = options;
  const name = options.spares.description.setup.name;
  const history = EventHistory.open(options.eventsPath);
  const backups = options.backupDir === undefined ? undefined : new BackupKeeper(
    options.backupDir,
    () => options.spares.stores,
    (error) =>
      output.err(
        `dm-remap[${name}]: cannot write the metadata backup in ${options.backupDir}: ${
          (error as Error).message
        }`,
      ),
  );
  const engine = await assembleSetup(options.main, options.spares, {
    readRetries: options.readRetries,
    onSetupWritten: () => backups?.request("setup state"),
    onEvent: (event) => {
      const message = describeEvent(event);
      output.err(`dm-remap[${name}]: ${message}`);
      history.record({
        type: event.type,
        message,
        blockIndex: "blockIndex" in event ? event.blockIndex : undefined,
        spareIndex: "spareIndex" in event ? event.spareIndex : undefined,
        slotIndex: "slotIndex" in event ? event.slotIndex : undefined,
      });
    },
  }).catch((error) => {
    history.close();
    throw error;
  });
  await backups?.requestUnlessCurrent("serve start");
  const dataPlane = dataPlaneFor(engine, options);
  // Until everything listens, a failure leaves the disks as they were: the
  // engine has written nothing, and closing it writes nothing either.
  const abandon = async (error: unknown, stopNbd: () => Promise<void> | void): Promise<never> => {
    await stopNbd();
    await engine.close();
    history.close();
    throw error;
  };
  const nbd = await serveNbd({
    dataPlane,
    device: engine,
    exportName: options.exportName,
    description: `dm-remap setup ${name}`,
    preferredBlockBytes: engine.blockBytes,
    unixPath: options.nbdUnixPath,
    tcp: options.nbdTcp,
    log: (line) => output.err(`dm-remap[${name}] nbd: ${line}`),
  }).catch((error) => abandon(error, () => dataPlane?.close()));
  const nbdAddresses = [
    ...(options.nbdUnixPath
      ? [`nbd+unix:///${options.exportName}?socket=${options.nbdUnixPath}`]
      : []),
    ...(nbd.tcpPort !== undefined
      ? [`nbd://${options.nbdTcp!.hostname}:${nbd.tcpPort}/${options.exportName}`]
      : []),
  ];
  const source = statusSourceOf(engine, {
    spares: options.spares,
    history,
    served: dataPlane ? () => dataPlane.counters() : undefined,
    nbd: {
      exportName: options.exportName,
      unixPath: options.nbdUnixPath,
      tcp: nbd.tcpPort !== undefined ? `${options.nbdTcp!.hostname}:${nbd.tcpPort}` : undefined,
      connections: () => nbd.connectionCount,
    },
  });
  const api = await serveApi(createApp(source), {
    unixPath: options.apiUnixPath,
    tcp: options.apiTcp,
  }).catch((error) => abandon(error, () => nbd.close()));
  // The clean-stop flag: removed by engine.close() when stop() runs.
  await engine.markServing(servingMarkerOfThisProcess());
  history.record({
    type: "started",
    message:
      `serving ${engine.sizeBytes} bytes with ${engine.remapCount} remaps, ${engine.pendingBlocks.length} pending`,
  });
  // SIGUSR1 reports each worker connection's state on stderr, as dd reports its
  // progress: what a stall report needs from a server whose workers are blocked.
  const reportConnections = () => {
    for (const line of dataPlane?.describeConnections() ?? []) {
      output.err(`dm-remap[${name}] ${line}`);
    }
  };
  Deno.addSignalListener("SIGUSR1", reportConnections);
  let stopping: Promise<void> | undefined;
  return {
    engine,
    status: () => source.status(),
    nbdAddresses,
    apiAddresses: api.addresses.map((address) =>
      address.transport === "unix" ? address.path : address.url
    ),
    stop() {
      stopping ??= (async () => {
        Deno.removeSignalListener("SIGUSR1", reportConnections);
        await nbd.close();
        await engine.flush();
        await engine.close();
        await backups?.idle();
        await api.close();
        history.record({
          type: "stopped",
          message: `stopped cleanly with ${engine.remapCount} remaps`,
        });
        history.close();
      })();
      return stopping;
    },
  };
}

/**
 * Worker threads serve the Unix socket when every disk offers direct access
 * (a worker does I/O on the descriptors itself). The main disk may leave
 * ranges to its device, which then sees the requests touching them; the
 * workers check no such ranges on spares, so a spare that leaves any is
 * served through the engine, like a disk without direct access.
 */
function dataPlaneFor(engine: RemapDevice, options: ServingOptions): DataPlane | undefined {
  if (options.nbdUnixPath === undefined) return undefined;
  const main = options.main.device.directAccess?.();
  if (main === undefined) return undefined;
  const spares = [];
  for (const spare of engine.spares) {
    const access = spare.device.directAccess?.();
    if (access === undefined || access.leftToDevice !== undefined) return undefined;
    spares[spare.index] = {
      index: spare.index,
      fd: access.fd,
      direct: access.direct,
      dataOffsetBytes: spare.store.payload.layout.dataOffsetBytes,
    };
  }
  return new DataPlane({
    engine,
    main: { fd: main.fd, direct: main.direct },
    spares,
    workerUrl: options.workerUrl ?? new URL(Deno.mainModule),
    leftToDevice: main.leftToDevice,
  });
}

/** Resolves on the first SIGINT or SIGTERM. */
export function untilSignal(): Promise<Deno.Signal> {
  return new Promise((resolve) => {
    const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
    const handlers = signals.map((signal) => {
      const handler = () => {
        signals.forEach((each, i) => Deno.removeSignalListener(each, handlers[i]!));
        resolve(signal);
      };
      Deno.addSignalListener(signal, handler);
      return handler;
    });
  });
}

/**
 * The setup's NBD export: the server on its Unix socket and TCP address, and
 * the data plane's connection workers when this process can hand them the
 * disks. While it runs, SIGUSR1 reports each worker connection's state.
 *
 * @module
 */

import { DataPlane, type DataPlaneCounters } from "../datapath/data_plane.ts";
import { workerModuleUrl } from "../datapath/worker_module.ts";
import type { Device } from "../device/device.ts";
import { KernelAttachError } from "../errors.ts";
import { type NbdServer, serveNbd } from "../export/nbd/server.ts";
import { KernelAttachment, type KernelRelease } from "../export/nbd/kernel_attachment.ts";
import { UblkAttachment } from "../export/ublk/ublk_attachment.ts";
import { UBLK_QUEUE_WORKER_NAME } from "../export/ublk/worker_name.ts";
import { UBLK_IO_BYTES_MAX } from "../constants.ts";
import type { RemapDevice } from "../remap/remap_device.ts";
import type { SpareMember } from "../remap/spare_set.ts";
import { assert } from "../assert.ts";
import type { ServiceComponent } from "./component.ts";
import type { NbdSettings } from "./settings.ts";
import type { NbdView } from "./status_source.ts";

/** Options of {@link NbdExport}. */
export interface NbdExportOptions {
  /** The main disk as opened: the data plane's workers do I/O on its descriptor. */
  main: { device: Device };
  settings: NbdSettings;
  /** Shown by clients. */
  description: string;
  /** The setup's UUID, recorded with the kernel device so a later server finds it. */
  setupUuid: string;
  /** Receives the server's log lines and the SIGUSR1 report, one line at a time. */
  log: (line: string) => void;
}

/**
 * What becomes of the kernel device at stop: `auto` detaches it unless it is
 * in use (mounted, stacked on, open), and then leaves it attached, holding
 * its I/O for the next server (a restart).
 */
export type KernelDeviceAtStop = KernelRelease | "auto";

/**
 * The kernel's block device, whichever backend serves it: `/dev/nbdN`
 * ({@link KernelAttachment}) or `/dev/ublkbN` ({@link UblkAttachment}).
 */
interface KernelDevice {
  readonly devicePath: string | undefined;
  readonly connectionCount: number;
  busyReason(): string | undefined;
  release(how: KernelRelease): Promise<void>;
}

/** Serves the engine over NBD between {@link start} and {@link stop}. */
export class NbdExport implements ServiceComponent {
  readonly #engine: RemapDevice;
  readonly #options: NbdExportOptions;
  #dataPlane: DataPlane | undefined;
  #server: NbdServer | undefined;
  #kernel: KernelDevice | undefined;
  /** The ublk queues' own data plane (its workers are queue workers, not NBD ones). */
  #ublkDataPlane: DataPlane | undefined;
  /** Set by the service before {@link stop}. */
  kernelDeviceAtStop: KernelDeviceAtStop = "auto";
  // SIGUSR1 reports each worker connection's state, as dd reports its
  // progress: what a stall report needs from a server whose workers are blocked.
  readonly #reportConnections = () => {
    for (const plane of [this.#dataPlane, this.#ublkDataPlane]) {
      for (const line of plane?.describeConnections() ?? []) this.#options.log(line);
    }
  };

  constructor(engine: RemapDevice, options: NbdExportOptions) {
    this.#engine = engine;
    this.#options = options;
  }

  async start(): Promise<void> {
    const { settings } = this.#options;
    const dataPlane = dataPlaneFor(this.#engine, {
      main: this.#options.main,
      nbdUnixPath: settings.unixPath,
      workerUrl: settings.workerUrl,
    });
    if (settings.attach && dataPlane === undefined) {
      throw new KernelAttachError(
        "cannot attach /dev/nbd*: the kernel's connections are served by workers, which need " +
          "every disk opened by this process (no fault layer) and a Unix socket export",
      );
    }
    this.#server = await serveNbd({
      dataPlane,
      device: this.#engine,
      exportName: settings.exportName,
      description: this.#options.description,
      preferredBlockBytes: this.#engine.blockBytes,
      unixPath: settings.unixPath,
      tcp: settings.tcp,
      log: (line) => this.#options.log(`nbd: ${line}`),
    }).catch(async (error) => {
      await dataPlane?.close();
      throw error;
    });
    this.#dataPlane = dataPlane;
    if (settings.attach) await this.#attachKernel(dataPlane!, settings.attach);
    else if (settings.ublk) await this.#attachUblk(settings.ublk);
    Deno.addSignalListener("SIGUSR1", this.#reportConnections);
  }

  /**
   * Lets the workers of later connections reach a spare that joined while
   * serving (`spare add`). One without direct access (a fault layer) is left
   * to the engine: the workers send every request touching it there.
   */
  spareJoined(spare: SpareMember): void {
    const access = spare.device.directAccess?.();
    if (access === undefined || access.leftToDevice !== undefined) return;
    const handle = {
      index: spare.index,
      fd: access.fd,
      direct: access.direct,
      layout: spare.layout,
    };
    for (const plane of [this.#dataPlane, this.#ublkDataPlane]) plane?.addSpare({ ...handle });
  }

  async #attachKernel(dataPlane: DataPlane, attach: NonNullable<NbdSettings["attach"]>) {
    const kernel = new KernelAttachment(dataPlane, {
      settings: attach,
      export: {
        name: this.#options.settings.exportName,
        sizeBytes: this.#engine.sizeBytes,
        preferredBlockBytes: this.#engine.blockBytes,
      },
      setupUuid: this.#options.setupUuid,
      log: (line) => this.#options.log(`nbd: ${line}`),
    });
    try {
      await kernel.attach();
    } catch (error) {
      await kernel.release("keep");
      await this.#server!.close();
      throw error;
    }
    this.#kernel = kernel;
  }

  async #attachUblk(ublk: NonNullable<NbdSettings["ublk"]>) {
    const dataPlane = dataPlaneFor(this.#engine, {
      main: this.#options.main,
      workerUrl: this.#options.settings.workerUrl,
      workerName: UBLK_QUEUE_WORKER_NAME,
    });
    if (dataPlane === undefined) {
      await this.#server!.close();
      throw new KernelAttachError(
        "cannot serve /dev/ublkb*: its queues are served by workers, which need every disk " +
          "opened by this process (no fault layer)",
      );
    }
    const kernel = new UblkAttachment(dataPlane, {
      settings: ublk,
      sizeBytes: this.#engine.sizeBytes,
      blockBytes: this.#engine.blockBytes,
      maxIoBytes: UBLK_IO_BYTES_MAX,
      setupUuid: this.#options.setupUuid,
      log: (line) => this.#options.log(line),
    });
    try {
      await kernel.attach();
    } catch (error) {
      dataPlane.close();
      await this.#server!.close();
      throw error;
    }
    this.#ublkDataPlane = dataPlane;
    this.#kernel = kernel;
  }

  /** The kernel's device, once attached. */
  get kernelDevice(): string | undefined {
    return this.#kernel?.devicePath;
  }

  /** Stops accepting, lets requests in flight finish, and closes the workers. */
  async stop(): Promise<void> {
    Deno.removeSignalListener("SIGUSR1", this.#reportConnections);
    await this.#releaseKernel();
    this.#ublkDataPlane?.close();
    await this.#running().close();
  }

  async #releaseKernel(): Promise<void> {
    const kernel = this.#kernel;
    if (kernel === undefined) return;
    let how = this.kernelDeviceAtStop;
    if (how === "auto") {
      const busy = kernel.busyReason();
      if (busy !== undefined) this.#options.log(`nbd: ${kernel.devicePath} is in use (${busy})`);
      how = busy === undefined ? "detach" : "keep";
    }
    await kernel.release(how);
  }

  /** The addresses clients connect to, as NBD URIs. */
  get addresses(): string[] {
    const { settings } = this.#options;
    const server = this.#running();
    return [
      ...(settings.unixPath
        ? [`nbd+unix:///${settings.exportName}?socket=${settings.unixPath}`]
        : []),
      ...(server.tcpPort !== undefined
        ? [`nbd://${settings.tcp!.hostname}:${server.tcpPort}/${settings.exportName}`]
        : []),
    ];
  }

  /** What the status API shows of the export. */
  get view(): NbdView {
    const { settings } = this.#options;
    const server = this.#running();
    return {
      exportName: settings.exportName,
      unixPath: settings.unixPath,
      tcp: server.tcpPort !== undefined ? `${settings.tcp!.hostname}:${server.tcpPort}` : undefined,
      connections: () => server.connectionCount + (this.#kernel?.connectionCount ?? 0),
      kernelDevice: () => this.#kernel?.devicePath,
    };
  }

  /** Requests the workers served themselves (not through the engine); none without workers. */
  get served(): (() => DataPlaneCounters) | undefined {
    const planes = [this.#dataPlane, this.#ublkDataPlane].filter((plane) => plane !== undefined);
    if (planes.length === 0) return undefined;
    return () => {
      const [first, ...rest] = planes.map((plane) => plane.counters());
      for (const counters of rest) {
        for (const key of Object.keys(first!) as (keyof DataPlaneCounters)[]) {
          first![key] += counters[key];
        }
      }
      return first!;
    };
  }

  #running(): NbdServer {
    assert(this.#server !== undefined, "the NBD export has started");
    return this.#server;
  }
}

/** What {@link dataPlaneFor} decides from. */
interface DataPlaneInputs {
  main: { device: Device };
  /** NBD: workers serve only the Unix socket; without one there is no NBD data plane. */
  nbdUnixPath?: string;
  workerUrl?: URL;
  /** The workers' name (ublk's queue workers have one). */
  workerName?: string;
}

/**
 * Worker threads serve the Unix socket when every disk offers direct access
 * (a worker does I/O on the descriptors itself). The main disk may leave
 * ranges to its device, which then sees the requests touching them; the
 * workers check no such ranges on spares, so a spare that leaves any is
 * served through the engine, like a disk without direct access.
 */
function dataPlaneFor(engine: RemapDevice, options: DataPlaneInputs): DataPlane | undefined {
  if (options.nbdUnixPath === undefined && options.workerName === undefined) return undefined;
  const main = options.main.device.directAccess?.();
  if (main === undefined) return undefined;
  const spares = [];
  for (const spare of engine.spares) {
    // A removed spare holds no block: the workers never need it.
    if (spare.state === "removed") continue;
    const access = spare.device.directAccess?.();
    if (access === undefined || access.leftToDevice !== undefined) return undefined;
    spares[spare.index] = {
      index: spare.index,
      fd: access.fd,
      direct: access.direct,
      layout: spare.layout,
    };
  }
  return new DataPlane({
    engine,
    main: { fd: main.fd, direct: main.direct },
    spares,
    workerUrl: options.workerUrl ?? workerModuleUrl(),
    workerName: options.workerName,
    leftToDevice: main.leftToDevice,
  });
}

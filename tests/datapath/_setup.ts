/**
 * A setup on real files served by the NBD data plane, for tests with real
 * clients. The engine sees the main file through a fault layer, the workers
 * through its descriptor: so a test can make remaps and pending blocks
 * through the engine (as if the disk had failed there) and then check that
 * the workers route every request by them. With `faultsVisible`, the workers
 * also leave the fault layer's bad blocks to it, as `serve` sets it up.
 *
 * @module
 */

import { assembleSetup, openSpares } from "../../mod/assembly/assemble.ts";
import { createSetup } from "../../mod/assembly/create.ts";
import { DataPlane } from "../../mod/datapath/data_plane.ts";
import type { Device } from "../../mod/device/device.ts";
import { type FileDevice, openFileDevice } from "../../mod/device/file_device.ts";
import { FaultyDevice } from "../../mod/fault/faulty_device.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import { type NbdServer, serveNbd } from "../../mod/export/nbd/server.ts";
import type { RemapDevice, RemapEvent } from "../../mod/remap/remap_device.ts";

/** The worker module tests start (main.ts does the same from the CLI). */
export const WORKER_URL = new URL("../../mod/export/nbd/worker_entry.ts", import.meta.url);

/** Options of {@link startServedSetup}. */
export interface ServedSetupOptions {
  mainBytes?: number;
  spareSlots?: number;
  /** Serve this file as the main disk instead of a new one (a failing disk, say). */
  mainPath?: string;
  /** Use this file or device as the spare instead of a new file (at least the default size). */
  sparePath?: string;
  /** O_DIRECT for every disk. @default true */
  direct?: boolean;
  /** Whether workers send requests touching the fault layer's bad blocks through it. @default false */
  faultsVisible?: boolean;
  /** Also listen on a free TCP port of 127.0.0.1 (served on the event loop). @default false */
  tcp?: boolean;
  /** The server's handshake deadline. @default NBD_HANDSHAKE_TIMEOUT_MS_DEFAULT */
  handshakeTimeoutMs?: number;
  /** The module connection workers start from. @default WORKER_URL */
  workerUrl?: URL;
}

/** A served setup; dispose it to stop everything and remove the files. */
export interface ServedSetup extends AsyncDisposable {
  engine: RemapDevice;
  events: RemapEvent[];
  /** The engine's view of the main disk: faults set here reach only forwarded requests. */
  faulty: FaultyDevice;
  dataPlane: DataPlane;
  server: NbdServer;
  mainPath: string;
  sparePath: string;
  uri: string;
  blockBytes: number;
}

/** Creates a setup on files in a new temporary directory and serves it on a Unix socket. */
export async function startServedSetup(options: ServedSetupOptions = {}): Promise<ServedSetup> {
  const blockBytes = 4096;
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "dm-remap-dataplane-" });
  const mainPath = options.mainPath ?? `${dir}/main.img`;
  const sparePath = options.sparePath ?? `${dir}/spare.img`;
  if (options.mainPath === undefined) {
    await Deno.writeFile(mainPath, new Uint8Array(0));
    await Deno.truncate(mainPath, options.mainBytes ?? 64 * 1024 * 1024);
  }
  if (options.sparePath === undefined) {
    await Deno.writeFile(sparePath, new Uint8Array(0));
    await Deno.truncate(sparePath, spareBytesFor(blockBytes, options.spareSlots));
  }
  const direct = options.direct ?? true;
  const main = await openFileDevice(mainPath, { direct });
  const spare = await openFileDevice(sparePath, { direct });
  const identity = { path: mainPath, kind: "file" as const, sizeBytes: main.sizeBytes };
  const faulty = new FaultyDevice(main, { blockBytes: 512 });
  await createSetup({
    name: "dp",
    main: { device: faulty, identity },
    spares: [{ device: spare, path: sparePath }],
    blockBytes,
  });
  const events: RemapEvent[] = [];
  const engine = await assembleSetup({ device: faulty, identity }, await openSpares([spare]), {
    readRetries: 0,
    metadataDelayMs: 0,
    onEvent: (event) => events.push(event),
  });
  const mainAccess = options.faultsVisible ? faulty.directAccess()! : main.directAccess();
  const dataPlane = new DataPlane({
    engine,
    main: { fd: mainAccess.fd, direct },
    spares: [{
      index: 0,
      fd: spare.directAccess().fd,
      direct,
      layout: engine.spares[0]!.layout,
    }],
    workerUrl: options.workerUrl ?? WORKER_URL,
    leftToDevice: mainAccess.leftToDevice,
  });
  const socketPath = `${dir}/nbd.sock`;
  const server = await serveNbd({
    device: engine,
    dataPlane,
    exportName: "dp",
    preferredBlockBytes: blockBytes,
    unixPath: socketPath,
    tcp: options.tcp ? { hostname: "127.0.0.1", port: 0 } : undefined,
    handshakeTimeoutMs: options.handshakeTimeoutMs,
  });
  return {
    engine,
    events,
    faulty,
    dataPlane,
    server,
    mainPath,
    sparePath,
    uri: `nbd+unix:///dp?socket=${socketPath}`,
    blockBytes,
    async [Symbol.asyncDispose]() {
      await server.close();
      await engine.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A worker module that fails to start until {@link FailingWorkerModule.heal} is called. */
export interface FailingWorkerModule extends AsyncDisposable {
  workerUrl: URL;
  /** Workers started from now on load the real worker module. */
  heal(): Promise<void>;
}

/**
 * A module for `workerUrl` that throws as it loads (as a worker does whose working directory was
 * removed) while a marker file exists, and otherwise loads {@link WORKER_URL}.
 */
export async function failingWorkerModule(): Promise<FailingWorkerModule> {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-worker-fails-" });
  const marker = `${dir}/failing`;
  await Deno.writeTextFile(marker, "");
  const workerUrl = new URL(`file://${dir}/worker_fails_while_marked.ts`);
  await Deno.writeTextFile(
    workerUrl,
    `const marked = await Deno.stat(${JSON.stringify(marker)}).then(() => true, () => false);\n` +
      `if (marked) throw new Error("this worker fails to start while marked");\n` +
      `await import(${JSON.stringify(WORKER_URL.href)});\n`,
  );
  return {
    workerUrl,
    heal: () => Deno.remove(marker),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** The size of the spare {@link startServedSetup} makes: 4096 slots unless told. */
export function spareBytesFor(blockBytes: number, spareSlots = 4096): number {
  return minimumSpareBytes(blockBytes) + spareSlots * blockBytes;
}

/** Bytes of a file at an offset, read around every layer. */
export async function fileBytes(path: string, offsetBytes: number, lengthBytes: number) {
  using file = await Deno.open(path);
  await file.seek(offsetBytes, Deno.SeekMode.Start);
  const bytes = new Uint8Array(lengthBytes);
  for (let filled = 0; filled < lengthBytes;) {
    const count = await file.read(bytes.subarray(filled));
    if (count === null) throw new Error(`${path} ends before ${offsetBytes + lengthBytes}`);
    filled += count;
  }
  return bytes;
}

export type { Device, FileDevice };

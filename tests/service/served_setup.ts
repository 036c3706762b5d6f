/**
 * A real setup served by {@link SetupService} for the API's end-to-end tests
 * (guard, dashboard in Chromium, promtool): files in a temporary directory,
 * a main disk whose chosen blocks fail, and remaps and pending blocks made
 * through the engine, as an NBD client's requests make them.
 *
 * @module
 */

import { openSpares } from "../../mod/assembly/assemble.ts";
import { createSetup } from "../../mod/assembly/create.ts";
import { openFileDevice } from "../../mod/device/file_device.ts";
import { FaultyDevice } from "../../mod/fault/faulty_device.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import { SetupService, type SetupServiceOptions } from "../../mod/service/setup_service.ts";
import type { ApiSettings } from "../../mod/service/settings.ts";
import type { ScanSettings } from "../../mod/scan/mod.ts";

export const BLOCK_BYTES = 4096;
const MAIN_BYTES = 64 * 1024 * 1024;
const SPARE_SLOTS = 256;

/** Options of {@link serveSetup}. */
export interface ServeSetupOptions {
  /** Main-disk blocks written once each, so each is remapped. @default [] */
  remapBlocks?: number[];
  /** Main-disk blocks read once each, so each is pending. @default [] */
  pendingBlocks?: number[];
  /** More failing main-disk blocks, left for the test to write or read. @default [] */
  badBlocks?: number[];
  /** The API's settings besides its socket path. @default socket only */
  api?: Omit<ApiSettings, "unixPath">;
  onStopRequested?: SetupServiceOptions["onStopRequested"];
  onReloadRequested?: SetupServiceOptions["onReloadRequested"];
  /** The scanner's settings. @default its schedule off, the other settings by default */
  scan?: Partial<ScanSettings>;
}

/** A served setup and where its files are. */
export interface ServedSetup {
  dir: string;
  service: SetupService;
  /** The main disk, behind the fault layer: tests add bad, weak or slow blocks. */
  main: FaultyDevice;
  apiSocket: string;
  sparePath: string;
  /** Stops the service and removes the directory. */
  close(): Promise<void>;
}

/**
 * Creates setup "web" on files (a 64 MiB main disk, one spare) and serves it.
 *
 * @param options The blocks to remap and to leave pending, and the API settings.
 * @returns The running service.
 */
export async function serveSetup(options: ServeSetupOptions = {}): Promise<ServedSetup> {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-served-" });
  const mainPath = `${dir}/main.img`;
  const sparePath = `${dir}/spare.img`;
  await Deno.writeFile(mainPath, new Uint8Array(0));
  await Deno.truncate(mainPath, MAIN_BYTES);
  await Deno.writeFile(sparePath, new Uint8Array(0));
  await Deno.truncate(sparePath, minimumSpareBytes(BLOCK_BYTES) + SPARE_SLOTS * BLOCK_BYTES);
  const identity = { path: mainPath, kind: "file" as const, sizeBytes: MAIN_BYTES };
  {
    const main = await openFileDevice(mainPath, { direct: false });
    const spare = await openFileDevice(sparePath, { direct: false });
    await createSetup({
      name: "web",
      main: { device: main, identity },
      spares: [{ device: spare, path: sparePath }],
      blockBytes: BLOCK_BYTES,
    });
    await main.close();
    await spare.close();
  }
  const remapBlocks = options.remapBlocks ?? [];
  const pendingBlocks = options.pendingBlocks ?? [];
  const main = new FaultyDevice(await openFileDevice(mainPath, { direct: false }), {
    blockBytes: BLOCK_BYTES,
    badBlocks: [...remapBlocks, ...pendingBlocks, ...options.badBlocks ?? []],
  });
  const spares = await openSpares([await openFileDevice(sparePath, { direct: false })]);
  const apiSocket = `${dir}/run/api.sock`;
  const service = new SetupService({ main: { device: main, identity }, spares }, {
    settings: {
      nbd: { exportName: "web", unixPath: `${dir}/run/nbd.sock` },
      api: { unixPath: apiSocket, ...options.api },
      eventsPath: `${dir}/state/events.sqlite`,
      // The scanner would read the bad blocks and write the metadata on its own schedule; the
      // tests that use this setup are about the API (tests/scan covers the scanner).
      scan: { enabled: false, ...options.scan },
    },
    log: () => {},
    onStopRequested: options.onStopRequested,
    onReloadRequested: options.onReloadRequested,
  });
  await service.start();
  const data = new Uint8Array(BLOCK_BYTES).fill(0x5a);
  for (const block of remapBlocks) await service.engine.write(data, block * BLOCK_BYTES);
  for (const block of pendingBlocks) {
    await service.engine.read(new Uint8Array(BLOCK_BYTES), block * BLOCK_BYTES).then(
      () => {
        throw new Error(`a read of bad block ${block} succeeded`);
      },
      () => {},
    );
  }
  return {
    dir,
    service,
    main,
    apiSocket,
    sparePath,
    async close() {
      await service.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * `dm-remap demo`: the embedded default. Creates sparse image files for a
 * 1 GiB main disk and two 64 MiB spares, marks a few main-disk blocks as
 * failing through the fault layer, writes to them so that remapping happens,
 * then serves the setup over NBD and the status API until Ctrl-C.
 *
 * It writes only into a state directory of its own: a new one, or an empty
 * one. A directory that holds anything (an earlier run, where a client may
 * have written data since, or someone's files) is refused, never reused.
 *
 * @module
 */

import { openSpares } from "../../assembly/assemble.ts";
import { createSetup } from "../../assembly/create.ts";
import { FaultyDevice } from "../../fault/faulty_device.ts";
import { assert } from "../../assert.ts";
import { DeviceIoError, RefusedError } from "../../errors.ts";
import type { Device } from "../../device/device.ts";
import { closeAll, openPath } from "../../assembly/open_path.ts";
import { SetupService } from "../../service/setup_service.ts";
import type { CommandInput } from "../command.ts";
import { stringOption } from "../options.ts";
import { DEMO_EXPORT_NAME, demoSettings } from "../service_settings.ts";
import { untilSignal } from "../stop_signal.ts";
import { formatStatus } from "./status.ts";

const MAIN_BYTES = 1024 * 1024 * 1024;
const SPARE_BYTES = 64 * 1024 * 1024;
const BLOCK_BYTES = 4096;
/** Blocks whose writes (and reads) fail: spread over the disk, one at each end. */
const FAILING_BLOCKS = [0, 1000, 1001, 4096, 65_536, 131_072, 200_000, 262_143];
/** A block that can no longer be read: its read is EIO and it becomes pending. */
const UNREADABLE_BLOCK = 300;

/** Runs the demo; with `--once` it stops after the remapping instead of serving. */
export async function demoCommand({ values, output }: CommandInput): Promise<number> {
  const stateDir = stringOption(values["state-dir"]) ?? "state";
  await claimStateDirectory(stateDir);
  const paths = {
    main: `${stateDir}/main.img`,
    spares: [`${stateDir}/spare0.img`, `${stateDir}/spare1.img`],
  };
  await createSparseFile(paths.main, MAIN_BYTES);
  for (const path of paths.spares) await createSparseFile(path, SPARE_BYTES);

  const stopRequested = values.once === true ? Promise.resolve() : untilSignal();
  const devices: Device[] = [];
  try {
    const main = await openPath(paths.main, { readOnly: false, direct: true });
    devices.push(main.device);
    const spareDevices = [];
    for (const path of paths.spares) {
      const spare = await openPath(path, { readOnly: false, direct: true });
      devices.push(spare.device);
      spareDevices.push(spare.device);
    }
    await createSetup({
      name: "demo",
      main,
      spares: spareDevices.map((device, i) => ({ device, path: paths.spares[i]! })),
      blockBytes: BLOCK_BYTES,
    });
    output.out(
      `Created setup "demo": ${paths.main} (1 GiB) with spares ${paths.spares.join(", ")}`,
    );
    const faultyMain = new FaultyDevice(main.device, {
      blockBytes: BLOCK_BYTES,
      badBlocks: FAILING_BLOCKS,
    });
    faultyMain.addBadBlocks([UNREADABLE_BLOCK], "read");
    output.out(
      `Fault layer: blocks ${
        FAILING_BLOCKS.join(", ")
      } fail reads and writes; block ${UNREADABLE_BLOCK} fails reads`,
    );
    const serving = new SetupService({
      main: { device: faultyMain, identity: main.identity },
      spares: await openSpares(spareDevices),
    }, { settings: demoSettings(values, stateDir), log: (line) => output.err(line) });
    await serving.start();
    devices.length = 0;
    await exerciseFailingBlocks(serving.engine, output);
    output.out("");
    output.out(formatStatus(serving.status()));
    output.out("");
    output.out("Connect with:");
    for (const address of serving.nbdAddresses) {
      output.out(`  nbdinfo '${address}'`);
      output.out(`  qemu-io -f raw '${address}' -c 'read -v 0 512'`);
    }
    output.out(
      `  nbd-client -unix ${stateDir}/demo.nbd.sock /dev/nbd0 -N ${DEMO_EXPORT_NAME} -b 4096   (kernel with nbd.ko)`,
    );
    for (const address of serving.apiAddresses) output.out(`  status API: ${address}`);
    output.out(
      `  node_modules/.bin/deno run -A main.ts status --api-socket ${stateDir}/demo.api.sock`,
    );
    if (values.once !== true) {
      output.out("Serving; press Ctrl-C to stop.");
      await stopRequested;
    }
    await serving.stop();
    output.out("Stopped cleanly: requests finished, disks flushed, metadata written.");
    return 0;
  } finally {
    await closeAll(devices);
  }
}

/**
 * Makes `path` the demo's own directory: created now, or existing and empty.
 *
 * @throws {RefusedError} When it holds anything: the demo never writes over data it did not write.
 */
async function claimStateDirectory(path: string): Promise<void> {
  const parent = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
  await Deno.mkdir(parent || "/", { recursive: true });
  try {
    await Deno.mkdir(path);
    return;
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
  for await (const entry of Deno.readDir(path)) {
    throw new RefusedError(
      path,
      `The demo's state directory "${path}" is not empty (it holds "${entry.name}", from an ` +
        `earlier run or someone's files): the demo writes only into a new or empty directory, ` +
        `so that it never writes over data it did not write itself. Remove it ` +
        `("rm -r ${path}") or give another with --state-dir`,
    );
  }
}

/** Creates a sparse image; an existing file is an error (the directory was just claimed). */
async function createSparseFile(path: string, sizeBytes: number): Promise<void> {
  const file = await Deno.open(path, { createNew: true, write: true });
  try {
    await file.truncate(sizeBytes);
  } finally {
    file.close();
  }
}

/** Writes each failing block as a client would (so it is remapped), and reads the unreadable one. */
async function exerciseFailingBlocks(
  engine: Device & { remapCount: number },
  output: { out: (line: string) => void },
): Promise<void> {
  const before = engine.remapCount;
  for (const block of FAILING_BLOCKS) {
    const data = new TextEncoder().encode(
      `dm-remap demo: block ${block} lives on a spare now\n`.padEnd(BLOCK_BYTES),
    );
    await engine.write(data, block * BLOCK_BYTES, { fua: true });
  }
  output.out(
    `Wrote the ${FAILING_BLOCKS.length} failing blocks: ${engine.remapCount - before} new remaps`,
  );
  const unreadable = await engine.read(new Uint8Array(BLOCK_BYTES), UNREADABLE_BLOCK * BLOCK_BYTES)
    .then(() => false, (error) => {
      if (!(error instanceof DeviceIoError)) throw error;
      return true;
    });
  assert(unreadable, "the fault layer fails every read of the unreadable block");
  output.out(
    `Reading block ${UNREADABLE_BLOCK} gave EIO, as it must: it is pending until it is rewritten`,
  );
}

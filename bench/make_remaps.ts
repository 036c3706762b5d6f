/**
 * Builds a setup with many remaps offline, for the benchmark's "remapped" target.
 *
 * Goal: a spare whose remap log holds `--remaps` entries spread over the main
 * disk, made fast (no data-path I/O), as tests/scale does. A real remap copies
 * the block's data into its slot; here only the slots of blocks below
 * `--fill-bytes` (the range fio uses) get the main disk's data, so reads of
 * them cost what reads of data cost, not of tmpfs holes, and writes find their
 * pages there. The other slots are never written.
 * Method: createSetup over the main disk and a sparse spare sized for the
 * slots, then SpareStore.appendRemaps in group-commit batches. Afterwards the
 * spare is reopened and assembled in-process to time the open path and the
 * table's memory. Prints one JSON line with the measurements.
 *
 * With `--spares N` (N > 1), N - 1 more spares of 64 MiB join the setup;
 * every remap stays on the first, and under format version 2 each other
 * spare logs it too (as the engine does), so the open reads every view.
 *
 * Usage: deno run -A bench/make_remaps.ts --name N --main M --spare S
 *          [--remaps 1000000] [--block-size 4096] [--stride 4] [--fill-bytes 0] [--spares 1]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { openFileDevice } from "../mod/device/file_device.ts";
import { createSetup } from "../mod/assembly/create.ts";
import { assembleSetup, openSpares } from "../mod/assembly/assemble.ts";
import { REMAP_BATCH_MAX } from "../mod/constants.ts";
import { minimumSpareBytes } from "../mod/metadata/spare_layout.ts";
import { FORMAT_VERSION } from "../mod/metadata/superblock.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    name: { type: "string" },
    main: { type: "string" },
    spare: { type: "string" },
    remaps: { type: "string", default: "1000000" },
    "block-size": { type: "string", default: "4096" },
    stride: { type: "string", default: "4" },
    "fill-bytes": { type: "string", default: "0" },
    spares: { type: "string", default: "1" },
  },
});
const remaps = Number(values.remaps);
const blockBytes = Number(values["block-size"]);
const stride = Number(values.stride);
const fillBytes = Number(values["fill-bytes"]);
const mainPath = values.main!;
const sparePath = values.spare!;

const mainBytes = (await Deno.stat(mainPath)).size;
const blockCount = Math.floor(mainBytes / blockBytes);
if (remaps * stride > blockCount) {
  throw new Error(`Cannot spread ${remaps} remaps with stride ${stride} over ${blockCount} blocks`);
}
// Same spread as tests/scale: every stride-th block, jittered inside its stride.
const blockOf = (slot: number) => slot * stride + (slot % Math.min(3, stride));

const spareBytes = Math.ceil(
  (minimumSpareBytes(blockBytes) + (remaps + 1024) * (blockBytes + 16)) / 4096,
) * 4096;
await Deno.writeFile(sparePath, new Uint8Array(0));
await Deno.truncate(sparePath, spareBytes);

const extraPaths = Array.from(
  { length: Number(values.spares) - 1 },
  (_, i) => `${sparePath}.${i + 1}`,
);
for (const path of extraPaths) {
  await Deno.writeFile(path, new Uint8Array(0));
  await Deno.truncate(path, 64 * 1024 * 1024);
}
const main = await openFileDevice(mainPath, { exclusive: true });
const spare = await openFileDevice(sparePath, { exclusive: true });
const extras = [];
for (const path of extraPaths) extras.push(await openFileDevice(path, { exclusive: true }));
const identity = { path: mainPath, kind: "file" as const, sizeBytes: mainBytes };
const [store, ...others] = await createSetup({
  name: values.name!,
  main: { device: main, identity },
  spares: [
    { device: spare, path: sparePath },
    ...extras.map((device, i) => ({ device, path: extraPaths[i]! })),
  ],
  blockBytes,
});
const appendStart = performance.now();
for (let first = 0; first < remaps; first += REMAP_BATCH_MAX) {
  const count = Math.min(REMAP_BATCH_MAX, remaps - first);
  const blocks = Array.from({ length: count }, (_, i) => blockOf(first + i));
  await store!.appendRemaps(blocks);
  // Version 2 logs every remap on every spare; version 1 only on its own.
  if (FORMAT_VERSION >= 2) { for (const other of others) await other.appendRemaps(blocks, 0); }
}
const appendMs = performance.now() - appendStart;
const block = new Uint8Array(blockBytes);
const slotsOffset = store!.payload.layout.dataOffsetBytes;
let filledSlots = 0;
for (let slot = 0; slot < remaps && (blockOf(slot) + 1) * blockBytes <= fillBytes; slot++) {
  await main.read(block, blockOf(slot) * blockBytes);
  await spare.write(block, slotsOffset + slot * blockBytes);
  filledSlots++;
}
await spare.flush();
await spare.close();
for (const extra of extras) await extra.close();

// Time the open path in-process: spare metadata read and the table rebuilt.
const memoryBefore = Deno.memoryUsage();
const openStart = performance.now();
const reopened = [];
for (const path of [sparePath, ...extraPaths]) {
  reopened.push(await openFileDevice(path, { exclusive: true }));
}
const opened = await openSpares(reopened);
const openSparesMs = performance.now() - openStart;
const engine = await assembleSetup({ device: main, identity }, opened);
const openMs = performance.now() - openStart;
const memoryAfter = Deno.memoryUsage();
const result = {
  formatVersion: FORMAT_VERSION,
  spares: 1 + extraPaths.length,
  remaps: engine.remapCount,
  blockBytes,
  stride,
  mainBytes,
  spareBytes,
  appendMs,
  filledSlots,
  openSparesMs,
  assembleMs: openMs,
  tableBytesPerRemap: engine.tableMemoryBytes / remaps,
  heapGrowthBytesPerRemap: (memoryAfter.heapUsed + memoryAfter.external -
    memoryBefore.heapUsed - memoryBefore.external) / remaps,
  rssGrowthBytesPerRemap: (memoryAfter.rss - memoryBefore.rss) / remaps,
};
await engine.close();
for (const path of extraPaths) await Deno.remove(path);
console.log(JSON.stringify(result));

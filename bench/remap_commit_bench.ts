/**
 * Remap commit latency of the engine, in-process, for the format comparison
 * of issue 16 (bench/format_compare.ts runs it from two trees side by side).
 *
 * Goal: the latency of a client write that must be remapped: compose, slot
 * write, spare flush, log append on every spare that logs it, log flush.
 * Method: a fresh setup of file devices in `--dir` (a real filesystem, so
 * fdatasync costs what it costs), the main disk behind the fault layer with
 * every block of the written range failing writes; `--writes` 4 KiB writes to
 * distinct blocks in a shuffled order, `--qd` of them in flight, each waiting
 * for its own remap. Only the API that versions 1 and 2 share is used.
 * Prints one JSON line: format version, spares, qd, p50/p99/mean in µs.
 *
 * Usage: deno run -A bench/remap_commit_bench.ts [--dir /tmp] [--spares 1] [--qd 1] [--writes 2000]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { openFileDevice } from "../mod/device/file_device.ts";
import { createSetup } from "../mod/assembly/create.ts";
import { assembleSetup, openSpares } from "../mod/assembly/assemble.ts";
import { FaultyDevice } from "../mod/fault/faulty_device.ts";
import { FORMAT_VERSION } from "../mod/metadata/superblock.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    dir: { type: "string", default: "/tmp" },
    spares: { type: "string", default: "1" },
    qd: { type: "string", default: "1" },
    writes: { type: "string", default: "2000" },
  },
});
const spareCount = Number(values.spares);
const qd = Number(values.qd);
const writes = Number(values.writes);
const blockBytes = 4096;
const dir = await Deno.makeTempDir({ dir: values.dir, prefix: "dm-remap-commit-bench-" });
try {
  const mainPath = `${dir}/main.img`;
  await Deno.writeFile(mainPath, new Uint8Array(0));
  await Deno.truncate(mainPath, 256 * 1024 * 1024);
  const sparePaths = Array.from({ length: spareCount }, (_, i) => `${dir}/spare${i}.img`);
  for (const path of sparePaths) {
    await Deno.writeFile(path, new Uint8Array(0));
    // Each spare alone holds every remap, so the placement never moves on.
    await Deno.truncate(path, 64 * 1024 * 1024 + writes * blockBytes);
  }
  const main = await openFileDevice(mainPath, { exclusive: true });
  const identity = { path: mainPath, kind: "file" as const, sizeBytes: main.sizeBytes };
  const spareDevices = [];
  for (const path of sparePaths) spareDevices.push(await openFileDevice(path, { exclusive: true }));
  await createSetup({
    name: "bench",
    main: { device: main, identity },
    spares: spareDevices.map((device, i) => ({ device, path: sparePaths[i]! })),
    blockBytes,
  });
  const faulty = new FaultyDevice(main, { blockBytes });
  faulty.setBad({ offsetBytes: 0, lengthBytes: writes * blockBytes }, "write");
  const engine = await assembleSetup({ device: faulty, identity }, await openSpares(spareDevices));

  const order = Array.from({ length: writes }, (_, i) => i);
  let seed = 12345;
  for (let i = order.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const latenciesUs: number[] = [];
  const data = new Uint8Array(blockBytes).fill(0x5a);
  const queue = { next: 0 };
  await Promise.all(
    Array.from({ length: qd }, () => writeEach(engine, { order, queue, data, latenciesUs })),
  );
  if (engine.remapCount !== writes) throw new Error(`${engine.remapCount} remaps, not ${writes}`);
  await engine.close();
  latenciesUs.sort((a, b) => a - b);
  const at = (q: number) =>
    latenciesUs[Math.min(latenciesUs.length - 1, Math.floor(q * latenciesUs.length))]!;
  console.log(JSON.stringify({
    formatVersion: FORMAT_VERSION,
    spares: spareCount,
    qd,
    writes,
    p50Us: Math.round(at(0.5)),
    p99Us: Math.round(at(0.99)),
    meanUs: Math.round(latenciesUs.reduce((sum, value) => sum + value, 0) / latenciesUs.length),
  }));
} finally {
  await Deno.remove(dir, { recursive: true });
}

/** Writes the blocks of `order` one at a time until none is left, recording each latency. */
async function writeEach(
  engine: { write(data: Uint8Array, offsetBytes: number): Promise<void> },
  work: { order: number[]; queue: { next: number }; data: Uint8Array; latenciesUs: number[] },
): Promise<void> {
  while (work.queue.next < work.order.length) {
    const blockIndex = work.order[work.queue.next++]!;
    const start = performance.now();
    await engine.write(work.data, blockIndex * work.data.length);
    work.latenciesUs.push((performance.now() - start) * 1000);
  }
}

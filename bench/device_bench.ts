/**
 * Micro-benchmark of the device layer's per-request costs, to size the fixes
 * the server profile points at (bench/RESULTS.md, "Where the time goes").
 *
 * Goal: separate (1) the cost of Deno's nonblocking FFI dispatch (a worker
 * thread hand-off per call) from the syscall itself, (2) the cost of the
 * O_DIRECT bounce buffer that FileDevice uses for unaligned caller buffers,
 * and (3) the cost of asking the runtime for a buffer's address, which the
 * data plane's AIO batch caches instead.
 * Method: 4 KiB random preads/pwrites at 32 in flight for a fixed time on a
 * tmpfs file, in one process, no NBD. The FFI rows bind libc directly; the
 * FileDevice rows use the product's openFileDevice.
 *
 * Usage: deno run -A bench/device_bench.ts [--file /dev/shm/x.img] [--seconds 2]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { openFileDevice } from "../mod/device/file_device.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { file: { type: "string" }, seconds: { type: "string", default: "2" } },
});
const SECONDS = Number(values.seconds);
const DEPTH = 32;
const BLOCK = 4096;
const FILE_BYTES = 256 * 1024 * 1024;
const ownFile = values.file === undefined;
const path = values.file ?? `/dev/shm/dm-remap-device-bench-${Deno.pid}.img`;

const libc = Deno.dlopen("libc.so.6", {
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize", nonblocking: true },
  preadSync: { name: "pread", parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  getpid: { parameters: [], result: "i32", nonblocking: true },
  getpidSync: { name: "getpid", parameters: [], result: "i32" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
}).symbols;

function aligned(length: number, misalignBytes: number): Uint8Array {
  const raw = new Uint8Array(length + 8192);
  const address = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(raw)) as bigint % 4096n);
  const start = (address === 0 ? 0 : 4096 - address) + misalignBytes;
  return raw.subarray(start, start + length);
}

let seed = 12345;
function randomOffset(): number {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return (seed % (FILE_BYTES / BLOCK)) * BLOCK;
}

/** Runs `op` with DEPTH in flight for SECONDS; returns ops per second. */
async function measure(op: (worker: number) => Promise<unknown>): Promise<number> {
  let count = 0;
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: DEPTH }, async (_, worker) => {
    while (performance.now() < end) {
      await op(worker);
      count++;
    }
  }));
  return count / SECONDS;
}

function measureSync(op: () => void): number {
  let count = 0;
  const end = performance.now() + SECONDS * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 256; i++) op();
    count += 256;
  }
  return count / SECONDS;
}

const rows: [string, number][] = [];
try {
  if (ownFile) {
    const file = await Deno.open(path, { create: true, write: true, truncate: true });
    const chunk = crypto.getRandomValues(new Uint8Array(65536));
    for (let at = 0; at < FILE_BYTES; at += chunk.length) await file.write(chunk);
    file.close();
  }
  const fd = libc.open(new TextEncoder().encode(path + "\0"), 2, 0);
  const buffers = Array.from({ length: DEPTH }, () => aligned(BLOCK, 0));
  rows.push(["FFI nonblocking getpid (dispatch only)", await measure(() => libc.getpid())]);
  rows.push(["FFI sync getpid", await measureSync(() => libc.getpidSync())]);
  // What the data plane's AIO batch avoids by caching base addresses per ArrayBuffer.
  const piece = buffers[0]!.subarray(512, 1024);
  rows.push([
    "buffer address from the runtime (Deno.UnsafePointer.of + value)",
    await measureSync(() => Deno.UnsafePointer.value(Deno.UnsafePointer.of(piece))),
  ]);
  const bases = new WeakMap<ArrayBufferLike, bigint>();
  bases.set(piece.buffer, 0n);
  rows.push([
    "buffer address from a per-ArrayBuffer cache (WeakMap)",
    await measureSync(() => bases.get(piece.buffer)! + BigInt(piece.byteOffset)),
  ]);
  rows.push([
    "FFI nonblocking pread 4K, number args",
    await measure((w) =>
      libc.pread(fd, buffers[w]!, BLOCK as unknown as bigint, randomOffset() as unknown as bigint)
    ),
  ]);
  rows.push([
    "FFI nonblocking pread 4K, BigInt args (as mod/sys/libc.ts)",
    await measure((w) => libc.pread(fd, buffers[w]!, BigInt(BLOCK), BigInt(randomOffset()))),
  ]);
  rows.push([
    "FFI sync pread 4K (blocks the event loop)",
    await measureSync(() =>
      libc.preadSync(
        fd,
        buffers[0]!,
        BLOCK as unknown as bigint,
        randomOffset() as unknown as bigint,
      )
    ),
  ]);
  libc.close(fd);
  for (const direct of [true, false]) {
    const device = await openFileDevice(path, { direct });
    for (const misalign of [0, 16]) {
      const bufs = Array.from({ length: DEPTH }, () => aligned(BLOCK, misalign));
      rows.push([
        `FileDevice.read 4K direct=${direct} buffer ${
          misalign ? "unaligned (+16, as NBD replies)" : "4K-aligned"
        }`,
        await measure((w) => device.read(bufs[w]!, randomOffset())),
      ]);
      rows.push([
        `FileDevice.write 4K direct=${direct} buffer ${
          misalign ? "unaligned (+16)" : "4K-aligned"
        }`,
        await measure((w) => device.write(bufs[w]!, randomOffset())),
      ]);
    }
    await device.close();
  }
} finally {
  if (ownFile) await Deno.remove(path).catch(() => {});
}
const result = Object.fromEntries(rows);
for (const [name, rate] of rows) {
  console.error(`${(rate / 1000).toFixed(1).padStart(8)}K/s  ${name}`);
}
console.log(JSON.stringify({ depth: DEPTH, seconds: SECONDS, opsPerSecond: result }));

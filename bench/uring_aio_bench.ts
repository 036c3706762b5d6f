/**
 * io_uring against Linux AIO for the data path's disk I/O (issue 18: "the
 * disk I/O itself on io_uring where that is faster than the current AIO
 * path"), to decide whether the ublk queues should move their disk I/O.
 *
 * Goal: the cost per request of the two kernel interfaces as a queue worker
 * would drive them, from Deno, with nothing else in the way: throughput and
 * the process's CPU time per request.
 * Method: one thread, one file opened O_DIRECT on the host's disk, 4 KiB
 * random reads and writes with DEPTH requests in flight (1 and 32), SECONDS
 * per run; the two interfaces alternate run by run, REPS times, in an order
 * reversed every other repetition, so each ratio compares runs seconds apart.
 * - aio: as the data path's `AioRing` (sys/aio.ts) submits: one `io_submit`
 *   for what was prepared, then `io_getevents(min 1)`: two system calls a round.
 * - io_uring: the SQEs filled in the mapped ring, one `io_uring_enter`
 *   (submit, wait for 1), completions read from memory: one system call a round.
 * Both synchronous FFI on the caller's thread (a ublk queue worker's way).
 * CPU time is `process.cpuUsage()` over the run (user + system).
 *
 * Usage: deno run -A bench/uring_aio_bench.ts [--file /var/tmp/x.img] [--seconds 3] [--reps 3]
 *   [--json bench/results/<date>-uring-aio.json]
 *
 * @module
 */

import { parseArgs } from "node:util";
import process from "node:process";
import { AIO_OPCODE, AIO_SYSCALLS, EVENT_BYTES, IOCB_BYTES, writeIocb } from "../mod/sys/aio.ts";
import { IORING_OP, IoUring, prepareSqe } from "../mod/sys/io_uring.ts";
import { addressOf, callSync, loadLibc, OPEN_FLAGS, openPath } from "../mod/sys/libc.ts";
import { alignedBytes } from "../mod/aligned_bytes.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    file: { type: "string" },
    seconds: { type: "string", default: "3" },
    reps: { type: "string", default: "3" },
    json: { type: "string" },
  },
});
const SECONDS = Number(values.seconds);
const REPS = Number(values.reps);
const BLOCK = 4096;
const FILE_BYTES = 1024 * 1024 * 1024;
const path = values.file ?? `/var/tmp/dm-remap-uring-aio-${Deno.pid}.img`;
const libc = loadLibc();

let seed = 12345;
function randomOffset(): number {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return (seed % (FILE_BYTES / BLOCK)) * BLOCK;
}

interface Run {
  requests: number;
  seconds: number;
  cpuMicros: number;
}

/** Runs `round` (one system-call round, returning requests completed) for SECONDS. */
function timed(round: () => number): Run {
  const cpu = process.cpuUsage();
  const start = performance.now();
  const end = start + SECONDS * 1000;
  let requests = 0;
  while (performance.now() < end) requests += round();
  const used = process.cpuUsage(cpu);
  return {
    requests,
    seconds: (performance.now() - start) / 1000,
    cpuMicros: used.user + used.system,
  };
}

/** DEPTH requests always in flight through Linux AIO: io_submit, then io_getevents(min 1). */
function runAio(fd: number, depth: number, write: boolean): Run {
  const context = new BigUint64Array(1);
  const setup = callSync(() =>
    libc.syscallSync(
      AIO_SYSCALLS.ioSetup,
      BigInt(depth),
      addressOf(new Uint8Array(context.buffer)),
      0n,
      0n,
      0n,
    )
  );
  if (setup < 0) throw new Error(`io_setup: errno ${-setup}`);
  const buffers = Array.from({ length: depth }, () => alignedBytes(BLOCK));
  const iocbs = new Uint8Array(depth * IOCB_BYTES);
  const iocbView = new DataView(iocbs.buffer);
  const iocbBase = addressOf(iocbs);
  const submitList = new BigUint64Array(depth);
  const submitAddress = addressOf(new Uint8Array(submitList.buffer));
  const events = new BigInt64Array(depth * (EVENT_BYTES / 8));
  const eventsAddress = addressOf(new Uint8Array(events.buffer));
  const ready: number[] = Array.from({ length: depth }, (_, slot) => slot);
  const opcode = write ? AIO_OPCODE.PWRITE : AIO_OPCODE.PREAD;
  try {
    return timed(() => {
      let count = 0;
      for (const slot of ready) {
        writeIocb(iocbs, iocbView, slot * IOCB_BYTES, {
          token: slot,
          opcode,
          fd,
          address: addressOf(buffers[slot]!),
          lengthBytes: BLOCK,
          offsetBytes: randomOffset(),
          rwFlags: 0,
          eventFd: -1,
        });
        submitList[count++] = iocbBase + BigInt(slot * IOCB_BYTES);
      }
      ready.length = 0;
      const submitted = callSync(() =>
        libc.syscallSync(AIO_SYSCALLS.ioSubmit, context[0]!, BigInt(count), submitAddress, 0n, 0n)
      );
      if (submitted !== count) throw new Error(`io_submit: ${submitted} of ${count}`);
      const got = callSync(() =>
        libc.syscallSync(
          AIO_SYSCALLS.ioGetevents,
          context[0]!,
          1n,
          BigInt(depth),
          eventsAddress,
          0n,
        )
      );
      if (got < 1) throw new Error(`io_getevents: ${got}`);
      for (let i = 0; i < got; i++) {
        const result = Number(events[i * 4 + 2]);
        if (result !== BLOCK) throw new Error(`AIO request: ${result}`);
        ready.push(Number(events[i * 4]));
      }
      return got;
    });
  } finally {
    libc.syscallSync(AIO_SYSCALLS.ioDestroy, context[0]!, 0n, 0n, 0n, 0n);
  }
}

/** DEPTH requests always in flight through io_uring: one io_uring_enter(submit, wait 1) a round. */
function runUring(fd: number, depth: number, write: boolean): Run {
  const ring = IoUring.create({ entries: depth });
  if (typeof ring === "number") throw new Error(`io_uring_setup: errno ${-ring}`);
  const buffers = Array.from({ length: depth }, () => alignedBytes(BLOCK));
  const addresses = buffers.map(addressOf);
  const ready: number[] = Array.from({ length: depth }, (_, slot) => slot);
  const opcode = write ? IORING_OP.WRITE : IORING_OP.READ;
  let failed: number | undefined;
  try {
    return timed(() => {
      for (const slot of ready) {
        prepareSqe(ring.nextSqe()!, {
          opcode,
          fd,
          userData: BigInt(slot),
          addr: addresses[slot],
          len: BLOCK,
          off: BigInt(randomOffset()),
        });
      }
      ready.length = 0;
      const entered = ring.submit(1);
      if (entered < 0) throw new Error(`io_uring_enter: errno ${-entered}`);
      const got = ring.reap((completion) => {
        if (completion.result !== BLOCK) failed = completion.result;
        ready.push(Number(completion.userData));
      });
      if (failed !== undefined) throw new Error(`io_uring request: ${failed}`);
      return got;
    });
  } finally {
    ring.close();
  }
}

const ownFile = values.file === undefined;
if (ownFile) {
  // Written in full, so reads hit allocated blocks, as a disk's would.
  const file = await Deno.open(path, { create: true, write: true, truncate: true });
  const chunk = new Uint8Array(8 * 1024 * 1024).fill(0x5a);
  for (let at = 0; at < FILE_BYTES; at += chunk.length) await file.write(chunk);
  file.syncSync();
  file.close();
}
const fd = openPath(path, OPEN_FLAGS.O_RDWR | OPEN_FLAGS.O_DIRECT);
if (fd < 0) throw new Error(`open ${path}: errno ${-fd}`);
type Cell = { job: string; depth: number; aio: Run[]; uring: Run[] };
const cells: Cell[] = [];
try {
  for (const write of [false, true]) {
    for (const depth of [1, 32]) {
      const cell: Cell = { job: `rand${write ? "write" : "read"}4k`, depth, aio: [], uring: [] };
      for (let rep = 0; rep < REPS; rep++) {
        const order = rep % 2 === 0 ? ["aio", "uring"] as const : ["uring", "aio"] as const;
        for (const which of order) {
          cell[which].push(which === "aio" ? runAio(fd, depth, write) : runUring(fd, depth, write));
        }
      }
      cells.push(cell);
    }
  }
} finally {
  libc.close(fd);
  if (ownFile) await Deno.remove(path);
}

const median = (numbers: number[]) => numbers.toSorted((a, b) => a - b)[numbers.length >> 1]!;
const rows = cells.map((cell) => {
  const iops = (run: Run) => run.requests / run.seconds;
  const cpuPerRequest = (run: Run) => run.cpuMicros / run.requests;
  return {
    job: cell.job,
    depth: cell.depth,
    aioIops: Math.round(median(cell.aio.map(iops))),
    uringIops: Math.round(median(cell.uring.map(iops))),
    // Paired by repetition: the runs of one repetition are seconds apart.
    uringOverAioIops: median(cell.uring.map((run, i) => iops(run) / iops(cell.aio[i]!))),
    aioCpuUsPerRequest: median(cell.aio.map(cpuPerRequest)),
    uringCpuUsPerRequest: median(cell.uring.map(cpuPerRequest)),
    uringOverAioCpu: median(
      cell.uring.map((run, i) => cpuPerRequest(run) / cpuPerRequest(cell.aio[i]!)),
    ),
  };
});
for (const row of rows) {
  console.log(
    `${row.job} QD${row.depth}: IOPS aio ${row.aioIops}, io_uring ${row.uringIops} ` +
      `(÷ ${row.uringOverAioIops.toFixed(2)}); CPU µs/request aio ` +
      `${row.aioCpuUsPerRequest.toFixed(1)}, io_uring ${row.uringCpuUsPerRequest.toFixed(1)} ` +
      `(÷ ${row.uringOverAioCpu.toFixed(2)})`,
  );
}
if (values.json) {
  await Deno.writeTextFile(
    values.json,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        kernel: Deno.osRelease(),
        file: ownFile ? "/var/tmp (ext4 on virtio)" : path,
        seconds: SECONDS,
        reps: REPS,
        rows,
        runs: cells,
      },
      null,
      2,
    ) + "\n",
  );
}

/**
 * io_uring against Linux AIO for the data path's disk I/O (issue 18: "the
 * disk I/O itself on io_uring where that is faster than the current AIO
 * path"): the decision for the ublk queues rests on it (docs/ublk.md).
 *
 * Goal: the data path's two I/O queues, `AioBatch` (Linux AIO: one
 * `io_submit` per batch, `io_getevents` per reap) and `UringBatch`
 * (io_uring: one `io_uring_enter` per batch, completions read from the
 * mapped ring), compared as a worker drives them: throughput and the
 * process's CPU time per request.
 * Method: one thread, one file opened O_DIRECT on the host's disk, 4 KiB
 * random reads and writes with DEPTH requests in flight (1 and 32), SECONDS
 * per run; the two queues alternate run by run, REPS times, in an order
 * reversed every other repetition, so each ratio compares runs seconds apart.
 * A worker's loop: prepare into the free room, submit, reap; with nothing
 * reaped, poll() on the eventfd the completions signal, reap again. At QD1
 * both run the lone request synchronously (their shared `runAlone`): the
 * QD1 rows are the control, equal but for noise. CPU time is
 * `process.cpuUsage()` over the run (user + system).
 *
 * Usage: deno run -A bench/uring_aio_bench.ts [--file /var/tmp/x.img] [--seconds 3] [--reps 3]
 *   [--json bench/results/<date>-uring-aio.json]
 *
 * @module
 */

import { parseArgs } from "node:util";
import process from "node:process";
import { alignedBytes } from "../mod/aligned_bytes.ts";
import { AioBatch } from "../mod/datapath/aio_batch.ts";
import type { IoQueueOpener } from "../mod/datapath/io_queue.ts";
import { UringBatch } from "../mod/datapath/uring_batch.ts";
import { AIO_OPCODE } from "../mod/sys/aio.ts";
import { OPEN_FLAGS, openPath } from "../mod/sys/libc.ts";
import {
  closeDescriptor,
  createEventFd,
  drainEventFd,
  pollDescriptors,
  POLLIN,
} from "../mod/sys/syscalls.ts";

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

/**
 * DEPTH requests always in flight through one of the data path's I/O queues,
 * driven as a worker drives it: prepare what the free room allows, submit,
 * reap; with nothing reaped, sleep in poll() on the eventfd, then reap again.
 */
function runQueue(open: IoQueueOpener, context: { fd: number; depth: number; write: boolean }) {
  const { fd, depth, write } = context;
  const eventFd = createEventFd();
  const queue = open<number>(eventFd);
  if (typeof queue === "number") throw new Error(`open the queue: errno ${-queue}`);
  const buffers = Array.from({ length: depth }, () => alignedBytes(BLOCK));
  const ready: number[] = Array.from({ length: depth }, (_, slot) => slot);
  const pollFd = new Uint8Array(8);
  const pollView = new DataView(pollFd.buffer);
  let failed: number | undefined;
  const complete = (slot: number, result: number) => {
    if (result !== BLOCK) failed = result;
    ready.push(slot);
  };
  try {
    return timed(() => {
      for (const slot of ready) {
        queue.prepare({
          opcode: write ? AIO_OPCODE.PWRITE : AIO_OPCODE.PREAD,
          fd,
          buffer: buffers[slot]!,
          offsetBytes: randomOffset(),
          rwFlags: 0,
        }, slot);
      }
      ready.length = 0;
      queue.submit();
      queue.reap(complete);
      while (ready.length === 0) {
        pollView.setInt32(0, eventFd, true);
        pollView.setInt16(4, POLLIN, true);
        pollDescriptors(pollFd, 1, 1000);
        drainEventFd(eventFd);
        queue.reap(complete);
      }
      if (failed !== undefined) throw new Error(`a request failed: ${failed}`);
      return ready.length;
    });
  } finally {
    queue.reapAll(complete);
    queue.close();
    closeDescriptor(eventFd);
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
          const open = which === "aio" ? AioBatch.open : UringBatch.open;
          cell[which].push(runQueue(open, { fd, depth, write }));
        }
      }
      cells.push(cell);
    }
  }
} finally {
  closeDescriptor(fd);
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

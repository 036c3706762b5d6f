/**
 * One ublk queue served on a worker thread of the data plane: the queue's
 * io_uring, its FETCH_REQ / COMMIT_AND_FETCH_REQ command per tag, and the
 * mapped descriptor array that says what each tag's request is. Requests go
 * to the transport-neutral data path (`datapath/data_path.ts`) exactly as
 * NBD's do, so the remap rules have one implementation.
 *
 * Why synchronous `io_uring_enter` on this thread: the driver takes a
 * queue's commands only from the task that sent its first FETCH_REQ (the
 * queue's "daemon"), and completes them as task work of that task. Deno's
 * `nonblocking` FFI calls run on a pool thread, so they could not.
 *
 * Waking: the thread sleeps in `io_uring_enter` waiting for one completion.
 * Besides the tags' commands, two POLL_ADD entries watch the data path's
 * eventfd (disk I/O done) and the setup's wake eventfd (a message from the
 * engine's thread, or the stop signal), so every event that needs the
 * thread ends the wait; nothing relies on `Worker.terminate()`, which cannot
 * interrupt a blocked system call.
 *
 * Ending: once the engine's thread sets the mailbox's STOP word (after
 * STOP_DEV answered, or to leave the device to a later server) and no
 * request is in progress, the ring is closed: the kernel cancels the
 * outstanding fetches. A fetch completed with UBLK_IO_RES_ABORT also ends
 * its tag.
 *
 * @module
 */

import { assert } from "../../assert.ts";
import { alignedBytes } from "../../aligned_bytes.ts";
import { DataPath, type MessageQueue, type PathRequest } from "../../datapath/data_path.ts";
import type { DataError, DataOp } from "../../datapath/data_request.ts";
import { COUNTERS, type FromWorker, MAILBOX, type WorkerSetup } from "../../datapath/messages.ts";
import { runConnectionWorker } from "../../datapath/worker_main.ts";
import type { IoErrorCode } from "../../errors.ts";
import { addressOf, ERRNO } from "../../sys/libc.ts";
import {
  type Completion,
  IORING_OP,
  IoUring,
  mapShared,
  prepareSqe,
  SQE,
  unmap,
} from "../../sys/io_uring.ts";
import { drainEventFd, POLLIN } from "../../sys/syscalls.ts";
import {
  descriptorAreaBytes,
  descriptorAreaOffset,
  IO_CMD,
  IO_DESC,
  UBLK_IO_F,
  UBLK_IO_OP,
  UBLK_IO_RES_ABORT,
  UBLK_IO_RES_OK,
  UBLK_U_IO,
} from "../../sys/ublk_abi.ts";

/** What a queue worker is told beyond the data path's setup (`WorkerSetup.transport`). */
export interface UblkQueueTransport {
  devId: number;
  queueId: number;
  queueDepth: number;
  /** Each tag's buffer: the largest request the device was configured for. */
  maxIoBytes: number;
}

/** Starts a worker that serves one ublk queue: what the ublk worker module calls. */
export function runUblkQueueWorker(): void {
  runConnectionWorker(serveUblkQueue);
}

/** The page size of the descriptor mapping (x86_64; aarch64 kernels with 4K pages). */
const PAGE_BYTES = 4096;
const SECTOR_BYTES = 512;
/** User data of the two polls; tags' commands carry their tag (below 2^16). */
const WAKE_POLL = 1n << 32n;
const DISK_POLL = 2n << 32n;

/** One tag's request while it is served. */
interface TagRequest extends PathRequest {
  tag: number;
}

/** Serves the queue in `setup` until stopped; posts "ended" at the end. */
export async function serveUblkQueue(
  setup: WorkerSetup,
  messages: MessageQueue,
  post: (message: FromWorker) => void,
): Promise<void> {
  let queue: UblkQueue;
  try {
    queue = new UblkQueue(setup, messages, post);
  } catch (error) {
    const { name, message } = error as Error;
    return post({ type: "ended", end: "failed", error: { name, message } });
  }
  let ended: FromWorker;
  try {
    await queue.run();
    ended = { type: "ended", end: "stopped" };
  } catch (error) {
    const failure = error as Error;
    ended = {
      type: "ended",
      end: "failed",
      error: { name: failure.name, message: failure.message },
    };
  }
  queue.close();
  post(ended);
}

class UblkQueue {
  readonly #setup: WorkerSetup;
  readonly #transport: UblkQueueTransport;
  readonly #ring: IoUring;
  readonly #descriptors: { pointer: Deno.PointerObject; bytes: ArrayBuffer; lengthBytes: number };
  readonly #descriptorView: DataView;
  readonly #buffers: Uint8Array;
  readonly #path: DataPath<TagRequest>;
  /** Tags whose request the data path serves now. */
  #inProgress = 0;
  /** Tags the kernel aborted: the device is going away. */
  #aborted = 0;
  #ready: Completion[] = [];

  constructor(setup: WorkerSetup, messages: MessageQueue, post: (message: FromWorker) => void) {
    this.#setup = setup;
    const transport = setup.transport as UblkQueueTransport;
    this.#transport = transport;
    const depth = transport.queueDepth;
    // Every tag's command, the two polls and one spare never outgrow the ring.
    const ring = IoUring.create({ entries: ringEntries(depth + 3) });
    if (typeof ring === "number") {
      throw new Error(
        `Cannot set up the io_uring of ublk queue ${transport.queueId}: errno ${-ring}`,
      );
    }
    this.#ring = ring;
    const lengthBytes = descriptorAreaBytes(depth, PAGE_BYTES);
    const mapped = mapShared(
      setup.connectionFd,
      BigInt(descriptorAreaOffset(transport.queueId, PAGE_BYTES)),
      lengthBytes,
      0x1, // PROT_READ: the driver refuses a writable mapping
    );
    if (typeof mapped === "number") {
      ring.close();
      throw new Error(
        `Cannot map the descriptors of /dev/ublkc${transport.devId} queue ${transport.queueId}: errno ${-mapped}`,
      );
    }
    this.#descriptors = { ...mapped, lengthBytes };
    this.#descriptorView = new DataView(mapped.bytes);
    this.#buffers = alignedBytes(depth * transport.maxIoBytes);
    this.#path = new DataPath<TagRequest>({ setup, messages, post, onDone: this.#done });
  }

  async run(): Promise<void> {
    for (let tag = 0; tag < this.#transport.queueDepth; tag++) {
      this.#queueCommand(UBLK_U_IO.FETCH_REQ, tag, -1);
    }
    this.#queuePoll(this.#setup.wakeFd, WAKE_POLL);
    this.#queuePoll(this.#path.eventFd, DISK_POLL);
    for (;;) {
      await this.#path.beginTurn();
      const ready = this.#ready;
      this.#ready = [];
      for (const completion of ready) this.#take(completion);
      this.#path.endTurn();
      if (this.#inProgress === 0 && this.#path.diskInflight === 0) {
        if (this.#stopRequested()) return;
        if (this.#aborted === this.#transport.queueDepth) return;
      }
      const submitted = this.#ring.submit(this.#path.retriesNow ? 0 : 1);
      if (submitted < 0) {
        throw new Error(`io_uring_enter of a ublk queue failed: errno ${-submitted}`);
      }
      this.#ring.reap(this.#reaped);
    }
  }

  close(): void {
    // Closing the ring cancels the fetches still outstanding.
    this.#ring.close();
    unmap(this.#descriptors.pointer, this.#descriptors.lengthBytes);
    this.#path.close();
  }

  #stopRequested(): boolean {
    return Atomics.load(this.#setup.mailbox, MAILBOX.STOP) !== 0;
  }

  /**
   * A completion as the ring hands it out. A poll's eventfd is drained and
   * the poll re-armed at once, before the next turn reads the mailbox and
   * reaps the disk: a message or completion that comes after the drain
   * signals the eventfd again and fires the new poll. (Draining after the
   * turn lost such a signal, and the worker slept with a result waiting.)
   */
  #reaped = (completion: Completion): void => {
    const userData = completion.userData;
    if (userData === WAKE_POLL || userData === DISK_POLL) {
      const fd = userData === WAKE_POLL ? this.#setup.wakeFd : this.#path.eventFd;
      drainEventFd(fd);
      this.#queuePoll(fd, userData);
      return;
    }
    this.#ready.push(completion);
  };

  /** A tag's command completed: a request to start, or the tag's end. */
  #take(completion: Completion): void {
    const { userData, result } = completion;
    const tag = Number(userData);
    if (result === UBLK_IO_RES_ABORT) {
      this.#aborted++;
      return;
    }
    if (result !== UBLK_IO_RES_OK) {
      throw new Error(
        `ublk queue ${this.#transport.queueId} tag ${tag}: command failed, errno ${-result}`,
      );
    }
    this.#start(tag);
  }

  /** Starts the request the kernel put in tag `tag`'s descriptor. */
  #start(tag: number): void {
    const base = tag * IO_DESC.BYTES;
    const opFlags = this.#descriptorView.getUint32(base + IO_DESC.OP_FLAGS, true);
    const sectors = this.#descriptorView.getUint32(base + IO_DESC.NR_SECTORS, true);
    const startSector = this.#descriptorView.getBigUint64(base + IO_DESC.START_SECTOR, true);
    const op = opOf(opFlags & 0xff);
    this.#setup.counters[COUNTERS.REQUESTS_RECEIVED]!++;
    this.#inProgress++;
    const lengthBytes = op === "flush" ? 0 : sectors * SECTOR_BYTES;
    const request: TagRequest = {
      tag,
      op: op ?? "read",
      offsetBytes: Number(startSector) * SECTOR_BYTES,
      lengthBytes,
      flags: {
        fua: (opFlags & UBLK_IO_F.FUA) !== 0,
        mayPunch: (opFlags & UBLK_IO_F.NOUNMAP) === 0,
        fastZero: false,
      },
      data: op === "read" || op === "write"
        ? this.#tagBuffer(tag).subarray(0, lengthBytes)
        : undefined,
      arriving: false,
      piecesLeft: 0,
      toEngine: false,
      gateEntries: 0,
      startedBytes: 0,
    };
    if (op === undefined || lengthBytes > this.#transport.maxIoBytes) {
      // An operation the device did not announce (zoned, WRITE_SAME): refused.
      this.#done(request, { code: "ENOTSUP", message: `ublk operation ${opFlags & 0xff}` });
      return;
    }
    this.#path.start(request);
  }

  #tagBuffer(tag: number): Uint8Array {
    const bytes = this.#transport.maxIoBytes;
    return this.#buffers.subarray(tag * bytes, (tag + 1) * bytes);
  }

  /** A request is answered: commit its result and fetch the tag's next one. */
  #done = (request: TagRequest, error: DataError | undefined): void => {
    this.#inProgress--;
    const dataOp = request.op === "read" || request.op === "write";
    const result = error ? -errnoOf(error.code) : dataOp ? request.lengthBytes : 0;
    this.#queueCommand(UBLK_U_IO.COMMIT_AND_FETCH_REQ, request.tag, result);
    Atomics.add(this.#setup.mailbox, MAILBOX.ANSWERED, 1);
  };

  #queueCommand(op: number, tag: number, result: number): void {
    const sqe = this.#ring.nextSqe();
    assert(sqe !== undefined, "the ring has an entry for every tag's command");
    prepareSqe(sqe, {
      opcode: IORING_OP.URING_CMD,
      fd: this.#setup.connectionFd,
      userData: BigInt(tag),
    });
    sqe.setUint32(SQE.CMD_OP, op, true);
    sqe.setUint16(SQE.CMD + IO_CMD.Q_ID, this.#transport.queueId, true);
    sqe.setUint16(SQE.CMD + IO_CMD.TAG, tag, true);
    sqe.setInt32(SQE.CMD + IO_CMD.RESULT, result, true);
    sqe.setBigUint64(SQE.CMD + IO_CMD.ADDR, addressOf(this.#tagBuffer(tag)), true);
  }

  #queuePoll(fd: number, userData: bigint): void {
    const sqe = this.#ring.nextSqe();
    assert(sqe !== undefined, "the ring has an entry for each poll");
    prepareSqe(sqe, { opcode: IORING_OP.POLL_ADD, fd, userData });
    sqe.setUint32(SQE.OP_FLAGS, POLLIN, true);
  }
}

function ringEntries(atLeast: number): number {
  let entries = 1;
  while (entries < atLeast) entries *= 2;
  return entries;
}

function opOf(op: number): DataOp | undefined {
  switch (op) {
    case UBLK_IO_OP.READ:
      return "read";
    case UBLK_IO_OP.WRITE:
      return "write";
    case UBLK_IO_OP.FLUSH:
      return "flush";
    case UBLK_IO_OP.DISCARD:
      return "trim";
    case UBLK_IO_OP.WRITE_ZEROES:
      return "write-zeroes";
    default:
      return undefined;
  }
}

/** The errno the block layer gets for a failed request (the rest are EIO). */
function errnoOf(code: IoErrorCode): number {
  switch (code) {
    case "ENOSPC":
      return ERRNO.ENOSPC;
    case "EINVAL":
      return ERRNO.EINVAL;
    case "EROFS":
      return ERRNO.EROFS;
    case "ENOTSUP":
      return ERRNO.EOPNOTSUPP;
    default:
      return ERRNO.EIO;
  }
}

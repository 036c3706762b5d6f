/**
 * The kernel's ublk device for one setup, `/dev/ublkbN`: the ublk backend
 * of the kernel-device lifecycle (attach, release, busy check, connection
 * count), as `export/nbd/kernel_attachment.ts` is the NBD one.
 *
 * Attach: ADD_DEV (with user recovery), SET_PARAMS, the char device
 * `/dev/ublkcN` opened once (the driver allows one opener) and handed to one
 * data-plane worker per queue as a duplicate descriptor; each worker posts
 * its FETCH_REQs, and START_DEV, sent from this thread, returns once all of
 * them are there.
 *
 * Release "detach": STOP_DEV (the driver answers the requests in flight
 * through the workers, then removes the disk), the workers end, DEL_DEV.
 * Release "keep": the workers end and the device stays, its I/O held by the
 * driver for a later server (user recovery).
 *
 * @module
 */

import { assert } from "../../assert.ts";
import type { DataPlane, DataPlaneConnection } from "../../datapath/data_plane.ts";
import { deviceInUseReason } from "../../device/device_users.ts";
import { KernelAttachError } from "../../errors.ts";
import { ERRNO, OPEN_FLAGS, openPath } from "../../sys/libc.ts";
import { UBLK_F, type UblkDevInfo } from "../../sys/ublk_abi.ts";
import { closeDescriptor, duplicateDescriptor } from "../../sys/syscalls.ts";
import {
  listUblkDevices,
  setupFingerprintOf,
  UblkCommandError,
  UblkControl,
} from "../../sys/ublk_control.ts";
import type { UblkQueueTransport } from "./queue_worker.ts";

/** How the ublk device is shaped. */
export interface UblkSettings {
  /** Queues, each served by a worker thread of its own. */
  queues: number;
  /** Requests each queue holds at once (tags). */
  queueDepth: number;
  /**
   * `UBLK_F_USER_RECOVERY` (with REISSUE): a server that dies leaves the
   * device with its I/O held for the next one. Without it (`--no-recovery`,
   * ublksrv's `--recovery 0`) the kernel fails the I/O and removes the disk
   * when its server dies: errors instead of waiting, for data nobody waits on.
   */
  recovery: boolean;
}

/** Options of {@link UblkAttachment}. */
export interface UblkAttachmentOptions {
  settings: UblkSettings;
  sizeBytes: number;
  /** The setup's block size: the device's logical and physical block size. */
  blockBytes: number;
  /** The largest request the kernel sends (each tag has a buffer this big). */
  maxIoBytes: number;
  /** The setup's UUID: its fingerprint, kept by the driver, lets a later server find the device. */
  setupUuid: string;
  log: (line: string) => void;
}

/**
 * How long to wait for the kernel: devtmpfs showing `/dev/ublkcN` after
 * ADD_DEV, and a killed server's device becoming recoverable (its process
 * gone, its char device released, its queues quiesced).
 */
const KERNEL_WAIT_MS = 15_000;
const KERNEL_POLL_MS = 50;

/** The setup's `/dev/ublkbN`, between {@link attach} and {@link release}. */
export class UblkAttachment {
  readonly #dataPlane: DataPlane;
  readonly #options: UblkAttachmentOptions;
  readonly #connections: DataPlaneConnection[] = [];
  #control: UblkControl | undefined;
  #devId: number | undefined;

  constructor(dataPlane: DataPlane, options: UblkAttachmentOptions) {
    this.#dataPlane = dataPlane;
    this.#options = options;
  }

  /** `/dev/ublkbN`, once attached. */
  get devicePath(): string | undefined {
    return this.#devId === undefined ? undefined : `/dev/ublkb${this.#devId}`;
  }

  /** Queues being served. */
  get connectionCount(): number {
    return this.#connections.length;
  }

  /** Why the device is in use (mounted, stacked on, open), or undefined when it is not. */
  busyReason(): string | undefined {
    const path = this.devicePath;
    return path === undefined ? undefined : deviceInUseReason(path);
  }

  /**
   * Adds and starts the device.
   *
   * @throws {KernelAttachError} Naming what is missing (ublk_drv, io_uring, the capability).
   */
  async attach(): Promise<void> {
    const control = UblkControl.open();
    this.#control = control;
    const fingerprint = setupFingerprintOf(this.#options.setupUuid);
    const own = await findDevice(control, fingerprint);
    if (own !== undefined && (own.flags & UBLK_F.USER_RECOVERY) !== 0n) {
      return await this.#takeBack(control, own);
    }
    if (own !== undefined) await this.#deleteDead(control, own);
    const { settings, maxIoBytes } = this.#options;
    const info = await control.addDevice({
      devId: -1,
      queues: settings.queues,
      queueDepth: settings.queueDepth,
      maxIoBufBytes: maxIoBytes,
      serverFlags: fingerprint,
      recovery: settings.recovery,
    });
    const devId = info.devId;
    this.#devId = devId;
    try {
      await control.setParams(devId, {
        sizeBytes: this.#options.sizeBytes,
        logicalBlockBytes: this.#options.blockBytes,
        physicalBlockBytes: this.#options.blockBytes,
        maxIoBytes,
        maxDiscardBytes: maxIoBytes,
        discardGranularityBytes: this.#options.blockBytes,
      });
      await this.#serveQueues(info);
      await this.#unlessQueueEnds(devId, control.startDevice(devId));
    } catch (error) {
      await this.#remove();
      throw error;
    }
    this.#options.log(
      `ublk: ${this.devicePath} started, ${info.queues} queue(s) of depth ${info.queueDepth}` +
        (settings.recovery ? "" : ", without user recovery"),
    );
  }

  /**
   * Deletes the device a previous server of this setup left without user
   * recovery: once its server is gone the kernel has failed its I/O and
   * removed its disk; nothing can take it back, so a new device is added.
   */
  async #deleteDead(control: UblkControl, found: UblkDevInfo): Promise<void> {
    await waitForServerGone(found, Date.now() + KERNEL_WAIT_MS);
    await control.deleteDevice(found.devId);
    this.#options.log(
      `ublk: /dev/ublkb${found.devId}, left without user recovery by process ` +
        `${found.serverPid}, deleted`,
    );
  }

  /**
   * Takes back the device a previous server of this setup left (killed, or
   * stopped while the device was in use): once that server's process is gone
   * and the driver holds the device's I/O, START_USER_RECOVERY, new queue
   * workers, END_USER_RECOVERY; the held I/O then goes to them.
   */
  async #takeBack(control: UblkControl, found: UblkDevInfo): Promise<void> {
    const devId = found.devId;
    const deadline = Date.now() + KERNEL_WAIT_MS;
    await waitForServerGone(found, deadline);
    // The driver refuses (EBUSY) until the old char device is released and its queues quiesced.
    for (;;) {
      try {
        await control.startRecovery(devId);
        break;
      } catch (error) {
        if (!(error instanceof UblkCommandError) || error.errno !== ERRNO.EBUSY) throw error;
        if (Date.now() > deadline) throw error;
        await delay(KERNEL_POLL_MS);
      }
    }
    this.#devId = devId;
    const info = await control.deviceInfo(devId);
    await this.#serveQueues(info);
    await this.#unlessQueueEnds(devId, control.endRecovery(devId));
    this.#options.log(
      `ublk: ${this.devicePath} taken back with ${info.queues} queue(s) of depth ${info.queueDepth}`,
    );
  }

  /** Opens `/dev/ublkcN` and hands each queue to a worker, with a descriptor of its own. */
  async #serveQueues(info: UblkDevInfo): Promise<void> {
    const charFd = await openCharDevice(info.devId);
    try {
      for (let queueId = 0; queueId < info.queues; queueId++) {
        const fd = duplicateDescriptor(charFd);
        if (fd < 0) {
          throw new KernelAttachError(`Cannot duplicate /dev/ublkc${info.devId}: errno ${-fd}`);
        }
        const transport: UblkQueueTransport = {
          devId: info.devId,
          queueId,
          queueDepth: info.queueDepth,
          maxIoBytes: info.maxIoBufBytes,
        };
        this.#connections.push(this.#dataPlane.serve(fd, { transport }));
      }
    } finally {
      closeDescriptor(charFd);
    }
  }

  /**
   * START_DEV or END_USER_RECOVERY, which wait for every queue's fetches,
   * unless a queue's worker ends first (they would then wait forever).
   */
  async #unlessQueueEnds(devId: number, command: Promise<void>): Promise<void> {
    const queueEnded = Promise.race(this.#connections.map((connection) => connection.done)).then(
      (outcome) => {
        const why = outcome.end === "failed" ? outcome.error.message : outcome.end;
        throw new KernelAttachError(`A ublk queue of device ${devId} ended before start: ${why}`);
      },
    );
    await Promise.race([command, queueEnded]);
  }

  /** Stops and deletes the device ("detach"), or leaves it to a later server ("keep"). */
  async release(how: "detach" | "keep"): Promise<void> {
    if (this.#devId === undefined) return;
    if (how === "keep") {
      await this.#endQueues();
      this.#control?.close();
      this.#control = undefined;
      this.#options.log(
        this.#options.settings.recovery
          ? `ublk: ${this.devicePath} stays, its I/O held for the next server`
          : `ublk: ${this.devicePath} stays, but without user recovery the kernel fails its ` +
            "I/O and removes it once this server has exited",
      );
      return;
    }
    await this.#remove();
  }

  async #remove(): Promise<void> {
    const control = this.#control;
    const devId = this.#devId;
    assert(control !== undefined && devId !== undefined, "a device was added");
    await control.stopDevice(devId).catch((error) => this.#options.log(`ublk: ${error.message}`));
    await this.#endQueues();
    await control.deleteDevice(devId).catch((error) => this.#options.log(`ublk: ${error.message}`));
    control.close();
    this.#control = undefined;
    this.#options.log(`ublk: /dev/ublkb${devId} removed`);
    this.#devId = undefined;
  }

  async #endQueues(): Promise<void> {
    for (const connection of this.#connections) connection.stop();
    await Promise.all(this.#connections.map((connection) => connection.done));
    this.#connections.length = 0;
  }
}

/**
 * Opens `/dev/ublkcN`, waiting for devtmpfs to create it (ENOENT) and for a
 * dead server's descriptor to be released (EBUSY: the driver allows one opener).
 */
async function openCharDevice(devId: number): Promise<number> {
  const path = `/dev/ublkc${devId}`;
  const deadline = Date.now() + KERNEL_WAIT_MS;
  for (;;) {
    const fd = openPath(path, OPEN_FLAGS.O_RDWR);
    if (fd >= 0) return fd;
    const waitable = fd === -ERRNO.ENOENT || fd === -ERRNO.EBUSY;
    if (!waitable || Date.now() > deadline) {
      throw new KernelAttachError(`Cannot open ${path}: errno ${-fd}`);
    }
    await delay(KERNEL_POLL_MS);
  }
}

/** The ublk device whose `ublksrv_flags` hold `fingerprint`, if any. */
async function findDevice(
  control: UblkControl,
  fingerprint: bigint,
): Promise<UblkDevInfo | undefined> {
  return (await listUblkDevices(control)).find((info) => info.serverFlags === fingerprint);
}

/**
 * Waits until the process recorded as the device's server is gone.
 *
 * @throws {KernelAttachError} When it still runs at `deadlineMs`: another server of this setup.
 */
async function waitForServerGone(found: UblkDevInfo, deadlineMs: number): Promise<void> {
  while (processExists(found.serverPid)) {
    if (Date.now() > deadlineMs) {
      throw new KernelAttachError(
        `/dev/ublkb${found.devId} is this setup's and served by process ${found.serverPid}: ` +
          "stop it first",
      );
    }
    await delay(KERNEL_POLL_MS);
  }
}

function processExists(pid: number): boolean {
  if (pid <= 0 || pid === Deno.pid) return false;
  try {
    // A zombie still has its /proc entry, but its queues and descriptors are gone.
    return !/^\S+ \(.*\) Z/.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return false;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

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
import { OPEN_FLAGS, openPath } from "../../sys/libc.ts";
import { closeDescriptor, duplicateDescriptor } from "../../sys/syscalls.ts";
import { UblkControl } from "./control.ts";
import type { UblkQueueTransport } from "./queue_worker.ts";

/** How the ublk device is shaped. */
export interface UblkSettings {
  /** Queues, each served by a worker thread of its own. */
  queues: number;
  /** Requests each queue holds at once (tags). */
  queueDepth: number;
}

/** Options of {@link UblkAttachment}. */
export interface UblkAttachmentOptions {
  settings: UblkSettings;
  sizeBytes: number;
  /** The setup's block size: the device's logical and physical block size. */
  blockBytes: number;
  /** The largest request the kernel sends (each tag has a buffer this big). */
  maxIoBytes: number;
  log: (line: string) => void;
}

/** How long to wait for udev-less devtmpfs to show `/dev/ublkcN` after ADD_DEV. */
const CHAR_DEVICE_WAIT_MS = 5_000;

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
    const { settings, maxIoBytes } = this.#options;
    const info = await control.addDevice({
      devId: -1,
      queues: settings.queues,
      queueDepth: settings.queueDepth,
      maxIoBufBytes: maxIoBytes,
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
      const charFd = await openCharDevice(devId);
      try {
        for (let queueId = 0; queueId < info.queues; queueId++) {
          const fd = duplicateDescriptor(charFd);
          if (fd < 0) {
            throw new KernelAttachError(`Cannot duplicate /dev/ublkc${devId}: errno ${-fd}`);
          }
          const transport: UblkQueueTransport = {
            devId,
            queueId,
            queueDepth: info.queueDepth,
            maxIoBytes,
          };
          this.#connections.push(this.#dataPlane.serve(fd, { transport }));
        }
      } finally {
        closeDescriptor(charFd);
      }
      await this.#startOrFail(control, devId);
    } catch (error) {
      await this.#remove();
      throw error;
    }
    this.#options.log(
      `ublk: ${this.devicePath} started, ${info.queues} queue(s) of depth ${info.queueDepth}`,
    );
  }

  /** START_DEV, unless a queue's worker ends first (it would then wait forever). */
  async #startOrFail(control: UblkControl, devId: number): Promise<void> {
    const queueEnded = Promise.race(this.#connections.map((connection) => connection.done)).then(
      (outcome) => {
        const why = outcome.end === "failed" ? outcome.error.message : outcome.end;
        throw new KernelAttachError(`A ublk queue of device ${devId} ended before start: ${why}`);
      },
    );
    await Promise.race([control.startDevice(devId), queueEnded]);
  }

  /** Stops and deletes the device ("detach"), or leaves it to a later server ("keep"). */
  async release(how: "detach" | "keep"): Promise<void> {
    if (this.#devId === undefined) return;
    if (how === "keep") {
      await this.#endQueues();
      this.#control?.close();
      this.#control = undefined;
      this.#options.log(`ublk: ${this.devicePath} stays, its I/O held for the next server`);
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

/** Opens `/dev/ublkcN`, waiting for devtmpfs to create it. */
async function openCharDevice(devId: number): Promise<number> {
  const path = `/dev/ublkc${devId}`;
  const deadline = Date.now() + CHAR_DEVICE_WAIT_MS;
  for (;;) {
    const fd = openPath(path, OPEN_FLAGS.O_RDWR);
    if (fd >= 0) return fd;
    if (fd !== -2 || Date.now() > deadline) {
      throw new KernelAttachError(`Cannot open ${path}: errno ${-fd}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

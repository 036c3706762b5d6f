/**
 * The ublk control device, `/dev/ublk-control`: adds, configures, starts,
 * stops and deletes ublk devices with URING_CMD commands on an io_uring of
 * 128-byte SQEs (the driver refuses control commands in 64-byte ones: its
 * `struct ublksrv_ctrl_cmd` does not fit their 16-byte command area).
 *
 * Commands run one at a time; each is submitted on this thread and waited
 * for on a thread of the runtime's pool ({@link IoUring.waitAsync}): the
 * driver runs control commands from io_uring's own workers, and START_DEV
 * blocks there until every tag of every queue has a FETCH_REQ outstanding,
 * which the queue workers post meanwhile.
 *
 * @module
 */

import { addressOf, ERRNO, OPEN_FLAGS, openPath } from "./libc.ts";
import { IORING_OP, IoUring, prepareSqe, SQE } from "./io_uring.ts";
import { closeDescriptor } from "./syscalls.ts";
import {
  CTRL_CMD,
  decodeDevInfo,
  DEV_INFO,
  encodeDevInfo,
  encodeParams,
  UBLK_F,
  UBLK_U_CMD,
  type UblkDeviceParams,
  type UblkDevInfo,
} from "./ublk_abi.ts";
import { assert } from "../assert.ts";
import { KernelAttachError } from "../errors.ts";
import { UBLK_CONTROL_PATH, ublkSupportOf } from "./ublk_support.ts";

/** A control command that the driver refused. */
export class UblkCommandError extends KernelAttachError {
  override name = "UblkCommandError";
  readonly errno: number;
  constructor(command: string, devId: number, errno: number) {
    super(`ublk ${command} of device ${devId} failed: errno ${errno}${hintOf(errno)}`);
    this.errno = errno;
  }
}

function hintOf(errno: number): string {
  if (errno === ERRNO.EPERM || errno === ERRNO.EACCES) {
    return " (ublk needs CAP_SYS_ADMIN: run as root)";
  }
  if (errno === ERRNO.ENODEV) return " (no such ublk device)";
  if (errno === ERRNO.EBUSY) return " (the device is in use or in the wrong state)";
  return "";
}

/** Why ublk cannot be used here, for a clear error, or undefined when it can. */
export function ublkUnavailableReason(): string | undefined {
  const support = ublkSupportOf();
  if (support.kind === "loaded") return undefined;
  if (support.kind === "absent") return support.reason;
  return `${UBLK_CONTROL_PATH} is missing: the kernel has no ublk_drv loaded (modprobe ublk_drv, ` +
    `${support.modulePath} is installed); use the NBD export`;
}

/** Commands on `/dev/ublk-control`. */
export class UblkControl {
  readonly #fd: number;
  readonly #ring: IoUring;
  /** The command running now: the next waits for it. */
  #last: Promise<unknown> = Promise.resolve();

  private constructor(fd: number, ring: IoUring) {
    this.#fd = fd;
    this.#ring = ring;
  }

  /**
   * Opens the control device and its ring.
   *
   * @throws {KernelAttachError} Without ublk_drv, io_uring or the capability, saying which.
   */
  static open(): UblkControl {
    const reason = ublkUnavailableReason();
    if (reason !== undefined) throw new KernelAttachError(`Cannot use ublk: ${reason}`);
    const fd = openPath(UBLK_CONTROL_PATH, OPEN_FLAGS.O_RDWR);
    if (fd < 0) {
      throw new KernelAttachError(
        `Cannot open ${UBLK_CONTROL_PATH}: errno ${-fd}${hintOf(-fd)}`,
      );
    }
    const ring = IoUring.create({ entries: 4, sqe128: true });
    if (typeof ring === "number") {
      closeDescriptor(fd);
      throw new KernelAttachError(
        `Cannot set up an io_uring for ublk: errno ${-ring}` +
          (ring === -ERRNO.EPERM ? " (kernel.io_uring_disabled forbids it)" : ""),
      );
    }
    return new UblkControl(fd, ring);
  }

  /**
   * ADD_DEV: a new device (id -1: the next free one), with user recovery or without.
   *
   * @returns The device as the driver made it (its id among it).
   */
  async addDevice(
    options: {
      devId: number;
      queues: number;
      queueDepth: number;
      maxIoBufBytes: number;
      /** Kept by the driver in `ublksrv_flags`: a later server finds its device by it. */
      serverFlags: bigint;
      /** `UBLK_F_USER_RECOVERY` and `_REISSUE`: the device outlives its server. */
      recovery: boolean;
    },
  ): Promise<UblkDevInfo> {
    const info = encodeDevInfo({
      queues: options.queues,
      queueDepth: options.queueDepth,
      state: 0,
      maxIoBufBytes: options.maxIoBufBytes,
      devId: options.devId,
      serverPid: Deno.pid,
      flags: UBLK_F.CMD_IOCTL_ENCODE |
        (options.recovery ? UBLK_F.USER_RECOVERY | UBLK_F.USER_RECOVERY_REISSUE : 0n),
      serverFlags: options.serverFlags,
    });
    await this.#command("ADD_DEV", UBLK_U_CMD.ADD_DEV, options.devId, { buffer: info });
    return decodeDevInfo(info);
  }

  /** SET_PARAMS: size, block sizes, I/O limits, discard, flush and FUA. */
  async setParams(devId: number, params: UblkDeviceParams): Promise<void> {
    const buffer = encodeParams(params);
    await this.#command("SET_PARAMS", UBLK_U_CMD.SET_PARAMS, devId, { buffer });
  }

  /** START_DEV: resolves once every queue fetches and /dev/ublkbN exists. */
  async startDevice(devId: number): Promise<void> {
    await this.#command("START_DEV", UBLK_U_CMD.START_DEV, devId, { data: BigInt(Deno.pid) });
  }

  /** STOP_DEV: removes /dev/ublkbN once the requests in flight are answered. */
  async stopDevice(devId: number): Promise<void> {
    await this.#command("STOP_DEV", UBLK_U_CMD.STOP_DEV, devId, {});
  }

  /** DEL_DEV: frees the device; waits until its char device is closed. */
  async deleteDevice(devId: number): Promise<void> {
    await this.#command("DEL_DEV", UBLK_U_CMD.DEL_DEV, devId, {});
  }

  /** GET_DEV_INFO: the device's state, owner pid, queues and flags. */
  async deviceInfo(devId: number): Promise<UblkDevInfo> {
    const buffer = new Uint8Array(DEV_INFO.BYTES);
    await this.#command("GET_DEV_INFO", UBLK_U_CMD.GET_DEV_INFO, devId, { buffer });
    return decodeDevInfo(buffer);
  }

  /** START_USER_RECOVERY: a device whose server died takes a new one. */
  async startRecovery(devId: number): Promise<void> {
    await this.#command("START_USER_RECOVERY", UBLK_U_CMD.START_USER_RECOVERY, devId, {});
  }

  /** END_USER_RECOVERY: the new server's queues fetch; held I/O goes to them. */
  async endRecovery(devId: number): Promise<void> {
    await this.#command("END_USER_RECOVERY", UBLK_U_CMD.END_USER_RECOVERY, devId, {
      data: BigInt(Deno.pid),
    });
  }

  /** Closes the ring and the control device. */
  close(): void {
    this.#ring.close();
    closeDescriptor(this.#fd);
  }

  #command(
    name: string,
    op: number,
    devId: number,
    args: { buffer?: Uint8Array; data?: bigint },
  ): Promise<number> {
    const run = this.#last.catch(() => {}).then(() => this.#run(name, op, devId, args));
    this.#last = run;
    return run;
  }

  async #run(
    name: string,
    op: number,
    devId: number,
    args: { buffer?: Uint8Array; data?: bigint },
  ): Promise<number> {
    const sqe = this.#ring.nextSqe();
    if (sqe === undefined) throw new Error("the ublk control ring has a free entry per command");
    prepareSqe(sqe, { opcode: IORING_OP.URING_CMD, fd: this.#fd, userData: 1n });
    sqe.setUint32(SQE.CMD_OP, op, true);
    const cmd = SQE.CMD;
    sqe.setUint32(cmd + CTRL_CMD.DEV_ID, devId >>> 0, true);
    sqe.setUint16(cmd + CTRL_CMD.QUEUE_ID, 0xffff, true);
    if (args.buffer !== undefined) {
      sqe.setUint16(cmd + CTRL_CMD.LEN, args.buffer.length, true);
      sqe.setBigUint64(cmd + CTRL_CMD.ADDR, addressOf(args.buffer), true);
    }
    sqe.setBigUint64(cmd + CTRL_CMD.DATA, args.data ?? 0n, true);
    const submitted = this.#ring.submit(0);
    if (submitted < 0) throw new UblkCommandError(name, devId, -submitted);
    const waited = await this.#ring.waitAsync(1);
    if (waited < 0) throw new UblkCommandError(name, devId, -waited);
    let result = 0;
    this.#ring.reap((completion) => result = completion.result);
    if (result < 0) throw new UblkCommandError(name, devId, -result);
    return result;
  }
}

/**
 * Every ublk device of the kernel (one per `/dev/ublkcN`) as GET_DEV_INFO
 * describes it; devices that vanish meanwhile are left out.
 */
export async function listUblkDevices(control: UblkControl): Promise<UblkDevInfo[]> {
  const ids: number[] = [];
  for (const entry of Deno.readDirSync("/dev")) {
    const match = /^ublkc(\d+)$/.exec(entry.name);
    if (match) ids.push(Number(match[1]));
  }
  const devices: UblkDevInfo[] = [];
  for (const devId of ids.sort((a, b) => a - b)) {
    const info = await control.deviceInfo(devId).catch(() => undefined);
    if (info !== undefined) devices.push(info);
  }
  return devices;
}

/**
 * The word dm-remap keeps in a device's `ublksrv_flags` (the driver stores
 * it at ADD_DEV and returns it with GET_DEV_INFO): the first 64 bits of the
 * setup's UUID (random in a v4 UUID), so a later server of the same setup,
 * and `discover`, find the setup's device.
 */
export function setupFingerprintOf(setupUuid: string): bigint {
  const hex = setupUuid.replaceAll("-", "").slice(0, 16);
  assert(/^[0-9a-f]{16}$/i.test(hex), "a setup UUID has 64 bits to spare");
  return BigInt(`0x${hex}`);
}

/**
 * The ublk block devices of setups, by the fingerprint they carry
 * ({@link setupFingerprintOf}); empty without ublk_drv, io_uring or the
 * capability (`discover` then names no ublk device).
 */
export async function ublkDevicesByFingerprint(): Promise<Map<bigint, string>> {
  const devices = new Map<bigint, string>();
  if (ublkUnavailableReason() !== undefined) return devices;
  let control: UblkControl;
  try {
    control = UblkControl.open();
  } catch {
    return devices;
  }
  try {
    for (const info of await listUblkDevices(control)) {
      devices.set(info.serverFlags, `/dev/ublkb${info.devId}`);
    }
  } finally {
    control.close();
  }
  return devices;
}

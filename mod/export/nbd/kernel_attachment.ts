/**
 * The kernel's `/dev/nbdN` for a setup, attached by the server itself: each
 * connection is a socketpair whose one end the kernel gets over netlink
 * (`kernel_nbd.ts`) and whose other end a data-plane worker serves, past the
 * handshake the kernel never makes.
 *
 * The lifecycle is built around the driver's rules (see `kernel_nbd.ts`):
 * - **Attach.** A device whose backend is this setup's (a server before this
 *   one left it attached: a restart, a crash, `kill -9`) is taken back with
 *   RECONFIGURE, one socket at a time: a socket the kernel takes keeps its
 *   peer open, one it drops (no dead socket left to replace) is closed at
 *   once, which the server sees as a hang-up. Otherwise CONNECT configures a
 *   free device (or the one named) with a long dead-connection timeout, so
 *   I/O waits for the next server instead of failing.
 * - **A connection the kernel does not read.** On 6.1, when the kernel cannot
 *   start workers quickly, the device's workqueue rescuer runs one
 *   connection's receiver and never gets to the next (docs/vm.md). The
 *   device is never disconnected for it: from CONNECT on, udev and anyone
 *   else may be reading it, and a disconnect fails their requests. The
 *   server keeps serving every connection and reports the shortfall; a
 *   request sent on the unread one waits for its timeout, and then the
 *   kernel of a device with several connections sends it again on a live
 *   one and shuts the unread socket down, which ends it here.
 * - **A connection the kernel ends** (it timed a request out and shut the
 *   socket down) is replaced with RECONFIGURE while serving: the kernel
 *   queues a new receiver for it.
 * - **Release.** `detach` disconnects the device (nothing may be using it);
 *   `keep` ends the connections after answering what they read and leaves
 *   the device attached: the kernel marks the sockets dead and holds new I/O
 *   for the next server.
 *
 * @module
 */

import type { DataPlane, DataPlaneConnection } from "../../datapath/data_plane.ts";
import { KernelAttachError } from "../../errors.ts";
import { attachedNbdDevices, nbdBackendOf } from "../../device/block_devices.ts";
import { deviceInUseReason } from "../../device/device_users.ts";
import { closeDescriptor, createSocketPair, peerHungUp } from "../../sys/syscalls.ts";
import { type NbdExport, type NbdSession, transmissionFlagsOf } from "./handshake.ts";
import { prepareWorkerSocket } from "./connection_worker.ts";
import { describeNetlinkFailure, KernelNbd } from "./kernel_nbd.ts";
import type { NegotiatedConnection } from "./negotiator.ts";

/** How the kernel device is attached. */
export interface KernelAttachSettings {
  /** `auto` (a free device, or the one this setup already has) or `/dev/nbdN`. */
  device: string;
  connections: number;
  /** Seconds before the kernel sends an unanswered request again. */
  requestTimeoutS: number;
  /** Seconds the kernel holds I/O for a server while no connection is live. */
  deadConnectionTimeoutS: number;
  /**
   * Test seam for the VM test: the first connections of a fresh attach that
   * the server leaves unanswered, and counts as unread, until the kernel
   * ends them, as the 6.1 rescuer case leaves a connection unread (that case
   * cannot be provoked on demand). @default 0
   */
  unansweredConnections?: number;
}

/** What happens to the kernel device when serving stops. */
export type KernelRelease = "detach" | "keep";

/** The calls an attachment makes on the kernel's `nbd` family ({@link KernelNbd}); tests give a fake. */
export type KernelNbdControl =
  & Pick<KernelNbd, "connect" | "reconfigure" | "disconnect">
  & Disposable;

/** Options of {@link KernelAttachment}. */
export interface KernelAttachmentOptions {
  settings: KernelAttachSettings;
  /** The export: its size and block size configure the device. */
  export: NbdExport;
  /** The setup's UUID: the device's backend identifier names it, for a later server. */
  setupUuid: string;
  log: (line: string) => void;
  /** Where sysfs and procfs are mounted. @default "/sys", "/proc" */
  sysfsRoot?: string;
  procRoot?: string;
  /** Opens the kernel's `nbd` family. @default {@link KernelNbd.open} */
  openKernel?: () => KernelNbdControl;
  /**
   * How many kernel tasks run the receiver of `/dev/nbd{index}`; undefined
   * when that cannot be seen. @default read from the tasks' stacks in procfs
   */
  countReceivers?: (index: number) => number | undefined;
}

/** How long the kernel gets to start a receiver per connection. */
const RECEIVERS_WAIT_MS = 5000;
const RECEIVERS_POLL_MS = 100;
/** Replacements of kernel-ended connections allowed per minute before giving up on them. */
const REPLACEMENTS_PER_MINUTE_MAX = 10;
const KERNEL_BLOCK_BYTES_MAX = 4096;
/** How long a restarted server waits for the kernel to notice its predecessor's sockets died. */
const TAKE_BACK_WAIT_MS = 5000;
const TAKE_BACK_POLL_MS = 200;
/** How often an unanswered connection (the test seam) is checked for the kernel's hang-up. */
const UNANSWERED_POLL_MS = 200;

/** The kernel's device for one setup, between {@link attach} and {@link release}. */
export class KernelAttachment {
  readonly #dataPlane: Pick<DataPlane, "serve">;
  readonly #options: KernelAttachmentOptions;
  readonly #connections = new Set<DataPlaneConnection>();
  /** The test seam's unanswered connections: the server's end and its hang-up check. */
  readonly #unanswered = new Map<number, ReturnType<typeof setInterval>>();
  #index: number | undefined;
  #releasing = false;
  #replacements: number[] = [];

  constructor(dataPlane: Pick<DataPlane, "serve">, options: KernelAttachmentOptions) {
    this.#dataPlane = dataPlane;
    this.#options = options;
  }

  /** `/dev/nbdN`, once attached. */
  get devicePath(): string | undefined {
    return this.#index === undefined ? undefined : `/dev/nbd${this.#index}`;
  }

  /** Why the device is in use (mounted, stacked on, open), or undefined when it is not. */
  busyReason(): string | undefined {
    const path = this.devicePath;
    if (path === undefined) return undefined;
    return deviceInUseReason(path, {
      sysfsRoot: this.#options.sysfsRoot,
      procRoot: this.#options.procRoot,
    });
  }

  /** Connections the kernel has now. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /**
   * Takes back this setup's device, or configures one.
   *
   * @throws {Error} Naming the missing piece (the nbd module, the capability) or the busy device.
   */
  async attach(): Promise<void> {
    let kernel: KernelNbdControl;
    try {
      kernel = (this.#options.openKernel ?? KernelNbd.open)();
    } catch (error) {
      throw new KernelAttachError(describeNetlinkFailure(error, "cannot attach /dev/nbd*"));
    }
    using _ = kernel;
    const attached = await attachedNbdDevices({ sysfsRoot: this.#options.sysfsRoot });
    const existing = attached.get(this.#options.setupUuid);
    if (existing !== undefined) return await this.#takeBack(kernel, deviceIndexOf(existing));
    const { connections, requestTimeoutS } = this.#options.settings;
    const index = this.#connect(kernel);
    const receivers = await this.#waitForReceivers(index, connections);
    if (receivers === undefined) return;
    const read = Math.max(0, receivers - this.#unanswered.size);
    if (read >= connections) return;
    // From CONNECT on, udev (and anyone) may be reading the device: a disconnect now would fail
    // their requests. The kernel's request timeout moves them off the unread connection instead.
    this.#options.log(
      `/dev/nbd${index}: the kernel reads ${read} of ${connections} connections` +
        (this.#unanswered.size > 0
          ? ` (${this.#unanswered.size} left unanswered by the test seam)`
          : "") +
        `; the 6.1 workqueue rescuer case, see docs/vm.md. Serving on: a request sent on an ` +
        `unread connection is sent again on a read one after ${requestTimeoutS} s, ` +
        `and the connection is replaced`,
    );
  }

  /** Ends serving the kernel: disconnects the device, or leaves it for the next server. */
  async release(how: KernelRelease): Promise<void> {
    this.#releasing = true;
    this.#dropUnanswered();
    const index = this.#index;
    if (index !== undefined && how === "detach") {
      using kernel = (this.#options.openKernel ?? KernelNbd.open)();
      await this.#disconnect(kernel, index);
      this.#options.log(`/dev/nbd${index}: detached`);
      return;
    }
    for (const connection of this.#connections) connection.stop();
    await Promise.all([...this.#connections].map((connection) => connection.done));
    if (index !== undefined) {
      this.#options.log(
        `/dev/nbd${index}: left attached; the kernel holds I/O for the next server`,
      );
    }
  }

  #connect(kernel: KernelNbdControl): number {
    const { settings } = this.#options;
    const pairs = this.#socketPairs(settings.connections);
    const requested = settings.device === "auto" ? undefined : deviceIndexOf(settings.device);
    let index: number;
    try {
      index = kernel.connect({
        index: requested,
        sizeBytes: this.#options.export.sizeBytes,
        blockBytes: Math.min(this.#options.export.preferredBlockBytes, KERNEL_BLOCK_BYTES_MAX),
        serverFlags: transmissionFlagsOf(false),
        sockets: pairs.map(([, kernelEnd]) => kernelEnd),
        requestTimeoutS: settings.requestTimeoutS,
        deadConnectionTimeoutS: settings.deadConnectionTimeoutS,
        backend: nbdBackendOf(this.#options.setupUuid),
      });
    } catch (error) {
      for (const [serverEnd] of pairs) closeDescriptor(serverEnd);
      const which = requested === undefined ? "a free /dev/nbd*" : settings.device;
      throw new KernelAttachError(describeNetlinkFailure(error, `cannot attach ${which}`));
    } finally {
      for (const [, kernelEnd] of pairs) closeDescriptor(kernelEnd);
    }
    this.#index = index;
    const unanswered = Math.min(settings.unansweredConnections ?? 0, pairs.length);
    for (const [i, [serverEnd]] of pairs.entries()) {
      if (i < unanswered) this.#leaveUnanswered(serverEnd);
      else this.#serve(serverEnd);
    }
    this.#options.log(`/dev/nbd${index}: attached with ${pairs.length} connections`);
    return index;
  }

  /**
   * The test seam: keeps a connection open without reading it, as a kernel
   * that never reads its replies leaves it, until the kernel shuts it down
   * (its request timed out), then replaces it like any connection it ends.
   */
  #leaveUnanswered(serverEnd: number): void {
    const timer = setInterval(() => {
      if (!peerHungUp(serverEnd)) return;
      clearInterval(timer);
      this.#unanswered.delete(serverEnd);
      closeDescriptor(serverEnd);
      if (this.#releasing || this.#index === undefined) return;
      this.#replaceEnded(this.#index, "an unanswered connection (test seam) ended by the kernel");
    }, UNANSWERED_POLL_MS);
    this.#unanswered.set(serverEnd, timer);
  }

  #dropUnanswered(): void {
    for (const [serverEnd, timer] of this.#unanswered) {
      clearInterval(timer);
      closeDescriptor(serverEnd);
    }
    this.#unanswered.clear();
  }

  /** RECONFIGURE, one socket at a time, until the kernel drops one: it had no dead one left. */
  async #takeBack(kernel: KernelNbdControl, index: number): Promise<void> {
    this.#index = index;
    let taken = 0;
    // A server killed a moment ago may not be noticed yet: its sockets die when the kernel reads them.
    for (let waited = 0; taken === 0 && waited <= TAKE_BACK_WAIT_MS; waited += TAKE_BACK_POLL_MS) {
      if (waited > 0) await new Promise((resolve) => setTimeout(resolve, TAKE_BACK_POLL_MS));
      while (taken < this.#options.settings.connections && this.#offerSocket(kernel, index)) {
        taken++;
      }
    }
    if (taken === 0) {
      throw new KernelAttachError(
        `/dev/nbd${index} belongs to this setup and has no dead connection to replace: ` +
          `another server is serving it (stop it first)`,
      );
    }
    this.#options.log(`/dev/nbd${index}: taken back with ${taken} connections`);
    const receivers = await this.#waitForReceivers(index, taken);
    if (receivers !== undefined && receivers < taken) {
      this.#options.log(
        `/dev/nbd${index}: the kernel reads ${receivers} of ${taken} connections; requests on ` +
          `the others are sent again on a read one after ${this.#options.settings.requestTimeoutS} s`,
      );
    }
  }

  /** Offers one new socket; true when the kernel kept it (and it is now served). */
  #offerSocket(kernel: KernelNbdControl, index: number): boolean {
    const [serverEnd, kernelEnd] = this.#socketPairs(1)[0]!;
    try {
      kernel.reconfigure(index, {
        sockets: [kernelEnd],
        backend: nbdBackendOf(this.#options.setupUuid),
      });
    } catch (error) {
      closeDescriptor(serverEnd);
      throw new KernelAttachError(
        describeNetlinkFailure(error, `cannot take back /dev/nbd${index}`),
      );
    } finally {
      closeDescriptor(kernelEnd);
    }
    if (peerHungUp(serverEnd)) {
      closeDescriptor(serverEnd);
      return false;
    }
    this.#serve(serverEnd);
    return true;
  }

  #serve(serverEnd: number): void {
    prepareWorkerSocket(serverEnd);
    const exported = this.#options.export;
    const session: NbdSession = {
      exportName: exported.name,
      structuredReplies: false,
      baseAllocationId: undefined,
      transmissionFlags: transmissionFlagsOf(false),
    };
    const transport: NegotiatedConnection = {
      export: exported,
      session,
      received: new Uint8Array(0),
      receivedBytes: 0,
    };
    const connection = this.#dataPlane.serve(serverEnd, { transport });
    this.#connections.add(connection);
    void connection.done.then((outcome) => {
      this.#connections.delete(connection);
      if (this.#releasing || this.#index === undefined) return;
      const why = outcome.end === "failed" ? outcome.error.message : outcome.end;
      this.#replaceEnded(this.#index, why);
    });
  }

  /** A connection the kernel ended while serving: offer it a new one, within a rate limit. */
  #replaceEnded(index: number, why: string): void {
    const now = Date.now();
    this.#replacements = this.#replacements.filter((time) => now - time < 60_000);
    if (this.#replacements.length >= REPLACEMENTS_PER_MINUTE_MAX) {
      this.#options.log(
        `/dev/nbd${index}: a connection ended (${why}); too many replaced, not again`,
      );
      return;
    }
    this.#replacements.push(now);
    try {
      using kernel = (this.#options.openKernel ?? KernelNbd.open)();
      const taken = this.#offerSocket(kernel, index);
      this.#options.log(
        `/dev/nbd${index}: a connection ended (${why}); ` +
          (taken ? "replaced" : "the kernel has no dead socket to replace"),
      );
    } catch (error) {
      this.#options.log(
        `/dev/nbd${index}: a connection ended (${why}); ${(error as Error).message}`,
      );
    }
  }

  async #disconnect(kernel: KernelNbdControl, index: number): Promise<void> {
    this.#releasing = true;
    try {
      kernel.disconnect(index);
    } catch (error) {
      this.#options.log(describeNetlinkFailure(error, `cannot disconnect /dev/nbd${index}`));
      for (const connection of this.#connections) connection.abort();
    }
    await Promise.all([...this.#connections].map((connection) => connection.done));
    this.#releasing = false;
    this.#index = undefined;
  }

  #socketPairs(count: number): [number, number][] {
    const pairs: [number, number][] = [];
    for (let i = 0; i < count; i++) {
      const pair = createSocketPair();
      if (typeof pair === "number") {
        for (const [a, b] of pairs) closeDescriptor(a), closeDescriptor(b);
        throw new KernelAttachError(`cannot make a socketpair for /dev/nbd*: errno ${-pair}`);
      }
      pairs.push(pair);
    }
    return pairs;
  }

  /**
   * How many kernel tasks run the receiver (`recv_work`) of `/dev/nbd{index}`,
   * once the count reaches `wanted` or the wait ends; undefined when the
   * kernel's stacks cannot be read (not root, no stack traces).
   */
  async #waitForReceivers(index: number, wanted: number): Promise<number | undefined> {
    const procRoot = this.#options.procRoot ?? "/proc";
    const count = this.#options.countReceivers ??
      ((device: number) => countReceivers(device, procRoot));
    let receivers = count(index);
    for (
      let waited = 0;
      receivers !== undefined && receivers < wanted;
      waited += RECEIVERS_POLL_MS
    ) {
      if (waited >= RECEIVERS_WAIT_MS) break;
      await new Promise((resolve) => setTimeout(resolve, RECEIVERS_POLL_MS));
      receivers = count(index);
    }
    return receivers;
  }
}

/** `N` of `/dev/nbdN`. */
function deviceIndexOf(path: string): number {
  const match = /^\/dev\/nbd(\d+)$/.exec(path);
  if (match) return Number(match[1]);
  throw new KernelAttachError(`"${path}" is not an NBD device: give auto or /dev/nbdN`);
}

/** Tasks whose kernel stack is in `recv_work` for the device's workqueue (`nbdN-recv`). */
function countReceivers(index: number, procRoot: string): number | undefined {
  const queue = `nbd${index}-recv`;
  let count = 0;
  let readable = false;
  for (const process of Deno.readDirSync(procRoot)) {
    if (!/^\d+$/.test(process.name)) continue;
    let tasks: Iterable<Deno.DirEntry>;
    try {
      tasks = Deno.readDirSync(`${procRoot}/${process.name}/task`);
    } catch {
      continue;
    }
    for (const task of tasks) {
      const base = `${procRoot}/${process.name}/task/${task.name}`;
      try {
        const stack = Deno.readTextFileSync(`${base}/stack`);
        readable = true;
        if (!stack.includes("recv_work")) continue;
        if (Deno.readTextFileSync(`${base}/comm`).includes(queue)) count++;
      } catch {
        // The task ended, or its stack is not ours to read.
      }
    }
  }
  return readable ? count : undefined;
}

/**
 * `KernelAttachment`'s decisions about the kernel's device: a fresh device
 * stays attached whatever the kernel does with its receivers (a disconnect
 * would fail the requests of whoever reads it already, udev first), and a
 * connection the kernel ends is replaced with RECONFIGURE.
 *
 * Method: a fake of the kernel's netlink `nbd` family that holds its ends of
 * the socketpairs as the kernel does (a duplicate descriptor) and can end one
 * the way the kernel's request timeout does (its end closed: our end sees the
 * hang-up); a fake data plane that serves a descriptor until its peer hangs
 * up or serving stops; the receiver count given by the test; an empty sysfs,
 * so the setup has no device yet.
 */

import assert from "node:assert/strict";
import {
  KernelAttachment,
  type KernelAttachSettings,
  type KernelNbdControl,
} from "../../../mod/export/nbd/kernel_attachment.ts";
import type { NbdConnectRequest } from "../../../mod/export/nbd/kernel_nbd.ts";
import type { ConnectionOutcome, DataPlaneConnection } from "../../../mod/datapath/data_plane.ts";
import { closeDescriptor, duplicateDescriptor, peerHungUp } from "../../../mod/sys/syscalls.ts";

const POLL_MS = 20;
const DEVICE_INDEX = 3;

/** The kernel's side: which calls came, and the sockets it holds per connection. */
class FakeKernel {
  connects = 0;
  disconnects = 0;
  reconfigures = 0;
  /** The kernel's descriptor per connection; undefined once the kernel ended it. */
  readonly sockets: (number | undefined)[] = [];

  control(): KernelNbdControl {
    return {
      connect: (request: NbdConnectRequest) => {
        this.connects++;
        for (const fd of request.sockets) this.sockets.push(duplicateDescriptor(fd));
        return DEVICE_INDEX;
      },
      reconfigure: (index: number, options: { sockets: readonly number[] }) => {
        assert.equal(index, DEVICE_INDEX);
        this.reconfigures++;
        // Like the driver: a dead socket is replaced, a socket given when none is dead is dropped.
        const dead = this.sockets.indexOf(undefined);
        if (dead >= 0) this.sockets[dead] = duplicateDescriptor(options.sockets[0]!);
      },
      disconnect: (index: number) => {
        assert.equal(index, DEVICE_INDEX);
        this.disconnects++;
        this.#closeAll();
      },
      [Symbol.dispose]: () => {},
    };
  }

  /** What the driver's request timeout does to a connection: marks it dead and shuts it down. */
  end(connection: number): void {
    const fd = this.sockets[connection];
    assert.ok(fd !== undefined, `connection ${connection} is live`);
    closeDescriptor(fd);
    this.sockets[connection] = undefined;
  }

  #closeAll(): void {
    for (const [i, fd] of this.sockets.entries()) {
      if (fd !== undefined) closeDescriptor(fd);
      this.sockets[i] = undefined;
    }
  }

  [Symbol.dispose](): void {
    this.#closeAll();
  }
}

/** Serves a descriptor until its peer hangs up ("eof") or serving stops. */
class FakeDataPlane {
  served = 0;
  readonly live = new Set<number>();

  serve(fd: number): DataPlaneConnection {
    this.served++;
    this.live.add(fd);
    let finish: (outcome: ConnectionOutcome) => void = () => {};
    const done = new Promise<ConnectionOutcome>((resolve) => finish = resolve);
    const timer = setInterval(() => {
      if (peerHungUp(fd)) end({ end: "eof" });
    }, POLL_MS);
    const end = (outcome: ConnectionOutcome) => {
      if (!this.live.delete(fd)) return;
      clearInterval(timer);
      closeDescriptor(fd);
      finish(outcome);
    };
    return { done, stop: () => end({ end: "stopped" }), abort: () => end({ end: "stopped" }) };
  }
}

interface Fixture {
  kernel: FakeKernel;
  dataPlane: FakeDataPlane;
  attachment: KernelAttachment;
  log: string[];
  [Symbol.asyncDispose](): Promise<void>;
}

async function fixture(
  settings: Partial<KernelAttachSettings> & { receivers: number },
): Promise<Fixture> {
  const sysfsRoot = await Deno.makeTempDir({ prefix: "dm-remap-sysfs-" });
  const kernel = new FakeKernel();
  const dataPlane = new FakeDataPlane();
  const log: string[] = [];
  const attachment = new KernelAttachment(dataPlane, {
    settings: {
      device: "auto",
      connections: 2,
      requestTimeoutS: 5,
      deadConnectionTimeoutS: 600,
      ...settings,
    },
    export: { name: "test", sizeBytes: 1 << 20, preferredBlockBytes: 4096 },
    setupUuid: "00000000-0000-4000-8000-000000000001",
    log: (line) => log.push(line),
    sysfsRoot,
    openKernel: () => kernel.control(),
    countReceivers: (index) => {
      assert.equal(index, DEVICE_INDEX);
      return settings.receivers;
    },
  });
  return {
    kernel,
    dataPlane,
    attachment,
    log,
    async [Symbol.asyncDispose]() {
      await attachment.release("keep");
      kernel[Symbol.dispose]();
      await Deno.remove(sysfsRoot, { recursive: true });
    },
  };
}

async function until(what: string, condition: () => boolean): Promise<void> {
  for (let waited = 0; !condition(); waited += POLL_MS) {
    if (waited > 5000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

Deno.test("KernelAttachment.attach() keeps a fresh device whose kernel reads fewer connections than it got", async () => {
  await using fx = await fixture({ receivers: 1 });
  await fx.attachment.attach();
  assert.equal(fx.kernel.connects, 1, "one CONNECT, no second attempt");
  assert.equal(fx.kernel.disconnects, 0, "the device somebody may be reading is not disconnected");
  assert.equal(fx.attachment.devicePath, `/dev/nbd${DEVICE_INDEX}`);
  assert.equal(fx.attachment.connectionCount, 2, "every connection is served");
  assert.match(fx.log.join("\n"), /reads 1 of 2 connections.*after 5 s.*replaced/);
});

Deno.test("KernelAttachment replaces a connection the kernel ends with RECONFIGURE, and keeps the device", async () => {
  await using fx = await fixture({ receivers: 1 });
  await fx.attachment.attach();
  fx.kernel.end(1);
  await until("the replacement", () => fx.dataPlane.served === 3);
  assert.equal(fx.kernel.reconfigures, 1);
  assert.ok(fx.kernel.sockets.every((fd) => fd !== undefined), "the kernel took the new socket");
  assert.equal(fx.attachment.connectionCount, 2);
  assert.equal(fx.kernel.disconnects, 0);
  assert.match(fx.log.join("\n"), /a connection ended \(eof\); replaced/);
});

Deno.test("KernelAttachment's unansweredConnections seam leaves the first connection unread until the kernel ends it", async () => {
  await using fx = await fixture({ receivers: 2, unansweredConnections: 1 });
  await fx.attachment.attach();
  assert.equal(fx.dataPlane.served, 1, "the first connection is not served");
  assert.match(
    fx.log.join("\n"),
    /reads 1 of 2 connections \(1 left unanswered by the test seam\)/,
  );
  fx.kernel.end(0);
  await until("the replacement", () => fx.dataPlane.served === 2);
  assert.equal(fx.kernel.reconfigures, 1);
  assert.equal(fx.attachment.connectionCount, 2);
  assert.equal(fx.kernel.disconnects, 0);
});

Deno.test("KernelAttachment.release('detach') disconnects the device it attached", async () => {
  await using fx = await fixture({ receivers: 2 });
  await fx.attachment.attach();
  assert.equal(fx.kernel.disconnects, 0);
  await fx.attachment.release("detach");
  assert.equal(fx.kernel.disconnects, 1);
  assert.equal(fx.attachment.connectionCount, 0);
  assert.equal(fx.attachment.devicePath, undefined);
});

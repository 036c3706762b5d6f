/**
 * The data plane when a disk vanishes under its workers.
 *
 * Goal: a removed main disk fails the setup cleanly: the client gets EIO for
 * reads and writes served by the workers, the engine records no pending
 * block and no remap, and the setup reports itself failed. A removed spare
 * fails as a spare: reads of its slots are EIO (never the main disk's stale
 * bytes), the rest of the disk is served. Method: the disk is a real loop
 * device, served by `_setup.ts`; its backing file is
 * truncated and its capacity re-read (`losetup --set-capacity`), which leaves
 * it with a size of zero as the kernel leaves a removed disk.
 */

import assert from "node:assert/strict";
import { assertClientOk, runClient } from "../clients/run_client.ts";
import { attachLoopDevice } from "../device/fixtures.ts";
import { spareBytesFor, startServedSetup } from "./_setup.ts";

const MIB = 1024 * 1024;

Deno.test("data plane: a main disk that vanishes fails the setup with EIO, and nothing is remapped or pending", async () => {
  const image = await Deno.makeTempFile({ dir: "/var/tmp", suffix: ".img" });
  await Deno.truncate(image, 16 * MIB);
  const loop = await attachLoopDevice(image);
  try {
    await using setup = await startServedSetup({ mainPath: loop.path });
    const blockBytes = setup.blockBytes;
    const script = (tag: string) =>
      [
        `for op in ("write", "read", "flush"):`,
        `    try:`,
        `        if op == "write": h.pwrite(b"x" * ${blockBytes}, ${8 * blockBytes})`,
        `        elif op == "read": h.pread(${blockBytes}, ${16 * blockBytes})`,
        `        else: h.flush()`,
        `        print("${tag}", op, "ok")`,
        `    except nbd.Error as e:`,
        `        print("${tag}", op, e.errno)`,
      ].join("\n");
    const before = await runClient("nbdsh", ["-u", setup.uri, "-c", script("before")]);
    assertClientOk(before);
    assert.deepEqual(before.stdout.trim().split("\n"), [
      "before write ok",
      "before read ok",
      "before flush ok",
    ]);
    await Deno.truncate(image, 0);
    const resized = await new Deno.Command("losetup", { args: ["--set-capacity", loop.path] })
      .output();
    assert.ok(resized.success);
    const after = await runClient("nbdsh", ["-u", setup.uri, "-c", script("after")]);
    assertClientOk(after);
    assert.deepEqual(after.stdout.trim().split("\n"), [
      "after write EIO",
      "after read EIO",
      "after flush EIO",
    ]);
    assert.equal(setup.engine.remapCount, 0, "a vanished disk turns no block into a remap");
    assert.deepEqual(setup.engine.pendingBlocks, []);
    assert.match(setup.engine.failure ?? "", /is gone/);
    assert.deepEqual(setup.events.map((event) => event.type), ["main-failed"]);
  } finally {
    await loop.detach();
    await Deno.remove(image);
  }
});

Deno.test("data plane: a spare that vanishes fails as a spare: its slot reads EIO, never the main disk's stale bytes", async () => {
  const image = await Deno.makeTempFile({ dir: "/var/tmp", suffix: ".img" });
  await Deno.truncate(image, spareBytesFor(4096));
  const loop = await attachLoopDevice(image);
  try {
    await using setup = await startServedSetup({ sparePath: loop.path });
    const blockBytes = setup.blockBytes;
    setup.faulty.setBad({ offsetBytes: 3 * blockBytes, lengthBytes: blockBytes }, "write");
    await setup.engine.write(new Uint8Array(blockBytes).fill(0x5a), 3 * blockBytes);
    assert.deepEqual(setup.engine.lookup(3), { spareIndex: 0, slotIndex: 0 });
    await Deno.truncate(image, 0);
    const resized = await new Deno.Command("losetup", { args: ["--set-capacity", loop.path] })
      .output();
    assert.ok(resized.success);
    const script = [
      `for offset in (${3 * blockBytes}, ${4 * blockBytes}):`,
      `    try:`,
      `        print(offset // ${blockBytes}, h.pread(${blockBytes}, offset)[:1].hex())`,
      `    except nbd.Error as e:`,
      `        print(offset // ${blockBytes}, e.errno)`,
    ].join("\n");
    const run = await runClient("nbdsh", ["-u", setup.uri, "-c", script]);
    assertClientOk(run);
    assert.deepEqual(run.stdout.trim().split("\n"), ["3 EIO", "4 00"]);
    assert.equal(setup.engine.spares[0]!.state, "failed");
    assert.equal(setup.engine.failure, undefined, "the setup still serves");
    assert.ok(setup.events.some((event) => event.type === "spare-failed"));
  } finally {
    await loop.detach();
    await Deno.remove(image);
  }
});

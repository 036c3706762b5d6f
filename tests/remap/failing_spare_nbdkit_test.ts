/**
 * Goal: the spare pool's promises with spares that fail outside the project:
 * a write to a slot that stops taking writes is remapped to another spare;
 * a failed spare's readable slots are evacuated and its unreadable ones give
 * EIO, become pending and move on the next write (never the main disk's old
 * data); a spare missing at open leaves its blocks EIO and the rest served.
 * Method: the real engine; both spares are nbdkit disks behind nbdfuse
 * (tests/clients/failing_disk.ts) opened with O_DIRECT, whose bad ranges are
 * set while the setup runs, so the errors come from the kernel. The main
 * disk is a memory device behind the fault layer: its failing writes are
 * what makes remaps. Each spare request forks a shell, so the setup is small.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createSetup } from "../../mod/assembly/create.ts";
import { assembleSetup, openSpares } from "../../mod/assembly/assemble.ts";
import { openFileDevice } from "../../mod/device/file_device.ts";
import { FaultyDevice } from "../../mod/fault/faulty_device.ts";
import { minimumSpareBytes, slotOffsetBytes } from "../../mod/metadata/spare_layout.ts";
import type { RemapDevice, RemapDeviceOptions, RemapEvent } from "../../mod/remap/remap_device.ts";
import { isDeviceGone } from "../../mod/errors.ts";
import {
  type FailingDisk,
  type FailingRange,
  type FailOn,
  startFailingDisk,
} from "../clients/failing_disk.ts";
import { memoryIdentity, pattern, readBack } from "./harness.ts";

const BLOCK = 4096;
/** Slots per spare: the minimum of 16 and 16 more. */
const SPARE_BYTES = minimumSpareBytes(BLOCK) + 16 * BLOCK;
const MAIN_BYTES = 4 * 1024 * 1024;
/** What the main disk holds where a block was remapped: a read that fell through to it would show. */
const STALE = 0xee;

interface Rig {
  engine: RemapDevice;
  events: RemapEvent[];
  /** The main disk of the engine now, behind the fault layer. */
  faulty: FaultyDevice;
  disks: FailingDisk[];
  /** Opens the setup again with the spares whose disks are given (a restart). */
  reopen(disks: FailingDisk[]): Promise<RemapDevice>;
  /** Makes the slot of a remapped block fail on its spare's disk. */
  breakSlot(blockIndex: number, fail: FailOn): Promise<void>;
}

/** Two failing-disk spares, and `blocks` remapped (written with their patterns). */
async function withRig(
  options: { blocks: readonly number[]; placement: RemapDeviceOptions["placement"] },
  test: (rig: Rig) => Promise<void>,
): Promise<void> {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-failing-spares-" });
  const mainPath = `${directory}/main.img`;
  await Deno.writeFile(mainPath, new Uint8Array());
  await Deno.truncate(mainPath, MAIN_BYTES);
  const disks: FailingDisk[] = [];
  /** The bad ranges `breakSlot` set on each disk: it adds to them. */
  const badRanges = new Map<FailingDisk, FailingRange[]>();
  const events: RemapEvent[] = [];
  let engine: RemapDevice | undefined;
  let faulty: FaultyDevice | undefined;
  const openMain = async () =>
    faulty = new FaultyDevice(await openFileDevice(mainPath), { blockBytes: 512 });
  const openSpare = (disk: FailingDisk) => openFileDevice(disk.path, { direct: true });
  const reopen = async (present: FailingDisk[]) => {
    const spares = await openSpares(await Promise.all(present.map(openSpare)), {
      allowMissing: true,
    });
    const main = await openMain();
    return engine = await assembleSetup({ device: main, identity: memoryIdentity(main) }, spares, {
      readRetries: 0,
      metadataDelayMs: 0,
      placement: options.placement,
      onEvent: (event) => events.push(event),
    });
  };
  try {
    for (let i = 0; i < 2; i++) disks.push(await startFailingDisk({ sizeBytes: SPARE_BYTES }));
    const main = await openMain();
    await createSetup({
      name: "nbdkit",
      main: { device: main, identity: memoryIdentity(main) },
      spares: await Promise.all(disks.map(async (disk) => ({
        device: await openSpare(disk),
        path: disk.path,
      }))),
      blockBytes: BLOCK,
    });
    await main.close();
    await reopen(disks);
    for (const blockIndex of options.blocks) {
      faulty!.setBad({ offsetBytes: blockIndex * BLOCK, lengthBytes: BLOCK }, "write");
      await engine!.write(pattern(BLOCK, blockIndex + 1), blockIndex * BLOCK);
      assert.ok(engine!.lookup(blockIndex), `block ${blockIndex} remapped`);
    }
    // The main disk's copies of the remapped blocks are old data a fall-through read would show.
    using file = await Deno.open(mainPath, { write: true });
    for (const blockIndex of options.blocks) {
      await file.seek(blockIndex * BLOCK, Deno.SeekMode.Start);
      await file.write(new Uint8Array(BLOCK).fill(STALE));
    }
    await test({
      get engine() {
        return engine!;
      },
      events,
      get faulty() {
        return faulty!;
      },
      disks,
      reopen,
      breakSlot: async (blockIndex, fail) => {
        const location = engine!.lookup(blockIndex)!;
        const layout = engine!.spares[location.spareIndex]!.layout;
        const disk = disks[location.spareIndex]!;
        const ranges = badRanges.get(disk) ?? [];
        ranges.push({
          offsetBytes: slotOffsetBytes(layout, location.slotIndex),
          lengthBytes: BLOCK,
          fail,
        });
        badRanges.set(disk, ranges);
        await disk.setBadRanges(ranges);
      },
    });
  } finally {
    await engine?.close().catch(() => {});
    for (const disk of disks) await disk.stop();
    await Deno.remove(directory, { recursive: true });
  }
}

/** Reads a slot's bytes from the file behind a failing disk, around its faults. */
async function slotOnDisk(rig: Rig, blockIndex: number): Promise<Uint8Array> {
  const location = rig.engine.lookup(blockIndex)!;
  const offsetBytes = slotOffsetBytes(
    rig.engine.spares[location.spareIndex]!.layout,
    location.slotIndex,
  );
  using file = await Deno.open(rig.disks[location.spareIndex]!.backingPath);
  await file.seek(offsetBytes, Deno.SeekMode.Start);
  const bytes = new Uint8Array(BLOCK);
  assert.equal(await file.read(bytes), BLOCK);
  return bytes;
}

Deno.test("a write to a spare slot the kernel stops writing is remapped to the other spare", async () => {
  const blocks = [40, 42, 44];
  await withRig({ blocks, placement: "fill-first" }, async (rig) => {
    for (const blockIndex of blocks) assert.equal(rig.engine.lookup(blockIndex)?.spareIndex, 0);
    const target = blocks[1]!;
    await rig.breakSlot(target, "write");
    await rig.engine.write(pattern(BLOCK, 1000), target * BLOCK);
    const writeErrors = (await rig.disks[0]!.injectedErrors()).filter((error) =>
      error.operation === "write"
    );
    assert.ok(writeErrors.length > 0, "the kernel failed the write to spare 0's slot");
    assert.equal(rig.engine.lookup(target)?.spareIndex, 1, "moved to spare 1");
    assert.deepEqual(await readBack(rig.engine, target * BLOCK, BLOCK), pattern(BLOCK, 1000));
    assert.deepEqual(await slotOnDisk(rig, target), pattern(BLOCK, 1000), "on spare 1's disk");
    assert.equal(rig.engine.spares[0]!.state, "failed");
    assert.ok(rig.events.some((event) => event.type === "spare-failed" && event.spareIndex === 0));
    // The failure evacuates the rest; nothing of spare 0 is unreadable.
    assert.equal((await rig.engine.evacuate()).failed, 0);
    for (const blockIndex of blocks) {
      assert.equal(rig.engine.lookup(blockIndex)?.spareIndex, 1, `block ${blockIndex} moved`);
    }
    // Durable: after a restart, the write is where it went, with its data.
    await rig.engine.close();
    const reopened = await rig.reopen(rig.disks);
    assert.equal(reopened.spares[0]!.state, "failed");
    for (const blockIndex of blocks) {
      const expected = blockIndex === target
        ? pattern(BLOCK, 1000)
        : pattern(BLOCK, blockIndex + 1);
      assert.equal(reopened.lookup(blockIndex)?.spareIndex, 1);
      assert.deepEqual(await readBack(reopened, blockIndex * BLOCK, BLOCK), expected);
    }
  });
});

Deno.test("a spare whose slots turn unreadable: the readable ones are evacuated, the others EIO, pending, then remapped by a write", async () => {
  const blocks = [60, 62, 64, 66, 68];
  await withRig({ blocks, placement: "fill-first" }, async (rig) => {
    const [kept1, unreadable1, failing, unreadable2, kept2] = blocks as [
      number,
      number,
      number,
      number,
      number,
    ];
    // The disk goes bad around three slots: two no longer read, one no longer writes.
    await rig.breakSlot(unreadable1, "read");
    await rig.breakSlot(unreadable2, "read");
    await rig.breakSlot(failing, "write");
    await assert.rejects(
      readBack(rig.engine, unreadable1 * BLOCK, BLOCK),
      /EIO/,
      "read of an unreadable slot on a working spare",
    );
    // The write fails spare 0 and starts the evacuation.
    await rig.engine.write(pattern(BLOCK, 2000), failing * BLOCK);
    assert.equal(rig.engine.spares[0]!.state, "failed");
    const evacuation = await rig.engine.evacuate();
    assert.equal(evacuation.failed, 2, "the unreadable slots stay where they are");
    for (const blockIndex of [kept1, kept2]) {
      assert.equal(rig.engine.lookup(blockIndex)?.spareIndex, 1, `block ${blockIndex} evacuated`);
      assert.deepEqual(await slotOnDisk(rig, blockIndex), pattern(BLOCK, blockIndex + 1));
      assert.deepEqual(
        await readBack(rig.engine, blockIndex * BLOCK, BLOCK),
        pattern(BLOCK, blockIndex + 1),
      );
    }
    assert.deepEqual(await readBack(rig.engine, failing * BLOCK, BLOCK), pattern(BLOCK, 2000));
    for (const blockIndex of [unreadable1, unreadable2]) {
      assert.equal(rig.engine.lookup(blockIndex)?.spareIndex, 0);
      await assert.rejects(
        readBack(rig.engine, blockIndex * BLOCK, BLOCK),
        (error: Error) => /EIO/.test(error.message) && !isDeviceGone(error),
        `block ${blockIndex}: EIO, never the main disk's old data`,
      );
      assert.ok(rig.engine.isPending(blockIndex), `block ${blockIndex} pending after the read`);
    }
    assert.ok(
      rig.events.some((event) => event.type === "pending" && event.blockIndex === unreadable1),
    );
    // The next write of a pending block moves it to spare 1; the other stays EIO.
    await rig.engine.write(pattern(BLOCK, 3000), unreadable1 * BLOCK);
    assert.equal(rig.engine.lookup(unreadable1)?.spareIndex, 1);
    assert.equal(rig.engine.isPending(unreadable1), false);
    assert.deepEqual(await readBack(rig.engine, unreadable1 * BLOCK, BLOCK), pattern(BLOCK, 3000));
    assert.deepEqual(await slotOnDisk(rig, unreadable1), pattern(BLOCK, 3000));
    await assert.rejects(readBack(rig.engine, unreadable2 * BLOCK, BLOCK), /EIO/);
    // The pending block stays pending across a restart: still EIO, never stale.
    await rig.engine.persistState();
    await rig.engine.close();
    const reopened = await rig.reopen(rig.disks);
    assert.ok(reopened.isPending(unreadable2));
    await assert.rejects(readBack(reopened, unreadable2 * BLOCK, BLOCK), /EIO/);
    assert.deepEqual(await readBack(reopened, unreadable1 * BLOCK, BLOCK), pattern(BLOCK, 3000));
  });
});

Deno.test("a spare whose disk is gone at open: EIO for its blocks, correct data elsewhere, degraded", async () => {
  // Round-robin: the remapped blocks alternate between the two spares.
  const blocks = [80, 81, 82, 83, 84, 85];
  const plain = [3, 700];
  await withRig({ blocks, placement: "round-robin" }, async (rig) => {
    for (const blockIndex of plain) {
      await rig.engine.write(pattern(BLOCK, blockIndex + 1), blockIndex * BLOCK);
    }
    const onSpare = (spareIndex: number) =>
      blocks.filter((blockIndex) => rig.engine.lookup(blockIndex)?.spareIndex === spareIndex);
    const [gone, kept] = [onSpare(1), onSpare(0)];
    assert.equal(gone.length, 3);
    assert.equal(kept.length, 3);
    await rig.engine.close();
    // Spare 1's disk is torn down: its file is no longer there.
    const lost = rig.disks[1]!;
    const lostPath = lost.path;
    await lost.stop();
    await assert.rejects(Deno.stat(lostPath), Deno.errors.NotFound);

    const engine = await rig.reopen([rig.disks[0]!]);
    assert.equal(engine.degraded, true);
    assert.equal(engine.spares[1]!.state, "missing");
    const failed = rig.events.findLast((event) => event.type === "spare-failed");
    assert.ok(failed?.type === "spare-failed" && failed.spareIndex === 1);
    for (const blockIndex of gone) {
      await assert.rejects(
        readBack(engine, blockIndex * BLOCK, BLOCK),
        (error: Error) => /EIO/.test(error.message),
        `block ${blockIndex} on the missing spare: EIO, never the main disk's old data`,
      );
    }
    for (const blockIndex of [...kept, ...plain]) {
      assert.deepEqual(
        await readBack(engine, blockIndex * BLOCK, BLOCK),
        pattern(BLOCK, blockIndex + 1),
        `block ${blockIndex}`,
      );
    }
    // New writes work, and a new failing block is remapped to the spare that is there.
    rig.faulty.setBad({ offsetBytes: 900 * BLOCK, lengthBytes: BLOCK }, "write");
    await engine.write(pattern(BLOCK, 4242), 900 * BLOCK);
    assert.equal(engine.lookup(900)?.spareIndex, 0);
    assert.deepEqual(await readBack(engine, 900 * BLOCK, BLOCK), pattern(BLOCK, 4242));
  });
});

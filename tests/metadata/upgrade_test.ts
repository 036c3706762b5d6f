/**
 * Goal: a setup made by format version 1 (the images in fixtures/, made by
 * 54e7a6b with `make_v1_fixtures.ts`) opens with every remap, pending block
 * and written block intact, and assembly upgrades it to version 2: every
 * copy rewritten, and each spare alone then knows every spare's remaps.
 * Method: the compressed images are loaded into memory devices and opened
 * with the current code, as `serve` opens a setup; nothing is stubbed.
 *
 * @module
 */

import assert from "node:assert/strict";
import { MemoryDevice } from "../../mod/device/memory_device.ts";
import { assembleSetup, openSpares } from "../../mod/assembly/assemble.ts";
import { SpareStore } from "../../mod/metadata/spare_store.ts";
import { FORMAT_VERSION } from "../../mod/metadata/superblock.ts";
import { memoryIdentity, pattern } from "../remap/harness.ts";

const here = new URL("./fixtures/", import.meta.url);

interface Expected {
  blockBytes: number;
  remaps: { blockIndex: number; spareIndex: number; slotIndex: number }[];
  pending: number[];
  written: number[];
}

async function image(name: string): Promise<MemoryDevice> {
  const file = await Deno.open(new URL(name, here));
  const bytes = new Uint8Array(
    await new Response(file.readable.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer(),
  );
  const device = new MemoryDevice(name, bytes.length);
  await device.write(bytes, 0);
  await device.flush();
  return device;
}

async function fixture() {
  const expected = JSON.parse(
    await Deno.readTextFile(new URL("v1_expected.json", here)),
  ) as Expected;
  return {
    expected,
    main: await image("v1_main.img.gz"),
    spares: [await image("v1_spare0.img.gz"), await image("v1_spare1.img.gz")],
  };
}

Deno.test("a version-1 setup opens with its remaps, pending blocks and data, and is upgraded to version 2", async () => {
  const { expected, main, spares } = await fixture();
  const before = await SpareStore.open(spares[1]!, { repair: false });
  assert.equal(before.store.formatVersion, 1, "the fixture is a version-1 spare");
  assert.equal(before.store.slotsOf(0).length, 0, "a version-1 spare knows only its own slots");

  const opened = await openSpares(spares);
  const engine = await assembleSetup({ device: main, identity: memoryIdentity(main) }, opened, {
    metadataDelayMs: 0,
  });
  assert.deepEqual(engine.remaps(), expected.remaps);
  assert.deepEqual(engine.pendingBlocks, expected.pending);
  for (const blockIndex of expected.written) {
    const buffer = new Uint8Array(expected.blockBytes);
    await engine.read(buffer, blockIndex * expected.blockBytes);
    assert.deepEqual(buffer, pattern(expected.blockBytes, blockIndex + 1), `block ${blockIndex}`);
  }
  await engine.close();

  // Each spare alone now says where every remapped block lives, from what
  // reached its disk (crash() keeps only flushed writes).
  for (const [spareIndex, device] of spares.entries()) {
    const reopened = device.crash();
    const { store, report } = await SpareStore.open(reopened, { repair: false });
    assert.ok(report.copies.every((copy) => copy.valid && copy.formatVersion === FORMAT_VERSION));
    const known = [0, 1].flatMap((owner) =>
      store.slotsOf(owner).map((blockIndex, slotIndex) => ({
        blockIndex,
        spareIndex: owner,
        slotIndex,
      }))
    ).sort((a, b) => a.blockIndex - b.blockIndex);
    assert.deepEqual(known, expected.remaps, `spare ${spareIndex} alone knows every remap`);
  }
});

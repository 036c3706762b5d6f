/**
 * Linux AIO under O_DIRECT file devices.
 *
 * Goal: every request completes with the right bytes in the right place,
 * whether the kernel completes it inside io_submit (tmpfs) or later (a disk
 * filesystem, where the blocking reaper collects it), and more requests than
 * the ring has slots wait their turn instead of failing.
 * Method: write distinct patterns through an O_DIRECT device in one burst,
 * check them through a second, buffered open, then read them back in a burst.
 */

import assert from "node:assert/strict";
import { openFileDevice } from "../../mod/device/file_device.ts";
import { AIO_SLOTS_MAX, DIRECT_ALIGN_BYTES } from "../../mod/constants.ts";
import { directCapableDirectory, makeSparseImage } from "./fixtures.ts";

const BLOCK = 4096;
const REQUESTS = AIO_SLOTS_MAX * 3 + 7;

function block(index: number): Uint8Array {
  const bytes = new Uint8Array(BLOCK);
  new DataView(bytes.buffer).setUint32(0, index, true);
  bytes.fill((index * 37) & 0xff, 4);
  return bytes;
}

for (
  const [where, directory] of [["tmpfs", "/dev/shm"], ["a disk filesystem", undefined]] as const
) {
  Deno.test(`FileDevice with O_DIRECT on ${where} moves data through Linux AIO, more requests than slots at once`, async () => {
    const image = await makeSparseImage(REQUESTS * BLOCK * 2, {
      directory: directory ?? await directCapableDirectory(),
    });
    const device = await openFileDevice(image.path, { direct: true });
    const buffered = await openFileDevice(image.path, { readOnly: true });
    try {
      assert.equal(device.ioEngine, "aio");
      assert.equal(buffered.ioEngine, "thread");
      // Every other block, in a scrambled order, all in flight together.
      const order = Array.from({ length: REQUESTS }, (_, i) => (i * 7919) % REQUESTS);
      await Promise.all(order.map((index) => device.write(block(index), index * 2 * BLOCK)));
      for (const index of [0, 1, REQUESTS - 1, AIO_SLOTS_MAX]) {
        const seen = new Uint8Array(BLOCK);
        await buffered.read(seen, index * 2 * BLOCK);
        assert.deepEqual(seen, block(index), `block ${index} through the page cache`);
      }
      const buffers = order.map(() => new Uint8Array(BLOCK));
      await Promise.all(order.map((index, i) => device.read(buffers[i]!, index * 2 * BLOCK)));
      order.forEach((index, i) =>
        assert.deepEqual(buffers[i], block(index), `block ${index} through AIO`)
      );
      // The gaps between written blocks still read as zeros.
      const gap = new Uint8Array(BLOCK);
      await device.read(gap, BLOCK);
      assert.deepEqual(gap, new Uint8Array(BLOCK));
      assert.equal(DIRECT_ALIGN_BYTES % 512, 0);
    } finally {
      await device.close();
      await buffered.close();
      await image.cleanup();
    }
  });
}

Deno.test("FileDevice with O_DIRECT reports a read past the end as an error, not short data", async () => {
  const image = await makeSparseImage(64 * 1024, { directory: "/dev/shm" });
  const device = await openFileDevice(image.path, { direct: true });
  try {
    await Deno.truncate(image.path, 32 * 1024);
    await assert.rejects(device.read(new Uint8Array(BLOCK), 48 * 1024), /Cannot read/);
  } finally {
    await device.close();
    await image.cleanup();
  }
});

/**
 * FileDevice over real files and block devices.
 *
 * Goal: the conformance suite holds for a sparse image (buffered and O_DIRECT)
 * and a loop block device (O_DIRECT, exclusive), and opening, sizing, end of
 * file, read-only, exclusive access and closing behave as documented.
 * Method: temporary sparse images; loop devices from `losetup` (needs root:
 * a missing loop device is a setup failure, not a skip). Errors from a disk
 * that fails are in `failing_disk_test.ts`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AssertionError } from "../../mod/assert.ts";
import { FileDevice, openFileDevice } from "../../mod/device/file_device.ts";
import { DeviceIoError, DeviceOpenError } from "../../mod/errors.ts";
import { FileDescriptor, OPEN_FLAGS, openPath } from "../../mod/sys/libc.ts";
import { pattern, runDeviceConformance } from "./device_conformance.ts";
import { attachLoopDevice, directCapableDirectory, makeSparseImage } from "./fixtures.ts";

runDeviceConformance("FileDevice (sparse file)", async (sizeBytes) => {
  const image = await makeSparseImage(sizeBytes);
  return { device: await openFileDevice(image.path), cleanup: image.cleanup };
});

runDeviceConformance("FileDevice (sparse file, direct I/O)", async (sizeBytes) => {
  const image = await makeSparseImage(sizeBytes, { directory: await directCapableDirectory() });
  return { device: await openFileDevice(image.path, { direct: true }), cleanup: image.cleanup };
});

runDeviceConformance("FileDevice (loop block device, direct I/O)", async (sizeBytes) => {
  const image = await makeSparseImage(sizeBytes);
  const loop = await attachLoopDevice(image.path);
  const device = await openFileDevice(loop.path, { direct: true, exclusive: true });
  return {
    device,
    async cleanup() {
      await loop.detach();
      await image.cleanup();
    },
  };
});

Deno.test("openFileDevice() reports kind, size and options of a file and of a block device", async () => {
  const image = await makeSparseImage(3 * 1024 * 1024);
  const loop = await attachLoopDevice(image.path);
  try {
    const file = await openFileDevice(image.path, { readOnly: true });
    assert.deepEqual(
      {
        name: file.name,
        kind: file.kind,
        sizeBytes: file.sizeBytes,
        readOnly: file.readOnly,
        direct: file.direct,
      },
      { name: image.path, kind: "file", sizeBytes: 3 * 1024 * 1024, readOnly: true, direct: false },
    );
    await file.close();
    const block = await openFileDevice(loop.path, { direct: true });
    assert.ok(block instanceof FileDevice);
    assert.deepEqual(
      { name: block.name, kind: block.kind, sizeBytes: block.sizeBytes, direct: block.direct },
      { name: loop.path, kind: "block", sizeBytes: 3 * 1024 * 1024, direct: true },
    );
    await block.close();
  } finally {
    await loop.detach();
    await image.cleanup();
  }
});

Deno.test("openFileDevice() of a missing path is DeviceOpenError ENOENT naming the path", async () => {
  const path = "/nonexistent/dm-remap/disk.img";
  const error = await openFileDevice(path).then(() => undefined, (error) => error);
  assert.ok(error instanceof DeviceOpenError);
  assert.equal(error.code, "ENOENT");
  assert.equal(error.device, path);
  assert.match(error.message, /^Cannot open "\/nonexistent\/dm-remap\/disk\.img": no such file/);
});

Deno.test("openFileDevice() rejects a file whose size is not a multiple of 512, naming the fix", async () => {
  const image = await makeSparseImage(1000);
  try {
    const error = await openFileDevice(image.path).then(() => undefined, (error) => error);
    assert.ok(error instanceof DeviceOpenError);
    assert.equal(error.code, "EINVAL");
    assert.ok(error.message.includes(`"${image.path}"`), error.message);
    assert.ok(error.message.includes("1000 bytes"), error.message);
    assert.ok(error.message.includes(`truncate -s 1024 ${image.path}`), error.message);
  } finally {
    await image.cleanup();
  }
});

Deno.test("openFileDevice() rejects a directory and a character device", async () => {
  for (const path of ["/tmp", "/dev/null"]) {
    await assert.rejects(() => openFileDevice(path), (error) => {
      assert.ok(error instanceof DeviceOpenError, path);
      assert.equal(error.code, "EINVAL", path);
      assert.match(error.message, /neither a regular file nor a block device/);
      return true;
    });
  }
});

Deno.test("FileDevice.read() past the end of a file that shrank is EIO, never short data", async () => {
  const image = await makeSparseImage(8192);
  const device = await openFileDevice(image.path);
  try {
    await Deno.truncate(image.path, 4096);
    for (const offsetBytes of [4096, 2048]) {
      const buffer = new Uint8Array(4096).fill(0xee);
      const error = await device.read(buffer, offsetBytes).then(() => undefined, (error) => error);
      assert.ok(error instanceof DeviceIoError, `read at ${offsetBytes}`);
      assert.equal(error.code, "EIO");
      assert.deepEqual([error.offsetBytes, error.lengthBytes], [offsetBytes, 4096]);
      assert.match(
        String((error.cause as Error).message),
        /Unexpected end of file: at offset 4096/,
      );
    }
  } finally {
    await device.close();
    await image.cleanup();
  }
});

Deno.test("FileDevice opened readOnly reads, and refuses writes, zeroing and discards with EROFS", async () => {
  const image = await makeSparseImage(64 * 1024);
  await Deno.writeFile(image.path, pattern(64 * 1024, 9));
  const device = await openFileDevice(image.path, { readOnly: true });
  try {
    const back = new Uint8Array(4096);
    await device.read(back, 4096);
    assert.deepEqual(back, pattern(64 * 1024, 9).subarray(4096, 8192));
    const range = { offsetBytes: 512, lengthBytes: 512 };
    for (
      const call of [
        () => device.write(new Uint8Array(512), 512),
        () => device.writeZeroes(range),
        () => device.discard(range),
      ]
    ) {
      await assert.rejects(
        call,
        (error) => error instanceof DeviceIoError && error.code === "EROFS",
      );
    }
    await device.flush();
    assert.deepEqual(await Deno.readFile(image.path), pattern(64 * 1024, 9));
  } finally {
    await device.close();
    await image.cleanup();
  }
});

/** A descriptor that counts its fdatasync calls, to see which flushes reach the kernel. */
class CountingDescriptor extends FileDescriptor {
  syncs = 0;
  override fdatasync(): Promise<number> {
    this.syncs++;
    return super.fdatasync();
  }
}

Deno.test("FileDevice.directAccess() offers its descriptor, and from then on every flush syncs", async () => {
  const image = await makeSparseImage(64 * 1024);
  const fd = openPath(image.path, OPEN_FLAGS.O_RDWR);
  assert.ok(fd >= 0, `open failed: errno ${-fd}`);
  const descriptor = new CountingDescriptor(fd);
  const device = new FileDevice({
    path: image.path,
    descriptor,
    kind: "file",
    sizeBytes: 64 * 1024,
    readOnly: false,
    direct: false,
  });
  try {
    await device.flush();
    assert.equal(descriptor.syncs, 0, "nothing written through it: nothing to sync");
    assert.deepEqual(device.directAccess(), { fd, direct: false });
    // Writes through the descriptor are invisible to the device: each flush must sync them.
    await device.flush();
    await device.flush();
    assert.equal(descriptor.syncs, 2);
  } finally {
    await device.close();
    await image.cleanup();
  }
});

Deno.test("openFileDevice() exclusive: a second exclusive open of a file or block device is EBUSY", async () => {
  const image = await makeSparseImage(1024 * 1024);
  const loop = await attachLoopDevice(image.path);
  try {
    for (const path of [image.path, loop.path]) {
      const first = await openFileDevice(path, { exclusive: true });
      const error = await openFileDevice(path, { exclusive: true }).then(
        () => undefined,
        (error) => error,
      );
      assert.ok(error instanceof DeviceOpenError, path);
      assert.equal(error.code, "EBUSY", path);
      assert.ok(error.message.startsWith(`Cannot open "${path}"`), error.message);
      const shared = await openFileDevice(path);
      await shared.close();
      await first.close();
      const again = await openFileDevice(path, { exclusive: true });
      await again.close();
    }
  } finally {
    await loop.detach();
    await image.cleanup();
  }
});

Deno.test("FileDevice with direct I/O on a block device reports the kernel's EINVAL for a misaligned offset", async () => {
  const image = await makeSparseImage(1024 * 1024);
  const loop = await attachLoopDevice(image.path);
  const device = await openFileDevice(loop.path, { direct: true });
  try {
    const error = await device.read(new Uint8Array(512), 100).then(
      () => undefined,
      (error) => error,
    );
    assert.ok(error instanceof DeviceIoError);
    assert.deepEqual([error.code, error.errno, error.offsetBytes, error.lengthBytes], [
      "EINVAL",
      22,
      100,
      512,
    ]);
    await device.read(new Uint8Array(512), 512);
  } finally {
    await device.close();
    await loop.detach();
    await image.cleanup();
  }
});

Deno.test("FileDevice.writeZeroes() falls back to writing zeros where fallocate cannot zero (tmpfs)", async () => {
  // tmpfs punches holes but answers EOPNOTSUPP to FALLOC_FL_ZERO_RANGE.
  const image = await makeSparseImage(4 * 1024 * 1024, { directory: "/dev/shm" });
  const device = await openFileDevice(image.path);
  try {
    await device.write(pattern(4 * 1024 * 1024, 10), 0);
    const range = { offsetBytes: 512, lengthBytes: 3 * 1024 * 1024 };
    await device.writeZeroes(range);
    await device.writeZeroes({ offsetBytes: 3 * 1024 * 1024 + 512, lengthBytes: 4096 });
    const expected = pattern(4 * 1024 * 1024, 10);
    expected.fill(0, 512, 512 + 3 * 1024 * 1024);
    expected.fill(0, 3 * 1024 * 1024 + 512, 3 * 1024 * 1024 + 512 + 4096);
    assert.deepEqual(await Deno.readFile(image.path), expected);
  } finally {
    await device.close();
    await image.cleanup();
  }
});

Deno.test("FileDevice.close() waits for running requests, then later calls fail", async () => {
  const image = await makeSparseImage(4 * 1024 * 1024);
  const device = await openFileDevice(image.path);
  try {
    const reads = Array.from(
      { length: 64 },
      (_, index) => device.read(new Uint8Array(64 * 1024), index * 64 * 1024),
    );
    await device.close();
    const settled = await Promise.allSettled(reads);
    assert.deepEqual(settled.filter((result) => result.status === "rejected"), []);
    await assert.rejects(async () => await device.read(new Uint8Array(512), 0), AssertionError);
  } finally {
    await image.cleanup();
  }
});

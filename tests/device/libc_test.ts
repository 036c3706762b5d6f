/**
 * The libc layer returns the right errno for failures of nonblocking calls.
 *
 * Goal: prove that repeating a failed nonblocking call on the main thread and
 * reading `__errno_location` there gives the real errno (the worker thread's
 * errno is out of reach). Method: provoke each error with a real kernel object:
 * a descriptor that is not open (EBADF), /dev/full (ENOSPC, and EOPNOTSUPP
 * for RWF_DSYNC), a FIFO (ESPIPE, mapped to EOTHER), a missing path (ENOENT). Also checks that `node:fs` descriptors are real OS
 * descriptors that FFI calls can use. EIO from a failing disk and EINVAL from
 * misaligned direct I/O are in `failing_disk_test.ts` and `file_device_test.ts`.
 *
 * @module
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import { ERRNO, FileDescriptor, ioErrorCodeOf, OPEN_FLAGS, openPath } from "../../mod/sys/libc.ts";

Deno.test("FileDescriptor.pread() and fdatasync() on a descriptor that is not open return -EBADF", async () => {
  // A number far above any open descriptor: closing a real one could race with
  // other test modules in this process reusing its number.
  const descriptor = new FileDescriptor(999_999);
  assert.equal(await descriptor.pread(new Uint8Array(16), 0), -ERRNO.EBADF);
  assert.equal(await descriptor.fdatasync(), -ERRNO.EBADF);
  assert.equal(descriptor.close(), -ERRNO.EBADF);
});

Deno.test("FileDescriptor.pwrite() to /dev/full returns -ENOSPC; pwriteDsync() there -EOPNOTSUPP", async () => {
  const descriptor = new FileDescriptor(openPath("/dev/full", OPEN_FLAGS.O_RDWR));
  try {
    assert.equal(await descriptor.pwrite(new Uint8Array(512), 0), -ERRNO.ENOSPC);
    // Character devices refuse per-write flags: FileDevice then falls back to pwrite + fdatasync.
    assert.equal(await descriptor.pwriteDsync(new Uint8Array(512), 0), -ERRNO.EOPNOTSUPP);
  } finally {
    descriptor.close();
  }
});

Deno.test("FileDescriptor.pread() on a FIFO returns -ESPIPE, which maps to EOTHER", async () => {
  const directory = await Deno.makeTempDir();
  try {
    const fifo = `${directory}/fifo`;
    const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.ok(made.success, "mkfifo");
    // O_RDWR opens a FIFO without waiting for a peer on Linux.
    const descriptor = new FileDescriptor(openPath(fifo, OPEN_FLAGS.O_RDWR));
    try {
      assert.equal(await descriptor.pread(new Uint8Array(16), 0), -ERRNO.ESPIPE);
      assert.equal(ioErrorCodeOf(ERRNO.ESPIPE), "EOTHER");
    } finally {
      descriptor.close();
    }
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("openPath() of a missing file returns -ENOENT", () => {
  assert.equal(openPath("/nonexistent/dm-remap", OPEN_FLAGS.O_RDONLY), -ERRNO.ENOENT);
});

Deno.test("ioErrorCodeOf() names the errno values the data path distinguishes", () => {
  const table: [number, string][] = [
    [5, "EIO"],
    [28, "ENOSPC"],
    [22, "EINVAL"],
    [30, "EROFS"],
    [95, "ENOTSUP"],
    [9, "EBADF"],
    [13, "EACCES"],
    [16, "EBUSY"],
    [2, "ENOENT"],
    [110, "EOTHER"],
  ];
  for (const [errno, code] of table) assert.equal(ioErrorCodeOf(errno), code, `errno ${errno}`);
});

Deno.test("node:fs descriptors in Deno are OS descriptors that FFI pread can use", async () => {
  const directory = await Deno.makeTempDir();
  const path = `${directory}/data`;
  try {
    await Deno.writeTextFile(path, "dm-remap node:fs descriptor");
    const fd = fs.openSync(path, "r");
    try {
      const bytes = new Uint8Array(6);
      assert.equal(await new FileDescriptor(fd).pread(bytes, 9), 6);
      assert.equal(new TextDecoder().decode(bytes), "node:f");
      assert.equal(Deno.readLinkSync(`/proc/self/fd/${fd}`), path);
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

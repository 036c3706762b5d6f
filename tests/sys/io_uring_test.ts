/**
 * The io_uring rings against the host's kernel: a NOP completes with its
 * user data, a READ of a file returns the file's bytes at an offset, more
 * SQEs than the ring holds are refused until submitted, and SQE128 rings
 * take 128-byte entries. Skips nothing: the host must allow io_uring
 * (`kernel.io_uring_disabled` 0), which the test states when it fails.
 */

import assert, { deepStrictEqual as assertEquals } from "node:assert/strict";
import { addressOf, OPEN_FLAGS, openPath } from "../../mod/sys/libc.ts";
import { closeDescriptor } from "../../mod/sys/syscalls.ts";
import { type Completion, IORING_OP, IoUring, prepareSqe } from "../../mod/sys/io_uring.ts";

function ring(entries: number, sqe128 = false): IoUring {
  const created = IoUring.create({ entries, sqe128 });
  if (typeof created === "number") {
    const disabled = Deno.readTextFileSync("/proc/sys/kernel/io_uring_disabled").trim();
    throw new Error(
      `io_uring_setup failed: errno ${-created} (kernel.io_uring_disabled ${disabled})`,
    );
  }
  return created;
}

function reapAll(uring: IoUring): Completion[] {
  const completions: Completion[] = [];
  uring.reap((completion) => completions.push(completion));
  return completions;
}

Deno.test("io_uring: NOPs complete with their user data", () => {
  const uring = ring(4);
  try {
    for (const userData of [7n, 0xfedcba9876543210n]) {
      prepareSqe(uring.nextSqe()!, { opcode: IORING_OP.NOP, fd: -1, userData });
    }
    assertEquals(uring.submit(2), 2);
    assertEquals(reapAll(uring).map(({ userData, result }) => ({ userData, result })), [
      { userData: 7n, result: 0 },
      { userData: 0xfedcba9876543210n, result: 0 },
    ]);
    assertEquals(uring.cqReady, 0);
  } finally {
    uring.close();
  }
});

Deno.test("io_uring: a READ returns the file's bytes at its offset, repeatedly past the ring's size", async () => {
  const path = await Deno.makeTempFile();
  const content = crypto.getRandomValues(new Uint8Array(64 * 1024));
  await Deno.writeFile(path, content);
  // A descriptor of our own, through libc: Deno.FsFile does not expose its fd.
  const libcFd = openPath(path, OPEN_FLAGS.O_RDONLY);
  assert(libcFd >= 0);
  const uring = ring(2);
  try {
    for (let round = 0; round < 5; round++) {
      const buffers = [new Uint8Array(4096), new Uint8Array(4096)];
      buffers.forEach((buffer, index) => {
        const sqe = uring.nextSqe();
        assert(sqe !== undefined);
        prepareSqe(sqe, {
          opcode: IORING_OP.READ,
          fd: libcFd,
          userData: BigInt(index),
          addr: addressOf(buffer),
          len: buffer.length,
          off: BigInt((round * 2 + index) * 4096),
        });
      });
      assertEquals(uring.nextSqe(), undefined, "a full ring hands out no SQE");
      assertEquals(uring.submit(2), 2);
      const completions = reapAll(uring);
      assertEquals(completions.map((c) => c.result), [4096, 4096]);
      for (const { userData } of completions) {
        const offset = (round * 2 + Number(userData)) * 4096;
        assertEquals(buffers[Number(userData)], content.subarray(offset, offset + 4096));
      }
    }
  } finally {
    uring.close();
    closeDescriptor(libcFd);
    await Deno.remove(path);
  }
});

Deno.test("io_uring: an SQE128 ring takes 128-byte entries", () => {
  const uring = ring(2, true);
  try {
    assertEquals(uring.sqeBytes, 128);
    const sqe = uring.nextSqe()!;
    assertEquals(sqe.byteLength, 128);
    prepareSqe(sqe, { opcode: IORING_OP.NOP, fd: -1, userData: 42n });
    assertEquals(uring.submit(1), 1);
    assertEquals(reapAll(uring).map((c) => c.userData), [42n]);
  } finally {
    uring.close();
  }
});

Deno.test("io_uring: waitAsync waits off the event loop for a completion", async () => {
  const uring = ring(2);
  try {
    prepareSqe(uring.nextSqe()!, { opcode: IORING_OP.NOP, fd: -1, userData: 9n });
    assertEquals(uring.submit(0), 1);
    assertEquals(await uring.waitAsync(1), 0);
    assertEquals(reapAll(uring).map((c) => c.userData), [9n]);
  } finally {
    uring.close();
  }
});

/**
 * The neutral executor that answers forwarded requests (and, under
 * `RequestExecutor`, every event-loop NBD request): each operation does
 * what the NBD command it stands for did, device I/O errors come back as a
 * result with the device's error code, and nothing else is swallowed.
 * Method: table rows of request → expected result and device contents, over
 * a memory device, with a fault layer for the error rows.
 */

import assert, { deepStrictEqual as assertEquals } from "node:assert/strict";
import { DataExecutor } from "../../mod/datapath/data_executor.ts";
import { type DataRequest, NO_FLAGS } from "../../mod/datapath/data_request.ts";
import { MemoryDevice } from "../../mod/device/memory_device.ts";
import { FaultyDevice } from "../../mod/fault/faulty_device.ts";

const KIB = 1024;

function request(fields: Partial<DataRequest> & Pick<DataRequest, "op">): DataRequest {
  return { offsetBytes: 0, lengthBytes: 0, flags: NO_FLAGS, data: undefined, ...fields };
}

Deno.test("DataExecutor.execute() writes, reads back, zeroes and trims as the NBD commands did", async () => {
  const device = new MemoryDevice("mem", 64 * KIB);
  const executor = new DataExecutor(device);
  const data = new Uint8Array(8 * KIB).fill(7);
  assertEquals(
    await executor.execute(
      request({ op: "write", offsetBytes: 4 * KIB, lengthBytes: 8 * KIB, data }),
    ),
    { error: undefined, data: undefined },
  );
  const read = await executor.execute(
    request({ op: "read", offsetBytes: 4 * KIB, lengthBytes: 8 * KIB }),
  );
  assertEquals(read, { error: undefined, data });
  // A read with a buffer of its own reads into it.
  const into = new Uint8Array(4 * KIB);
  const readInto = await executor.execute(
    request({ op: "read", offsetBytes: 8 * KIB, lengthBytes: 4 * KIB, data: into }),
  );
  assert(readInto.data === into);
  assertEquals(into, new Uint8Array(4 * KIB).fill(7));
  const zeroes = await executor.execute(
    request({
      op: "write-zeroes",
      offsetBytes: 4 * KIB,
      lengthBytes: 4 * KIB,
      flags: { ...NO_FLAGS, fua: true },
    }),
  );
  assertEquals(zeroes.error, undefined);
  assertEquals(
    device.peek({ offsetBytes: 4 * KIB, lengthBytes: 4 * KIB }),
    new Uint8Array(4 * KIB),
  );
  // FAST_ZERO: refused at once, contents untouched.
  const fast = await executor.execute(
    request({
      op: "write-zeroes",
      offsetBytes: 8 * KIB,
      lengthBytes: 4 * KIB,
      flags: { ...NO_FLAGS, fastZero: true },
    }),
  );
  assertEquals(fast.error?.code, "ENOTSUP");
  assertEquals(
    device.peek({ offsetBytes: 8 * KIB, lengthBytes: 4 * KIB }),
    new Uint8Array(4 * KIB).fill(7),
  );
  for (const op of ["trim", "cache", "flush"] as const) {
    const result = await executor.execute(
      request({ op, lengthBytes: op === "flush" ? 0 : 4 * KIB }),
    );
    assertEquals(result, { error: undefined, data: undefined }, op);
  }
  // A zero-length read succeeds without data.
  assertEquals(await executor.execute(request({ op: "read" })), {
    error: undefined,
    data: undefined,
  });
});

Deno.test("DataExecutor.execute() returns a device I/O error as a result with its code", async () => {
  const faulty = new FaultyDevice(new MemoryDevice("mem", 64 * KIB), { blockBytes: 512 });
  faulty.addBadBlocks([16], "both");
  const executor = new DataExecutor(faulty);
  const read = await executor.execute(
    request({ op: "read", offsetBytes: 8 * KIB, lengthBytes: 4 * KIB }),
  );
  assertEquals(read.error?.code, "EIO");
  assertEquals(read.data, undefined);
  const write = await executor.execute(
    request({ op: "write", offsetBytes: 8 * KIB, lengthBytes: 512, data: new Uint8Array(512) }),
  );
  assertEquals(write.error?.code, "EIO");
});

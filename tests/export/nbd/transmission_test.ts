/**
 * The transmission phase: commands, request validation, pipelining, replies,
 * error mapping and how the loop ends.
 *
 * Method: run `serveTransmission` over an in-memory duplex pipe with a
 * negotiated session built by hand, against a `ScriptedDevice` that records
 * every call and can delay or fail chosen ones. Requests and replies are
 * encoded and decoded by the harness, independently of the server's encoders.
 */

import assert from "node:assert/strict";
import { AssertionError } from "../../../mod/assert.ts";
import { NBD_INFLIGHT_MAX, NBD_REQUEST_BYTES_MAX } from "../../../mod/constants.ts";
import type { Device } from "../../../mod/device/device.ts";
import { DeviceIoError, type IoErrorCode } from "../../../mod/errors.ts";
import { StreamEndedError } from "../../../mod/export/nbd/byte_stream.ts";
import { type NbdSession, transmissionFlagsOf } from "../../../mod/export/nbd/handshake.ts";
import {
  NBD_CMD,
  NBD_CMD_FLAG,
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_ENOTSUP,
  NBD_EPERM,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NbdProtocolError,
} from "../../../mod/export/nbd/protocol.ts";
import { serveTransmission, type TransmissionEnd } from "../../../mod/export/nbd/transmission.ts";
import {
  type Chunk,
  type Duplex,
  duplex,
  encodeRequest,
  errorOfChunk,
  gate,
  type PipeClient,
  readChunk,
  readSimpleReply,
  readU32,
  readU64,
  ScriptedDevice,
  settle,
  type TestRequest,
} from "./_harness.ts";

const SIZE_BYTES = 1024 * 1024;

interface Started {
  client: PipeClient;
  pipe: Duplex;
  device: ScriptedDevice;
  /** Settles to how the loop ended, or to what it threw. */
  end: Promise<TransmissionEnd | Error>;
  replies: () => number;
}

function start(
  options: {
    structured?: boolean;
    context?: boolean;
    device?: ScriptedDevice;
    stopSignal?: AbortSignal;
  } = {},
): Started {
  const pipe = duplex();
  const device = options.device ?? new ScriptedDevice(SIZE_BYTES);
  const structuredReplies = options.structured ?? false;
  const session: NbdSession = {
    exportName: "disk0",
    structuredReplies,
    baseAllocationId: options.context ? 7 : undefined,
    transmissionFlags: transmissionFlagsOf(structuredReplies),
  };
  let replyCount = 0;
  const end = serveTransmission(pipe.server, {
    device: device as Device,
    session,
    stopSignal: options.stopSignal,
    onReply: () => replyCount++,
  }).then((value) => value, (error: Error) => error).finally(() => pipe.closeServer());
  return { client: pipe.client, pipe, device, end, replies: () => replyCount };
}

function send(client: PipeClient, request: TestRequest): void {
  client.write(encodeRequest(request));
}

/** Sends NBD_CMD_DISC and checks the loop ends with "disconnect". */
async function disconnect(started: Started): Promise<void> {
  send(started.client, { type: NBD_CMD.DISC, cookie: 0 });
  assert.equal(await started.end, "disconnect");
}

function pattern(lengthBytes: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: lengthBytes }, (_, index) => (index * 31 + seed) & 0xff);
}

Deno.test("transmission reads back what was written, with simple replies", async () => {
  const started = start();
  const data = pattern(8192, 1);
  send(started.client, { type: NBD_CMD.WRITE, cookie: 1, offset: 4096, payload: data });
  assert.deepEqual(await readSimpleReply(started.client), { error: 0, cookie: 1n });
  send(started.client, { type: NBD_CMD.READ, cookie: 2, offset: 4096, length: 8192 });
  assert.deepEqual(await readSimpleReply(started.client), { error: 0, cookie: 2n });
  assert.deepEqual(await started.client.readExact(8192), data);
  await disconnect(started);
  assert.equal(started.replies(), 2);
});

/** Rows: a request the edge must refuse → the NBD error, for simple and structured replies. */
const INVALID_REQUESTS: {
  name: string;
  request: TestRequest;
  error: number;
  structured?: boolean;
}[] = [
  { name: "unknown command 9", request: { type: 9, cookie: 1, length: 512 }, error: NBD_EINVAL },
  { name: "NBD_CMD_RESIZE (8), not offered", request: { type: 8, cookie: 1 }, error: NBD_EINVAL },
  {
    name: "read with offset not 512-aligned",
    request: { type: NBD_CMD.READ, cookie: 1, offset: 100, length: 512 },
    error: NBD_EINVAL,
  },
  {
    name: "read with length not 512-aligned",
    request: { type: NBD_CMD.READ, cookie: 1, length: 1000 },
    error: NBD_EINVAL,
  },
  {
    name: "write with length not 512-aligned",
    request: { type: NBD_CMD.WRITE, cookie: 1, payload: new Uint8Array(100) },
    error: NBD_EINVAL,
  },
  {
    name: "read past the end",
    request: { type: NBD_CMD.READ, cookie: 1, offset: SIZE_BYTES - 512, length: 1024 },
    error: NBD_EINVAL,
  },
  {
    name: "read at a 64-bit offset",
    request: { type: NBD_CMD.READ, cookie: 1, offset: 0xfffffffffffffe00n, length: 512 },
    error: NBD_EINVAL,
  },
  {
    name: "write past the end",
    request: { type: NBD_CMD.WRITE, cookie: 1, offset: SIZE_BYTES, payload: new Uint8Array(512) },
    error: NBD_ENOSPC,
  },
  {
    name: "write zeroes past the end",
    request: { type: NBD_CMD.WRITE_ZEROES, cookie: 1, offset: SIZE_BYTES - 512, length: 1024 },
    error: NBD_ENOSPC,
  },
  {
    name: "trim past the end",
    request: { type: NBD_CMD.TRIM, cookie: 1, offset: SIZE_BYTES, length: 512 },
    error: NBD_EINVAL,
  },
  {
    name: "cache past the end",
    request: { type: NBD_CMD.CACHE, cookie: 1, offset: SIZE_BYTES, length: 512 },
    error: NBD_EINVAL,
  },
  {
    name: "read longer than NBD_REQUEST_BYTES_MAX",
    request: { type: NBD_CMD.READ, cookie: 1, length: NBD_REQUEST_BYTES_MAX + 512 },
    error: NBD_EINVAL,
  },
  {
    name: "flush with a range",
    request: { type: NBD_CMD.FLUSH, cookie: 1, offset: 0, length: 512 },
    error: NBD_EINVAL,
  },
  {
    name: "read with NO_HOLE",
    request: { type: NBD_CMD.READ, cookie: 1, flags: NBD_CMD_FLAG.NO_HOLE, length: 512 },
    error: NBD_EINVAL,
  },
  {
    name: "read with DF without structured replies",
    request: { type: NBD_CMD.READ, cookie: 1, flags: NBD_CMD_FLAG.DF, length: 512 },
    error: NBD_EINVAL,
  },
  {
    name: "write with FAST_ZERO",
    request: {
      type: NBD_CMD.WRITE,
      cookie: 1,
      flags: NBD_CMD_FLAG.FAST_ZERO,
      payload: new Uint8Array(512),
    },
    error: NBD_EINVAL,
  },
  {
    name: "trim with REQ_ONE",
    request: { type: NBD_CMD.TRIM, cookie: 1, flags: NBD_CMD_FLAG.REQ_ONE, length: 512 },
    error: NBD_EINVAL,
  },
  {
    name: "write zeroes with PAYLOAD_LEN",
    request: {
      type: NBD_CMD.WRITE_ZEROES,
      cookie: 1,
      flags: NBD_CMD_FLAG.PAYLOAD_LEN,
      length: 512,
    },
    error: NBD_EINVAL,
  },
  {
    name: "cache with an undefined flag bit",
    request: { type: NBD_CMD.CACHE, cookie: 1, flags: 0x8000, length: 512 },
    error: NBD_EINVAL,
  },
  {
    name: "block status without a metadata context",
    request: { type: NBD_CMD.BLOCK_STATUS, cookie: 1, length: 512 },
    error: NBD_EINVAL,
    structured: true,
  },
  {
    name: "structured read past the end",
    request: { type: NBD_CMD.READ, cookie: 1, offset: SIZE_BYTES, length: 512 },
    error: NBD_EINVAL,
    structured: true,
  },
  {
    name: "structured write past the end",
    request: { type: NBD_CMD.WRITE, cookie: 1, offset: SIZE_BYTES, payload: new Uint8Array(512) },
    error: NBD_ENOSPC,
    structured: true,
  },
];

for (const { name, request, error, structured } of INVALID_REQUESTS) {
  Deno.test(`transmission refuses ${name} with errno ${error} and the connection goes on`, async () => {
    const started = start({ structured });
    send(started.client, request);
    if (structured) {
      const chunk = await readChunk(started.client);
      assert.equal(chunk.type, NBD_REPLY_TYPE_ERROR);
      assert.equal(chunk.flags, NBD_REPLY_FLAG_DONE);
      assert.equal(chunk.cookie, 1n);
      assert.equal(errorOfChunk(chunk).error, error);
      assert.ok(errorOfChunk(chunk).message.length > 0, "the error explains itself");
    } else {
      assert.deepEqual(await readSimpleReply(started.client), { error, cookie: 1n });
    }
    // The stream is still in sync: a valid request after it works.
    send(started.client, { type: NBD_CMD.WRITE, cookie: 2, payload: new Uint8Array(512).fill(9) });
    if (structured) assert.equal((await readChunk(started.client)).type, NBD_REPLY_TYPE_NONE);
    else assert.deepEqual(await readSimpleReply(started.client), { error: 0, cookie: 2n });
    await disconnect(started);
    assert.deepEqual(
      started.device.calls.map((call) => call.op),
      ["write"],
      "only the valid request reached the device",
    );
  });
}

Deno.test("transmission skips the payload of a write longer than NBD_REQUEST_BYTES_MAX, answers EINVAL, stays in sync", async () => {
  const started = start();
  const lengthBytes = NBD_REQUEST_BYTES_MAX + 4096;
  send(started.client, { type: NBD_CMD.WRITE, cookie: 1, length: lengthBytes });
  started.client.write(new Uint8Array(lengthBytes).fill(0xee));
  assert.deepEqual(await readSimpleReply(started.client), { error: NBD_EINVAL, cookie: 1n });
  send(started.client, { type: NBD_CMD.READ, cookie: 2, length: 512 });
  assert.deepEqual(await readSimpleReply(started.client), { error: 0, cookie: 2n });
  assert.deepEqual(await started.client.readExact(512), new Uint8Array(512));
  await disconnect(started);
  assert.equal(started.device.callsOf("write").length, 0);
});

Deno.test("transmission completes requests out of order: a slow first read is answered after a fast second one", async () => {
  const slow = gate();
  const device = new ScriptedDevice(
    SIZE_BYTES,
    (call) => call.range.offsetBytes === 0 ? slow.promise : undefined,
  );
  device.memory.write(pattern(512, 3), 0);
  device.memory.write(pattern(512, 4), 512);
  const started = start({ device });
  send(started.client, { type: NBD_CMD.READ, cookie: 1, offset: 0, length: 512 });
  send(started.client, { type: NBD_CMD.READ, cookie: 2, offset: 512, length: 512 });
  const first = await readSimpleReply(started.client);
  assert.deepEqual(first, { error: 0, cookie: 2n }, "the second request is answered first");
  assert.deepEqual(await started.client.readExact(512), pattern(512, 4));
  slow.open();
  assert.deepEqual(await readSimpleReply(started.client), { error: 0, cookie: 1n });
  assert.deepEqual(await started.client.readExact(512), pattern(512, 3));
  await disconnect(started);
});

Deno.test("transmission sends a structured read as one OFFSET_DATA chunk marked DONE", async () => {
  const device = new ScriptedDevice(SIZE_BYTES);
  await device.memory.write(pattern(4096, 5), 8192);
  const started = start({ structured: true, device });
  send(started.client, {
    type: NBD_CMD.READ,
    cookie: 0xfeedfacecafebeefn,
    offset: 8192,
    length: 4096,
    flags: NBD_CMD_FLAG.DF,
  });
  const chunk = await readChunk(started.client);
  assert.equal(chunk.type, NBD_REPLY_TYPE_OFFSET_DATA);
  assert.equal(chunk.flags, NBD_REPLY_FLAG_DONE);
  assert.equal(chunk.cookie, 0xfeedfacecafebeefn, "the cookie is echoed as an opaque 64-bit value");
  assert.equal(readU64(chunk.payload, 0), 8192n);
  assert.deepEqual(chunk.payload.subarray(8), pattern(4096, 5));
  await disconnect(started);
});

Deno.test("transmission answers structured non-read commands with a final NONE chunk", async () => {
  const started = start({ structured: true });
  send(started.client, { type: NBD_CMD.FLUSH, cookie: 3 });
  const chunk = await readChunk(started.client);
  assert.deepEqual(chunk, {
    flags: NBD_REPLY_FLAG_DONE,
    type: NBD_REPLY_TYPE_NONE,
    cookie: 3n,
    payload: new Uint8Array(),
  });
  await disconnect(started);
});

/** Rows: the device's error code → the NBD error the client sees (the one table). */
const ERROR_MAPPING: { code: IoErrorCode; errno: number }[] = [
  { code: "EIO", errno: NBD_EIO },
  { code: "ENOSPC", errno: NBD_ENOSPC },
  { code: "EINVAL", errno: NBD_EINVAL },
  { code: "ENOTSUP", errno: NBD_ENOTSUP },
  { code: "EROFS", errno: NBD_EPERM },
  { code: "EBUSY", errno: NBD_EIO },
  { code: "EOTHER", errno: NBD_EIO },
];

for (const { code, errno } of ERROR_MAPPING) {
  Deno.test(`transmission maps a device ${code} to NBD errno ${errno} and goes on`, async () => {
    const failing = new ScriptedDevice(SIZE_BYTES, (call) => {
      if (call.op === "read" && call.range.offsetBytes === 4096) {
        throw new DeviceIoError("read", {
          device: "scripted",
          offsetBytes: 4096,
          lengthBytes: 512,
          code,
        });
      }
    });
    for (const structured of [false, true]) {
      const started = start({ structured, device: failing });
      send(started.client, { type: NBD_CMD.READ, cookie: 1, offset: 4096, length: 512 });
      if (structured) {
        const chunk = await readChunk(started.client);
        assert.equal(chunk.type, NBD_REPLY_TYPE_ERROR);
        assert.equal(errorOfChunk(chunk).error, errno);
        assert.match(errorOfChunk(chunk).message, new RegExp(code));
      } else {
        // No payload follows a failed simple read.
        assert.deepEqual(await readSimpleReply(started.client), { error: errno, cookie: 1n });
      }
      send(started.client, { type: NBD_CMD.READ, cookie: 2, offset: 0, length: 512 });
      if (structured) {
        assert.equal((await readChunk(started.client)).type, NBD_REPLY_TYPE_OFFSET_DATA);
      } else assert.deepEqual(await readSimpleReply(started.client), { error: 0, cookie: 2n });
      await disconnect(started);
    }
  });
}

Deno.test("transmission rethrows an AssertionError from the device instead of replying", async () => {
  const device = new ScriptedDevice(SIZE_BYTES, (call) => {
    if (call.op === "write") throw new AssertionError("range inside the device");
  });
  const started = start({ device });
  send(started.client, { type: NBD_CMD.WRITE, cookie: 1, payload: new Uint8Array(512) });
  const end = await started.end;
  assert.ok(end instanceof AssertionError, `expected the AssertionError, got ${String(end)}`);
  assert.equal(started.client.toClient.bufferedBytes, 0, "no reply was sent for it");
});

Deno.test("transmission rethrows a TypeError from the device: only DeviceIoError becomes a reply", async () => {
  const device = new ScriptedDevice(SIZE_BYTES, () => {
    throw new TypeError("oops");
  });
  const started = start({ device });
  send(started.client, { type: NBD_CMD.FLUSH, cookie: 1 });
  assert.ok(await started.end instanceof TypeError);
});

Deno.test("transmission NBD_CMD.DISC waits for the requests in flight and answers them first", async () => {
  const slow = gate();
  const device = new ScriptedDevice(
    SIZE_BYTES,
    (call) => call.op === "write" ? slow.promise : undefined,
  );
  const started = start({ device });
  send(started.client, { type: NBD_CMD.WRITE, cookie: 1, payload: new Uint8Array(512).fill(1) });
  send(started.client, { type: NBD_CMD.DISC, cookie: 2 });
  let ended = false;
  void started.end.then(() => ended = true);
  await settle();
  assert.equal(ended, false, "still waiting for the write");
  slow.open();
  assert.equal(await started.end, "disconnect");
  assert.deepEqual(await readSimpleReply(started.client), { error: 0, cookie: 1n });
  assert.deepEqual(
    started.device.memory.peek({ offsetBytes: 0, lengthBytes: 512 }),
    new Uint8Array(512).fill(1),
  );
});

Deno.test("transmission passes FUA to the device as { fua: true } and flushes on FLUSH", async () => {
  const started = start();
  send(started.client, {
    type: NBD_CMD.WRITE,
    cookie: 1,
    flags: NBD_CMD_FLAG.FUA,
    payload: new Uint8Array(512),
  });
  send(started.client, {
    type: NBD_CMD.WRITE,
    cookie: 2,
    offset: 512,
    payload: new Uint8Array(512),
  });
  send(started.client, { type: NBD_CMD.FLUSH, cookie: 3 });
  for (let index = 0; index < 3; index++) {
    assert.equal((await readSimpleReply(started.client)).error, 0);
  }
  await disconnect(started);
  const writes = started.device.callsOf("write");
  assert.deepEqual(writes.map((call) => call.options?.fua), [true, false]);
  assert.equal(started.device.callsOf("flush").length, 1);
});

/** Rows: write-zeroes flags → what the device is asked (or not asked). */
const ZERO_CASES: { flags: number; expected: { fua: boolean; mayPunch: boolean } | number }[] = [
  { flags: 0, expected: { fua: false, mayPunch: true } },
  { flags: NBD_CMD_FLAG.NO_HOLE, expected: { fua: false, mayPunch: false } },
  { flags: NBD_CMD_FLAG.FUA, expected: { fua: true, mayPunch: true } },
  { flags: NBD_CMD_FLAG.FUA | NBD_CMD_FLAG.NO_HOLE, expected: { fua: true, mayPunch: false } },
  { flags: NBD_CMD_FLAG.FAST_ZERO, expected: NBD_ENOTSUP },
  { flags: NBD_CMD_FLAG.FAST_ZERO | NBD_CMD_FLAG.NO_HOLE, expected: NBD_ENOTSUP },
];

for (const { flags, expected } of ZERO_CASES) {
  Deno.test(`transmission WRITE_ZEROES with flags 0x${flags.toString(16)} → ${JSON.stringify(expected)}`, async () => {
    const device = new ScriptedDevice(SIZE_BYTES);
    await device.memory.write(new Uint8Array(4096).fill(0xaa), 0);
    const started = start({ device });
    send(started.client, { type: NBD_CMD.WRITE_ZEROES, cookie: 1, flags, length: 4096 });
    const reply = await readSimpleReply(started.client);
    await disconnect(started);
    const zeroes = device.callsOf("writeZeroes");
    if (typeof expected === "number") {
      assert.equal(reply.error, expected);
      assert.equal(zeroes.length, 0, "a refused fast zero leaves the device alone");
      assert.deepEqual(
        device.memory.peek({ offsetBytes: 0, lengthBytes: 4096 }),
        new Uint8Array(4096).fill(0xaa),
      );
    } else {
      assert.equal(reply.error, 0);
      assert.deepEqual(zeroes.map((call) => call.options), [expected]);
      assert.deepEqual(
        device.memory.peek({ offsetBytes: 0, lengthBytes: 4096 }),
        new Uint8Array(4096),
      );
    }
  });
}

Deno.test("transmission TRIM discards the range, and with FUA flushes before replying", async () => {
  const started = start();
  send(started.client, { type: NBD_CMD.TRIM, cookie: 1, offset: 4096, length: 8192 });
  assert.equal((await readSimpleReply(started.client)).error, 0);
  assert.equal(started.device.callsOf("flush").length, 0);
  send(started.client, { type: NBD_CMD.TRIM, cookie: 2, flags: NBD_CMD_FLAG.FUA, length: 512 });
  assert.equal((await readSimpleReply(started.client)).error, 0);
  await disconnect(started);
  assert.deepEqual(started.device.calls.map((call) => call.op), ["discard", "discard", "flush"]);
  assert.deepEqual(started.device.callsOf("discard")[0]!.range, {
    offsetBytes: 4096,
    lengthBytes: 8192,
  });
});

Deno.test("transmission splits TRIM and WRITE_ZEROES longer than NBD_REQUEST_BYTES_MAX into bounded pieces", async () => {
  const sizeBytes = 3 * NBD_REQUEST_BYTES_MAX;
  const started = start({ device: new ScriptedDevice(sizeBytes) });
  const lengthBytes = 2 * NBD_REQUEST_BYTES_MAX + 512;
  send(started.client, { type: NBD_CMD.WRITE_ZEROES, cookie: 1, length: lengthBytes });
  send(started.client, { type: NBD_CMD.TRIM, cookie: 2, length: lengthBytes });
  for (let index = 0; index < 2; index++) {
    assert.equal((await readSimpleReply(started.client)).error, 0);
  }
  await disconnect(started);
  for (const op of ["writeZeroes", "discard"] as const) {
    const ranges = started.device.callsOf(op).map((call) => call.range);
    assert.deepEqual(ranges, [
      { offsetBytes: 0, lengthBytes: NBD_REQUEST_BYTES_MAX },
      { offsetBytes: NBD_REQUEST_BYTES_MAX, lengthBytes: NBD_REQUEST_BYTES_MAX },
      { offsetBytes: 2 * NBD_REQUEST_BYTES_MAX, lengthBytes: 512 },
    ]);
  }
});

Deno.test("transmission CACHE validates the range and succeeds without touching the device", async () => {
  const started = start();
  send(started.client, { type: NBD_CMD.CACHE, cookie: 1, offset: 0, length: SIZE_BYTES });
  assert.deepEqual(await readSimpleReply(started.client), { error: 0, cookie: 1n });
  await disconnect(started);
  assert.equal(started.device.calls.length, 0);
});

for (const reqOne of [false, true]) {
  Deno.test(`transmission BLOCK_STATUS${reqOne ? " with REQ_ONE" : ""} reports the range as one allocated extent`, async () => {
    const started = start({ structured: true, context: true });
    send(started.client, {
      type: NBD_CMD.BLOCK_STATUS,
      cookie: 4,
      flags: reqOne ? NBD_CMD_FLAG.REQ_ONE : 0,
      offset: 65536,
      length: 131072,
    });
    const chunk: Chunk = await readChunk(started.client);
    assert.equal(chunk.type, NBD_REPLY_TYPE_BLOCK_STATUS);
    assert.equal(chunk.flags, NBD_REPLY_FLAG_DONE);
    assert.equal(chunk.payload.length, 4 + 8, "one descriptor");
    assert.equal(readU32(chunk.payload, 0), 7, "the negotiated context id");
    assert.equal(readU32(chunk.payload, 4), 131072, "covers exactly the request");
    assert.equal(readU32(chunk.payload, 8), 0, "flags 0: data, not known to be zero");
    await disconnect(started);
    assert.equal(started.device.calls.length, 0);
  });
}

Deno.test("transmission answers zero-length reads and writes without calling the device", async () => {
  for (const structured of [false, true]) {
    const started = start({ structured });
    send(started.client, { type: NBD_CMD.READ, cookie: 1, offset: 512, length: 0 });
    send(started.client, { type: NBD_CMD.WRITE, cookie: 2, offset: 512, length: 0 });
    for (const cookie of [1n, 2n]) {
      if (structured) assert.equal((await readChunk(started.client)).cookie, cookie);
      else assert.deepEqual(await readSimpleReply(started.client), { error: 0, cookie });
    }
    await disconnect(started);
    assert.equal(started.device.calls.length, 0);
  }
});

Deno.test("transmission ends with NbdProtocolError on a bad request magic, after finishing the requests in flight", async () => {
  const slow = gate();
  const device = new ScriptedDevice(
    SIZE_BYTES,
    (call) => call.op === "write" ? slow.promise : undefined,
  );
  const started = start({ device });
  send(started.client, { type: NBD_CMD.WRITE, cookie: 1, payload: new Uint8Array(512).fill(5) });
  send(started.client, { type: NBD_CMD.READ, cookie: 2, length: 512, magic: 0x12560953 });
  await settle();
  slow.open();
  const end = await started.end;
  assert.ok(end instanceof NbdProtocolError, String(end));
  assert.match(end.message, /bad magic 0x12560953/);
  assert.deepEqual(
    await readSimpleReply(started.client),
    { error: 0, cookie: 1n },
    "the write in flight was answered",
  );
});

Deno.test("transmission ends with StreamEndedError when the client hangs up inside a write payload; nothing is written", async () => {
  const started = start();
  started.client.write(
    encodeRequest({ type: NBD_CMD.WRITE, cookie: 1, payload: new Uint8Array(4096) }).subarray(
      0,
      28 + 1000,
    ),
  );
  started.client.end();
  const end = await started.end;
  assert.ok(end instanceof StreamEndedError);
  assert.equal(started.device.calls.length, 0);
});

Deno.test("transmission returns eof when the client hangs up between requests", async () => {
  const started = start();
  send(started.client, { type: NBD_CMD.FLUSH, cookie: 1 });
  await readSimpleReply(started.client);
  started.client.end();
  assert.equal(await started.end, "eof");
});

Deno.test("transmission keeps at most NBD_INFLIGHT_MAX requests in flight and reads on as they finish", async () => {
  const slow = gate();
  const device = new ScriptedDevice(SIZE_BYTES, () => slow.promise);
  const started = start({ device });
  const total = NBD_INFLIGHT_MAX + 20;
  for (let cookie = 0; cookie < total; cookie++) {
    send(started.client, { type: NBD_CMD.FLUSH, cookie });
  }
  for (let turn = 0; turn < 5; turn++) await settle();
  assert.equal(device.active, NBD_INFLIGHT_MAX, "the reader stopped at the limit");
  slow.open();
  const cookies = new Set<bigint>();
  for (let index = 0; index < total; index++) {
    cookies.add((await readSimpleReply(started.client)).cookie);
  }
  assert.equal(cookies.size, total, "every request was answered once");
  assert.equal(device.activeMax, NBD_INFLIGHT_MAX);
  await disconnect(started);
});

Deno.test("transmission bounds payload bytes in flight: two maximal reads do not run beside a third", async () => {
  const slow = gate();
  const device = new ScriptedDevice(3 * NBD_REQUEST_BYTES_MAX, () => slow.promise);
  const started = start({ device });
  for (let cookie = 0; cookie < 3; cookie++) {
    send(started.client, {
      type: NBD_CMD.READ,
      cookie,
      offset: cookie * NBD_REQUEST_BYTES_MAX,
      length: NBD_REQUEST_BYTES_MAX,
    });
  }
  for (let turn = 0; turn < 5; turn++) await settle();
  assert.equal(device.active, 2, "NBD_INFLIGHT_BYTES_MAX holds two maximal requests");
  slow.open();
  for (let index = 0; index < 3; index++) {
    assert.equal((await readSimpleReply(started.client)).error, 0);
    await started.client.readExact(NBD_REQUEST_BYTES_MAX);
  }
  await disconnect(started);
});

Deno.test("transmission stop signal: requests in flight finish and are answered, then it ends with stopped", async () => {
  const slow = gate();
  const device = new ScriptedDevice(SIZE_BYTES, () => slow.promise);
  const stop = new AbortController();
  const started = start({ device, stopSignal: stop.signal });
  send(started.client, { type: NBD_CMD.FLUSH, cookie: 1 });
  await settle();
  stop.abort();
  await settle();
  slow.open();
  assert.equal(await started.end, "stopped");
  assert.deepEqual(await readSimpleReply(started.client), { error: 0, cookie: 1n });
});

Deno.test("transmission coalesces replies that are ready together into one write", async () => {
  const started = start();
  const burst = [];
  for (let cookie = 0; cookie < 50; cookie++) {
    burst.push(encodeRequest({ type: NBD_CMD.FLUSH, cookie }));
  }
  for (const request of burst) started.client.write(request);
  for (let index = 0; index < 50; index++) await readSimpleReply(started.client);
  assert.ok(
    started.pipe.serverWrites.length <= 3,
    `${started.pipe.serverWrites.length} writes for 50 replies`,
  );
  await disconnect(started);
});

Deno.test("transmission ends with the write error when the client stops reading replies", async () => {
  const started = start();
  started.pipe.closeServer();
  send(started.client, { type: NBD_CMD.FLUSH, cookie: 1 });
  const end = await started.end;
  assert.ok(end instanceof Deno.errors.BrokenPipe, String(end));
});

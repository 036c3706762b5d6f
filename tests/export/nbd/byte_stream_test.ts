/**
 * `ConnByteStream`: exact reads over a connection that returns data in
 * arbitrary pieces, end-of-stream reporting, and complete writes.
 *
 * Method: a fake connection serves a script of read sizes and accepts at most
 * a few bytes per write; one test uses a real Unix socket pair.
 */

import assert from "node:assert/strict";
import {
  CONN_READ_BUFFER_BYTES,
  ConnByteStream,
  type ConnLike,
  StreamEndedError,
} from "../../../mod/export/nbd/byte_stream.ts";

/** Serves `data` in reads of at most `pieceBytes`, then end of stream. */
function fakeConn(
  data: Uint8Array,
  pieceBytes: number,
): ConnLike & { reads: number; written: Uint8Array[] } {
  let at = 0;
  const conn = {
    reads: 0,
    written: [] as Uint8Array[],
    read(buffer: Uint8Array): Promise<number | null> {
      conn.reads++;
      if (at >= data.length) return Promise.resolve(null);
      const count = Math.min(buffer.length, pieceBytes, data.length - at);
      buffer.set(data.subarray(at, at + count));
      at += count;
      return Promise.resolve(count);
    },
    write(chunk: Uint8Array): Promise<number> {
      const count = Math.min(chunk.length, 3);
      conn.written.push(chunk.slice(0, count));
      return Promise.resolve(count);
    },
  };
  return conn;
}

function sequence(lengthBytes: number): Uint8Array {
  return Uint8Array.from({ length: lengthBytes }, (_, index) => index & 0xff);
}

Deno.test("ConnByteStream.readExact assembles exact reads from 1-byte pieces", async () => {
  const data = sequence(100);
  const stream = new ConnByteStream(fakeConn(data, 1));
  assert.deepEqual(await stream.readExact(28), data.subarray(0, 28));
  assert.deepEqual(await stream.readExact(0), new Uint8Array());
  assert.deepEqual(await stream.readExact(72), data.subarray(28));
});

Deno.test("ConnByteStream.readExact serves many small reads from one socket read", async () => {
  const data = sequence(28 * 100);
  const conn = fakeConn(data, data.length);
  const stream = new ConnByteStream(conn);
  for (let index = 0; index < 100; index++) {
    assert.deepEqual(await stream.readExact(28), data.subarray(index * 28, index * 28 + 28));
  }
  assert.equal(conn.reads, 1);
});

Deno.test("ConnByteStream.readExact reads a payload larger than its buffer correctly", async () => {
  const data = sequence(3 * CONN_READ_BUFFER_BYTES + 17);
  const stream = new ConnByteStream(fakeConn(data, 100_000));
  assert.deepEqual(await stream.readExact(5), data.subarray(0, 5));
  assert.deepEqual(await stream.readExact(data.length - 5), data.subarray(5));
});

Deno.test("ConnByteStream.readExact reports how much of a read arrived before the end", async () => {
  const stream = new ConnByteStream(fakeConn(sequence(30), 7));
  await stream.readExact(28);
  const error = await stream.readExact(28).catch((error) => error);
  assert.ok(error instanceof StreamEndedError);
  assert.equal(error.receivedBytes, 2);
  const atBoundary = await new ConnByteStream(fakeConn(new Uint8Array(), 7)).readExact(28).catch((
    error,
  ) => error);
  assert.ok(atBoundary instanceof StreamEndedError);
  assert.equal(atBoundary.receivedBytes, 0, "zero means the stream ended between messages");
});

Deno.test("ConnByteStream.write loops until partial writes have sent everything", async () => {
  const conn = fakeConn(new Uint8Array(), 1);
  const data = sequence(10);
  await new ConnByteStream(conn).write(data);
  const sent = new Uint8Array(conn.written.reduce((sum, piece) => sum + piece.length, 0));
  let at = 0;
  for (const piece of conn.written) {
    sent.set(piece, at);
    at += piece.length;
  }
  assert.deepEqual(sent, data);
  assert.equal(conn.written.length, 4);
});

Deno.test("ConnByteStream carries bytes both ways over a real Unix socket", async () => {
  const path = await Deno.makeTempFile({ suffix: ".sock" });
  await Deno.remove(path);
  const listener = Deno.listen({ transport: "unix", path });
  try {
    const [client, server] = await Promise.all([
      Deno.connect({ transport: "unix", path }),
      listener.accept(),
    ]);
    try {
      const payload = sequence(1024 * 1024);
      const serverStream = new ConnByteStream(server);
      const [received] = await Promise.all([
        serverStream.readExact(payload.length),
        new ConnByteStream(client).write(payload),
      ]);
      assert.deepEqual(received, payload);
      client.close();
      const error = await serverStream.readExact(1).catch((error) => error);
      assert.ok(error instanceof StreamEndedError);
    } finally {
      server.close();
    }
  } finally {
    listener.close();
    await Deno.remove(path).catch(() => {});
  }
});

/**
 * Wire encoders, decoders and the error table of `mod/export/nbd/protocol.ts`.
 *
 * Method: encode with the server's helpers and decode with the harness's
 * independent readers (and the reverse), field by field.
 */

import assert from "node:assert/strict";
import { AssertionError } from "../../../mod/assert.ts";
import { NBD_STRING_BYTES_MAX } from "../../../mod/constants.ts";
import { DeviceIoError, type IoErrorCode } from "../../../mod/errors.ts";
import {
  decodeRequestHeader,
  encodeBlockStatusChunk,
  encodeErrorChunk,
  encodeExportInfo,
  encodeOptionReply,
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_ENOTSUP,
  NBD_EPERM,
  NBD_REP_ERR_UNSUP,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_ERROR,
  nbdErrnoOf,
  NbdProtocolError,
  readReplyPrefixBytes,
  writeReadReplyPrefix,
} from "../../../mod/export/nbd/protocol.ts";
import { encodeRequest, readU16, readU32, readU64 } from "./_harness.ts";

Deno.test("decodeRequestHeader reads every field of a request header", () => {
  const bytes = encodeRequest({
    type: 6,
    flags: 0x13,
    cookie: 0x0102030405060708n,
    offset: 0xfffffffffffffe00n,
    length: 0xffffffff,
  });
  assert.deepEqual(decodeRequestHeader(bytes), {
    flags: 0x13,
    type: 6,
    cookie: 0x0102030405060708n,
    offset: 0xfffffffffffffe00n,
    lengthBytes: 0xffffffff,
  });
});

Deno.test("decodeRequestHeader throws NbdProtocolError on a bad magic", () => {
  const bytes = encodeRequest({ type: 0, cookie: 1, magic: 0x67446698 });
  assert.throws(() => decodeRequestHeader(bytes), NbdProtocolError);
});

Deno.test("encodeOptionReply lays out magic, option, type, length and data", () => {
  const reply = encodeOptionReply(11, NBD_REP_ERR_UNSUP, new Uint8Array([1, 2, 3]));
  assert.equal(readU64(reply, 0), 0x3e889045565a9n);
  assert.equal(readU32(reply, 8), 11);
  assert.equal(readU32(reply, 12), 0x80000001);
  assert.equal(readU32(reply, 16), 3);
  assert.deepEqual(reply.subarray(20), new Uint8Array([1, 2, 3]));
});

Deno.test("encodeExportInfo is NBD_INFO_EXPORT: type, 64-bit size, flags", () => {
  const info = encodeExportInfo(2 ** 40, 0x0d6d);
  assert.equal(info.length, 12);
  assert.equal(readU16(info, 0), 0);
  assert.equal(readU64(info, 2), 2n ** 40n);
  assert.equal(readU16(info, 10), 0x0d6d);
});

Deno.test("encodeErrorChunk truncates the message to the string limit and marks DONE", () => {
  const chunk = encodeErrorChunk(9n, NBD_EIO, "x".repeat(NBD_STRING_BYTES_MAX + 100));
  assert.equal(readU32(chunk, 0), 0x668e33ef);
  assert.equal(readU16(chunk, 4), NBD_REPLY_FLAG_DONE);
  assert.equal(readU16(chunk, 6), NBD_REPLY_TYPE_ERROR);
  assert.equal(readU64(chunk, 8), 9n);
  assert.equal(readU32(chunk, 16), 6 + NBD_STRING_BYTES_MAX);
  assert.equal(readU32(chunk, 20), NBD_EIO);
  assert.equal(readU16(chunk, 24), NBD_STRING_BYTES_MAX);
});

Deno.test("encodeBlockStatusChunk writes the context id and each descriptor", () => {
  const chunk = encodeBlockStatusChunk(5n, 3, [{ lengthBytes: 4096, flags: 0 }, {
    lengthBytes: 512,
    flags: 3,
  }]);
  assert.equal(readU32(chunk, 16), 4 + 16);
  assert.deepEqual([
    readU32(chunk, 20),
    readU32(chunk, 24),
    readU32(chunk, 28),
    readU32(chunk, 32),
    readU32(chunk, 36),
  ], [
    3,
    4096,
    0,
    512,
    3,
  ]);
});

Deno.test("writeReadReplyPrefix frames data already in place, simple and structured", () => {
  for (const structuredReplies of [false, true]) {
    const prefixBytes = readReplyPrefixBytes(structuredReplies);
    const reply = new Uint8Array(prefixBytes + 512).fill(7, prefixBytes);
    writeReadReplyPrefix(reply, { cookie: 42n, offsetBytes: 1536, structuredReplies });
    if (structuredReplies) {
      assert.equal(readU32(reply, 0), 0x668e33ef);
      assert.equal(readU16(reply, 6), 1, "OFFSET_DATA");
      assert.equal(readU32(reply, 16), 8 + 512);
      assert.equal(readU64(reply, 20), 1536n);
    } else {
      assert.equal(readU32(reply, 0), 0x67446698);
      assert.equal(readU32(reply, 4), 0);
    }
    assert.equal(readU64(reply, 8), 42n);
    assert.deepEqual(reply.subarray(prefixBytes), new Uint8Array(512).fill(7), "data untouched");
  }
});

/** Rows: DeviceIoError code → NBD error value. */
const ERRNO_TABLE: [IoErrorCode, number][] = [
  ["EIO", NBD_EIO],
  ["ENOSPC", NBD_ENOSPC],
  ["EINVAL", NBD_EINVAL],
  ["ENOTSUP", NBD_ENOTSUP],
  ["EROFS", NBD_EPERM],
  ["EBADF", NBD_EIO],
  ["ENOENT", NBD_EIO],
  ["EACCES", NBD_EIO],
  ["EBUSY", NBD_EIO],
  ["EOTHER", NBD_EIO],
];

for (const [code, errno] of ERRNO_TABLE) {
  Deno.test(`nbdErrnoOf maps DeviceIoError ${code} to ${errno}`, () => {
    const error = new DeviceIoError("read", {
      device: "d",
      offsetBytes: 0,
      lengthBytes: 512,
      code,
    });
    assert.equal(nbdErrnoOf(error), errno);
  });
}

Deno.test("nbdErrnoOf rethrows anything that is not a DeviceIoError", () => {
  const bug = new AssertionError("broken invariant");
  assert.throws(() => nbdErrnoOf(bug), (thrown) => thrown === bug);
  assert.throws(() => nbdErrnoOf(new Error("plain")), /plain/);
});

/**
 * The fixed newstyle handshake, option by option, as the NBD spec describes it.
 *
 * Method: run `runHandshake` over an in-memory duplex pipe and play the client
 * with the harness's own wire encoders; check every reply field and whether
 * the connection continues or ends.
 */

import assert from "node:assert/strict";
import {
  NBD_OPTION_BYTES_MAX,
  NBD_OPTIONS_MAX,
  NBD_REQUEST_BYTES_MAX,
} from "../../../mod/constants.ts";
import { StreamEndedError } from "../../../mod/export/nbd/byte_stream.ts";
import {
  BASE_ALLOCATION_CONTEXT_ID,
  type HandshakeResult,
  type NbdExport,
  runHandshake,
} from "../../../mod/export/nbd/handshake.ts";
import {
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_EXTENDED_HEADERS,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_PEEK_EXPORT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  NbdProtocolError,
} from "../../../mod/export/nbd/protocol.ts";
import {
  concat,
  decoder,
  duplex,
  encodeOption,
  encoder,
  greet,
  infoData,
  lengthPrefixed,
  metaContextData,
  type OptionReply,
  type PipeClient,
  readOptionReplies,
  readU16,
  readU32,
  readU64,
  u16,
  u32,
  u64,
} from "./_harness.ts";

const EXPORT: NbdExport = {
  name: "disk0",
  description: "a test disk",
  sizeBytes: 64 * 1024 * 1024,
  preferredBlockBytes: 4096,
};

const FLAGS_ALWAYS = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
  NBD_FLAG_SEND_TRIM |
  NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE |
  NBD_FLAG_SEND_FAST_ZERO;

/** Starts a handshake; the result settles to the outcome or the error thrown. */
function startHandshake(
  exported = EXPORT,
): { client: PipeClient; outcome: Promise<HandshakeResult | Error> } {
  const pipe = duplex();
  const outcome = runHandshake(pipe.server, { export: exported }).then(
    (result) => result,
    (error: Error) => error,
  ).finally(() => pipe.closeServer());
  return { client: pipe.client, outcome };
}

async function expectTransmission(outcome: Promise<HandshakeResult | Error>) {
  const result = await outcome;
  assert.ok(!(result instanceof Error), `handshake failed: ${result}`);
  assert.equal(result.kind, "transmission");
  if (result.kind !== "transmission") throw new Error("unreachable");
  return result.session;
}

async function expectProtocolError(outcome: Promise<HandshakeResult | Error>, pattern: RegExp) {
  const result = await outcome;
  assert.ok(result instanceof NbdProtocolError, `expected NbdProtocolError, got ${String(result)}`);
  assert.match(result.message, pattern);
}

/** Sends an option and reads its replies up to the final one. */
async function ask(client: PipeClient, code: number, data?: Uint8Array): Promise<OptionReply[]> {
  client.write(encodeOption(code, data));
  const replies = await readOptionReplies(client);
  for (const reply of replies) {
    assert.equal(reply.option, code, "each reply names the option it answers");
  }
  return replies;
}

/** The NBD_REP_INFO payloads of a reply list, by information type. */
function infos(replies: OptionReply[]): Map<number, Uint8Array> {
  const byType = new Map<number, Uint8Array>();
  for (const reply of replies.filter((each) => each.type === NBD_REP_INFO)) {
    const type = readU16(reply.data, 0);
    assert.ok(!byType.has(type), `information type ${type} appears once`);
    byType.set(type, reply.data);
  }
  return byType;
}

function types(replies: OptionReply[]): number[] {
  return replies.map((reply) => reply.type);
}

Deno.test("handshake greets with NBDMAGIC, IHAVEOPT and FIXED_NEWSTYLE | NO_ZEROES", async () => {
  const { client, outcome } = startHandshake();
  const handshakeFlags = await greet(client);
  assert.equal(handshakeFlags, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  client.end();
  assert.ok(await outcome instanceof StreamEndedError, "a client hanging up ends the handshake");
});

Deno.test("handshake ends the connection when the client sets an unknown client flag", async () => {
  const { client, outcome } = startHandshake();
  await greet(client, 0b111);
  await expectProtocolError(outcome, /unknown client flags/);
});

Deno.test("handshake answers NBD_OPT_EXPORT_NAME with size, flags and 124 zero bytes", async () => {
  const { client, outcome } = startHandshake();
  await greet(client, 0b01); // FIXED_NEWSTYLE only: the client wants the zeroes.
  client.write(encodeOption(NBD_OPT_EXPORT_NAME, encoder.encode("disk0")));
  const answer = await client.readExact(8 + 2 + 124);
  assert.equal(readU64(answer, 0), BigInt(EXPORT.sizeBytes));
  assert.equal(readU16(answer, 8), FLAGS_ALWAYS);
  assert.deepEqual(answer.subarray(10), new Uint8Array(124));
  const session = await expectTransmission(outcome);
  assert.equal(session.structuredReplies, false);
  assert.equal(session.transmissionFlags, FLAGS_ALWAYS);
});

Deno.test("handshake omits the 124 zero bytes after NBD_OPT_EXPORT_NAME when NO_ZEROES was agreed", async () => {
  const { client, outcome } = startHandshake();
  await greet(client, 0b11);
  client.write(encodeOption(NBD_OPT_EXPORT_NAME, new Uint8Array())); // The default export.
  const answer = await client.readExact(10);
  assert.equal(readU64(answer, 0), BigInt(EXPORT.sizeBytes));
  await expectTransmission(outcome);
  assert.equal(client.toClient.bufferedBytes, 0, "nothing follows size and flags");
});

Deno.test("handshake ends the connection on NBD_OPT_EXPORT_NAME for an unknown export", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  client.write(encodeOption(NBD_OPT_EXPORT_NAME, encoder.encode("nope")));
  await expectProtocolError(outcome, /"nope": no such export/);
});

Deno.test("handshake answers NBD_OPT_GO with EXPORT, NAME, DESCRIPTION and BLOCK_SIZE, then ACK", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  const replies = await ask(
    client,
    NBD_OPT_GO,
    infoData("disk0", [NBD_INFO_NAME, NBD_INFO_DESCRIPTION, NBD_INFO_BLOCK_SIZE]),
  );
  assert.equal(replies.at(-1)!.type, NBD_REP_ACK);
  const byType = infos(replies);
  const exportInfo = byType.get(NBD_INFO_EXPORT)!;
  assert.equal(exportInfo.length, 12);
  assert.equal(readU64(exportInfo, 2), BigInt(EXPORT.sizeBytes));
  assert.equal(readU16(exportInfo, 10), FLAGS_ALWAYS);
  assert.equal(decoder.decode(byType.get(NBD_INFO_NAME)!.subarray(2)), "disk0");
  assert.equal(decoder.decode(byType.get(NBD_INFO_DESCRIPTION)!.subarray(2)), "a test disk");
  const blockSize = byType.get(NBD_INFO_BLOCK_SIZE)!;
  assert.equal(blockSize.length, 14);
  assert.deepEqual([readU32(blockSize, 2), readU32(blockSize, 6), readU32(blockSize, 10)], [
    512,
    4096,
    NBD_REQUEST_BYTES_MAX,
  ]);
  await expectTransmission(outcome);
  assert.equal(client.toClient.bufferedBytes, 0, "no zero padding after the GO acknowledgement");
});

Deno.test("handshake treats the empty name in NBD_OPT_GO as the default export", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  const replies = await ask(client, NBD_OPT_GO, infoData("", [NBD_INFO_NAME]));
  assert.equal(replies.at(-1)!.type, NBD_REP_ACK);
  assert.equal(
    decoder.decode(infos(replies).get(NBD_INFO_NAME)!.subarray(2)),
    "disk0",
    "the canonical name",
  );
  assert.equal((await expectTransmission(outcome)).exportName, "disk0");
});

Deno.test("handshake answers NBD_OPT_INFO without entering transmission, then accepts NBD_OPT_GO", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  const info = await ask(client, NBD_OPT_INFO, infoData("disk0", [NBD_INFO_BLOCK_SIZE]));
  assert.equal(info.at(-1)!.type, NBD_REP_ACK);
  const go = await ask(client, NBD_OPT_GO, infoData("disk0", [NBD_INFO_BLOCK_SIZE]));
  assert.deepEqual(infos(go), infos(info), "the same information when nothing changed in between");
  await expectTransmission(outcome);
});

Deno.test("handshake answers NBD_REP_ERR_UNKNOWN to NBD_OPT_GO for an unknown export and goes on", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  const replies = await ask(client, NBD_OPT_GO, infoData("other"));
  assert.deepEqual(types(replies), [NBD_REP_ERR_UNKNOWN], "no NBD_REP_INFO before the error");
  assert.match(decoder.decode(replies[0]!.data), /"other" does not exist/);
  assert.equal((await ask(client, NBD_OPT_GO, infoData("disk0"))).at(-1)!.type, NBD_REP_ACK);
  await expectTransmission(outcome);
});

Deno.test("handshake answers NBD_REP_ERR_UNSUP to EXTENDED_HEADERS and still accepts GO", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  assert.deepEqual(types(await ask(client, NBD_OPT_EXTENDED_HEADERS)), [NBD_REP_ERR_UNSUP]);
  assert.equal((await ask(client, NBD_OPT_GO, infoData("disk0"))).at(-1)!.type, NBD_REP_ACK);
  await expectTransmission(outcome);
});

Deno.test("handshake answers NBD_REP_ERR_UNSUP to every unknown option, data and all, and goes on", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  const unknown = [0, NBD_OPT_PEEK_EXPORT, 12, 0x7fffffff, 0xffffffff];
  for (const code of unknown) {
    assert.deepEqual(types(await ask(client, code, encoder.encode("some data"))), [
      NBD_REP_ERR_UNSUP,
    ], `option ${code}`);
  }
  assert.equal((await ask(client, NBD_OPT_GO, infoData("disk0"))).at(-1)!.type, NBD_REP_ACK);
  await expectTransmission(outcome);
});

Deno.test("handshake acknowledges NBD_OPT_ABORT and ends without transmission", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  assert.deepEqual(types(await ask(client, NBD_OPT_ABORT)), [NBD_REP_ACK]);
  assert.deepEqual(await outcome, { kind: "aborted" });
});

Deno.test("handshake ends quietly when the client sends NBD_OPT_ABORT and hangs up at once", async () => {
  const pipe = duplex();
  const outcome = runHandshake(pipe.server, { export: EXPORT });
  await greet(pipe.client);
  pipe.closeServer(); // The client stops reading: the ACK write fails.
  pipe.client.write(encodeOption(NBD_OPT_ABORT));
  assert.deepEqual(await outcome, { kind: "aborted" });
});

Deno.test("handshake lists the export for NBD_OPT_LIST and refuses NBD_OPT_LIST with data", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  const replies = await ask(client, NBD_OPT_LIST);
  assert.deepEqual(types(replies), [NBD_REP_SERVER, NBD_REP_ACK]);
  const server = replies[0]!.data;
  const nameBytes = readU32(server, 0);
  assert.equal(decoder.decode(server.subarray(4, 4 + nameBytes)), "disk0");
  assert.equal(decoder.decode(server.subarray(4 + nameBytes)), "a test disk");
  assert.deepEqual(types(await ask(client, NBD_OPT_LIST, u32(0))), [NBD_REP_ERR_INVALID]);
  assert.equal((await ask(client, NBD_OPT_GO, infoData("disk0"))).at(-1)!.type, NBD_REP_ACK);
  await expectTransmission(outcome);
});

Deno.test("handshake refuses NBD_OPT_STARTTLS with NBD_REP_ERR_POLICY and goes on without TLS", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  assert.deepEqual(types(await ask(client, NBD_OPT_STARTTLS)), [NBD_REP_ERR_POLICY]);
  assert.deepEqual(types(await ask(client, NBD_OPT_STARTTLS, u32(1))), [NBD_REP_ERR_INVALID]);
  assert.equal((await ask(client, NBD_OPT_GO, infoData("disk0"))).at(-1)!.type, NBD_REP_ACK);
  await expectTransmission(outcome);
});

Deno.test("handshake acknowledges NBD_OPT_STRUCTURED_REPLY and then advertises NBD_FLAG_SEND_DF", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  assert.deepEqual(types(await ask(client, NBD_OPT_STRUCTURED_REPLY, u32(0))), [
    NBD_REP_ERR_INVALID,
  ], "no data");
  assert.deepEqual(types(await ask(client, NBD_OPT_STRUCTURED_REPLY)), [NBD_REP_ACK]);
  const replies = await ask(client, NBD_OPT_GO, infoData("disk0"));
  const flags = readU16(infos(replies).get(NBD_INFO_EXPORT)!, 10);
  assert.equal(flags, FLAGS_ALWAYS | NBD_FLAG_SEND_DF);
  assert.equal(flags & NBD_FLAG_READ_ONLY, 0);
  const session = await expectTransmission(outcome);
  assert.equal(session.structuredReplies, true);
  assert.equal(session.baseAllocationId, undefined, "no context unless selected");
});

Deno.test("handshake refuses meta context options before structured replies", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  const data = metaContextData("disk0", ["base:allocation"]);
  assert.deepEqual(types(await ask(client, NBD_OPT_LIST_META_CONTEXT, data)), [
    NBD_REP_ERR_INVALID,
  ]);
  assert.deepEqual(types(await ask(client, NBD_OPT_SET_META_CONTEXT, data)), [NBD_REP_ERR_INVALID]);
  assert.equal((await ask(client, NBD_OPT_GO, infoData("disk0"))).at(-1)!.type, NBD_REP_ACK);
  assert.equal((await expectTransmission(outcome)).baseAllocationId, undefined);
});

/** Rows: meta context query → whether base:allocation comes back. */
const META_CONTEXT_CASES: { option: number; queries: string[]; found: boolean }[] = [
  { option: NBD_OPT_LIST_META_CONTEXT, queries: [], found: true },
  { option: NBD_OPT_LIST_META_CONTEXT, queries: ["base:"], found: true },
  { option: NBD_OPT_LIST_META_CONTEXT, queries: ["base:allocation"], found: true },
  { option: NBD_OPT_LIST_META_CONTEXT, queries: ["qemu:dirty-bitmap:x"], found: false },
  { option: NBD_OPT_SET_META_CONTEXT, queries: [], found: false },
  { option: NBD_OPT_SET_META_CONTEXT, queries: ["base:"], found: false },
  { option: NBD_OPT_SET_META_CONTEXT, queries: ["base:other"], found: false },
  { option: NBD_OPT_SET_META_CONTEXT, queries: ["x-test:a", "base:allocation"], found: true },
];

for (const { option, queries, found } of META_CONTEXT_CASES) {
  const name = option === NBD_OPT_LIST_META_CONTEXT ? "LIST" : "SET";
  Deno.test(`handshake NBD_OPT_${name}_META_CONTEXT ${JSON.stringify(queries)} ${found ? "returns" : "omits"} base:allocation`, async () => {
    const { client, outcome } = startHandshake();
    await greet(client);
    await ask(client, NBD_OPT_STRUCTURED_REPLY);
    const replies = await ask(client, option, metaContextData("disk0", queries));
    assert.deepEqual(types(replies), found ? [NBD_REP_META_CONTEXT, NBD_REP_ACK] : [NBD_REP_ACK]);
    if (found) {
      const expectedId = option === NBD_OPT_SET_META_CONTEXT ? BASE_ALLOCATION_CONTEXT_ID : 0;
      assert.equal(readU32(replies[0]!.data, 0), expectedId);
      assert.equal(decoder.decode(replies[0]!.data.subarray(4)), "base:allocation");
    }
    await ask(client, NBD_OPT_GO, infoData("disk0"));
    const session = await expectTransmission(outcome);
    const selected = option === NBD_OPT_SET_META_CONTEXT && found;
    assert.equal(session.baseAllocationId, selected ? BASE_ALLOCATION_CONTEXT_ID : undefined);
  });
}

Deno.test("handshake NBD_OPT_SET_META_CONTEXT replaces the selection, even when it fails", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  await ask(client, NBD_OPT_STRUCTURED_REPLY);
  await ask(client, NBD_OPT_SET_META_CONTEXT, metaContextData("", ["base:allocation"]));
  const failed = await ask(
    client,
    NBD_OPT_SET_META_CONTEXT,
    metaContextData("nope", ["base:allocation"]),
  );
  assert.deepEqual(types(failed), [NBD_REP_ERR_UNKNOWN]);
  await ask(client, NBD_OPT_GO, infoData("disk0"));
  assert.equal((await expectTransmission(outcome)).baseAllocationId, undefined);
});

/** Rows: malformed option data → NBD_REP_ERR_INVALID, and the connection goes on. */
const MALFORMED_CASES: { name: string; option: number; data: Uint8Array }[] = [
  { name: "GO shorter than 6 bytes", option: NBD_OPT_GO, data: u32(0) },
  {
    name: "GO name length past the data",
    option: NBD_OPT_GO,
    data: concat(u32(100), encoder.encode("disk0"), u16(0)),
  },
  {
    name: "GO fewer info requests than counted",
    option: NBD_OPT_GO,
    data: concat(lengthPrefixed("disk0"), u16(2), u16(1)),
  },
  { name: "GO trailing bytes", option: NBD_OPT_GO, data: concat(infoData("disk0"), u16(7)) },
  { name: "INFO name over 4096 bytes", option: NBD_OPT_INFO, data: infoData("x".repeat(4097)) },
  {
    name: "SET_META_CONTEXT without query count",
    option: NBD_OPT_SET_META_CONTEXT,
    data: lengthPrefixed("disk0"),
  },
  {
    name: "SET_META_CONTEXT more queries than sent",
    option: NBD_OPT_SET_META_CONTEXT,
    data: concat(lengthPrefixed("disk0"), u32(0xffffffff), lengthPrefixed("base:allocation")),
  },
  {
    name: "LIST_META_CONTEXT query length past the data",
    option: NBD_OPT_LIST_META_CONTEXT,
    data: concat(lengthPrefixed("disk0"), u32(1), u32(50), encoder.encode("base:")),
  },
];

for (const { name, option, data } of MALFORMED_CASES) {
  Deno.test(`handshake answers NBD_REP_ERR_INVALID to malformed data (${name}) and goes on`, async () => {
    const { client, outcome } = startHandshake();
    await greet(client);
    await ask(client, NBD_OPT_STRUCTURED_REPLY);
    assert.deepEqual(types(await ask(client, option, data)), [NBD_REP_ERR_INVALID]);
    assert.equal((await ask(client, NBD_OPT_GO, infoData("disk0"))).at(-1)!.type, NBD_REP_ACK);
    await expectTransmission(outcome);
  });
}

Deno.test("handshake ends the connection on a bad option magic", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  client.write(concat(u64(0x1122334455667788n), u32(NBD_OPT_GO), u32(0)));
  await expectProtocolError(outcome, /bad magic/);
});

Deno.test("handshake ends the connection on an option longer than NBD_OPTION_BYTES_MAX, without reading it", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  client.write(concat(u64(0x49484156454f5054n), u32(NBD_OPT_GO), u32(NBD_OPTION_BYTES_MAX + 1)));
  await expectProtocolError(outcome, /exceeds/);
});

Deno.test("handshake accepts an option of exactly NBD_OPTION_BYTES_MAX bytes", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  assert.deepEqual(types(await ask(client, 99, new Uint8Array(NBD_OPTION_BYTES_MAX))), [
    NBD_REP_ERR_UNSUP,
  ]);
  await ask(client, NBD_OPT_GO, infoData("disk0"));
  await expectTransmission(outcome);
});

Deno.test("handshake ends the connection after NBD_OPTIONS_MAX options without an export", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  for (let index = 0; index < NBD_OPTIONS_MAX; index++) await ask(client, NBD_OPT_LIST);
  client.write(encodeOption(NBD_OPT_LIST));
  await expectProtocolError(outcome, /more than 64 options/);
});

Deno.test("handshake ends with StreamEndedError when the client hangs up inside an option", async () => {
  const { client, outcome } = startHandshake();
  await greet(client);
  client.write(encodeOption(NBD_OPT_GO, infoData("disk0")).subarray(0, 20));
  client.end();
  const result = await outcome;
  assert.ok(result instanceof StreamEndedError);
  assert.equal(result.receivedBytes, 4, "4 of the 13 option data bytes arrived");
});

/**
 * The data plane's pre-negotiated entry: a worker takes over a socket that is
 * already past its handshake, as the server's own negotiation hands it over
 * and as a connection given to the kernel's NBD client will be.
 *
 * Method: a socketpair whose one end the test speaks NBD on, and whose other
 * end is negotiated by `negotiateSocket` (or not at all: a session the test
 * makes up), then given to `DataPlane.serve`. Requests the client sent behind
 * its last option, before any reply, must reach the worker with the session.
 */

import assert, { deepStrictEqual as assertEquals } from "node:assert/strict";
import { ConnByteStream } from "../../mod/export/nbd/byte_stream.ts";
import { transmissionFlagsOf } from "../../mod/export/nbd/handshake.ts";
import { negotiateSocket } from "../../mod/export/nbd/negotiator.ts";
import { PolledSocket } from "../../mod/sys/polled_socket.ts";
import { REQUEST_HEADER_BYTES } from "../../mod/export/nbd/protocol.ts";
import { closeDescriptor, createSocketPair } from "../../mod/sys/syscalls.ts";
import {
  concat,
  encodeOption,
  encodeRequest,
  greet,
  infoData,
  readChunk,
  readOptionReplies,
  readOptionReply,
  readSimpleReply,
  type WireClient,
} from "../export/nbd/_harness.ts";
import { pattern } from "../remap/harness.ts";
import { failingWorkerModule, fileBytes, startServedSetup } from "./_setup.ts";

const NBD_CMD = { READ: 0, WRITE: 1, DISC: 2 } as const;
const NBD_OPT_GO = 7;
const NBD_OPT_STRUCTURED_REPLY = 8;
const NBD_REP_ACK = 1;
/** NBD_REPLY_TYPE_OFFSET_DATA. */
const OFFSET_DATA = 1;
/** NBD_REPLY_TYPE_NONE. */
const NONE = 0;

/** A client on a raw socket, writing in order. */
function fdClient(fd: number): WireClient {
  const stream = new ConnByteStream(new PolledSocket(fd));
  let writes = Promise.resolve();
  return {
    write(bytes) {
      const copy = bytes.slice();
      writes = writes.then(() => stream.write(copy));
    },
    readExact: (lengthBytes) => stream.readExact(lengthBytes),
    end: () => {},
  };
}

function socketPair(): [number, number] {
  const pair = createSocketPair();
  assert(typeof pair !== "number", `socketpair failed: errno ${-pair}`);
  return pair;
}

/** A session made up for export "dp" (simple replies), as the kernel's attachment gives one. */
function givenSession(sizeBytes: number, received: Uint8Array) {
  return {
    export: { name: "dp", sizeBytes, preferredBlockBytes: 4096 },
    session: {
      exportName: "dp",
      structuredReplies: false,
      baseAllocationId: undefined,
      transmissionFlags: transmissionFlagsOf(false),
    },
    received,
    receivedBytes: 0,
  };
}

Deno.test("data plane: a socket negotiated before the worker starts is served, requests sent behind NBD_OPT_GO included", async () => {
  await using setup = await startServedSetup();
  const [serverFd, clientFd] = socketPair();
  try {
    const exported = { name: "dp", sizeBytes: setup.engine.sizeBytes, preferredBlockBytes: 4096 };
    const negotiating = negotiateSocket(serverFd, { export: exported });
    const client = fdClient(clientFd);
    await greet(client);
    const data = pattern(setup.blockBytes, 11);
    const requests = concat(
      encodeRequest({ type: NBD_CMD.WRITE, cookie: 1, offset: 3 * 4096, length: data.length }),
      data,
      encodeRequest({ type: NBD_CMD.READ, cookie: 2, offset: 3 * 4096, length: data.length }),
    );
    // One write: the options and the first requests reach the server together.
    client.write(concat(
      encodeOption(NBD_OPT_STRUCTURED_REPLY),
      encodeOption(NBD_OPT_GO, infoData("dp")),
      requests,
    ));
    const negotiated = await negotiating;
    assert(negotiated !== "aborted");
    assertEquals(negotiated.session.structuredReplies, true);
    assertEquals(negotiated.received, requests, "the requests were read with the last option");
    const served = setup.dataPlane.serve(serverFd, { transport: negotiated });
    assertEquals((await readOptionReply(client)).type, NBD_REP_ACK);
    assertEquals((await readOptionReplies(client)).at(-1)!.type, NBD_REP_ACK);
    const written = await readChunk(client);
    assertEquals([written.cookie, written.type], [1n, NONE]);
    const read = await readChunk(client);
    assertEquals([read.cookie, read.type], [2n, OFFSET_DATA]);
    assertEquals(read.payload.subarray(8), data);
    assertEquals(await fileBytes(setup.mainPath, 3 * 4096, data.length), data);
    assertEquals(setup.dataPlane.counters().writes, 1, "the worker wrote, not the engine");
    client.write(encodeRequest({ type: NBD_CMD.DISC, cookie: 3 }));
    assertEquals(await served.done, { end: "disconnect" });
  } finally {
    closeDescriptor(clientFd);
  }
});

Deno.test("data plane: a worker serves a socket with a session it is given, in that session's reply style", async () => {
  await using setup = await startServedSetup();
  const [serverFd, clientFd] = socketPair();
  try {
    const received = encodeRequest({ type: NBD_CMD.READ, cookie: 9, offset: 0, length: 4096 });
    const served = setup.dataPlane.serve(serverFd, {
      transport: givenSession(
        setup.engine.sizeBytes,
        received.subarray(0, REQUEST_HEADER_BYTES - 5),
      ),
    });
    const client = fdClient(clientFd);
    client.write(received.subarray(REQUEST_HEADER_BYTES - 5));
    assertEquals(await readSimpleReply(client), { error: 0, cookie: 9n });
    assertEquals(await client.readExact(4096), new Uint8Array(4096));
    client.write(encodeRequest({ type: NBD_CMD.DISC, cookie: 10 }));
    assertEquals(await served.done, { end: "disconnect" });
  } finally {
    closeDescriptor(clientFd);
  }
});

Deno.test("data plane: a socket given to a worker that cannot start ends as failed, and the process goes on", async () => {
  // As the kernel's attachment gives a socket: it offers the kernel another when one ends, and
  // a worker's start failure used to reject the connection as a crash, which ended the process.
  await using failing = await failingWorkerModule();
  await using setup = await startServedSetup({ workerUrl: failing.workerUrl });
  const [serverFd, clientFd] = socketPair();
  try {
    const served = setup.dataPlane.serve(serverFd, {
      transport: givenSession(setup.engine.sizeBytes, new Uint8Array(0)),
    });
    const outcome = await served.done;
    assert(outcome.end === "failed", `ended as ${outcome.end}`);
    assert.match(outcome.error.message, /A connection worker failed to start: .*while marked/);
  } finally {
    closeDescriptor(clientFd);
  }
});

/**
 * The connection worker's loop, run on the test's own thread over a
 * socketpair, in a state reached the same way on every run: requests parked
 * in the input buffer by an in-flight limit while everything in flight
 * completes in the same turn.
 *
 * Goal: the loop never sleeps while its input buffer holds a request that the
 * limits let start (the liveness invariant of `#wait`). Method: the client's
 * whole side of the conversation (handshake, requests, NBD_CMD_DISC) is in the
 * socket before the loop starts, so the first receive takes all of it; the
 * client then either shuts its side or keeps it open and waits for replies,
 * as fio and the kernel do. The disks are files opened without
 * O_DIRECT, whose AIO completes inside io_submit: every request in flight is
 * done by the same turn's reap. A loop that then waited on the socket instead
 * of parsing the parked requests would sleep in recv for ever (the drain
 * worker then reports a stall), or, after a half-close, read the end of the
 * stream and drop the parked requests. A worker drains the client's end
 * meanwhile, so large replies can be sent.
 */

import assert, { deepStrictEqual as assertEquals } from "node:assert/strict";
import {
  NBD_INFLIGHT_BYTES_MAX,
  NBD_INFLIGHT_MAX,
  NBD_REQUEST_BYTES_MAX,
} from "../../mod/constants.ts";
import { MessageQueue } from "../../mod/datapath/data_path.ts";
import { serveWorkerConnection } from "../../mod/export/nbd/connection_worker.ts";
import {
  closeDescriptor,
  createEventFd,
  createSocketPair,
  sendBytes,
  SHUT_WR,
  shutdownSocket,
} from "../../mod/sys/syscalls.ts";
import { COUNTERS, type FromWorker, MAILBOX } from "../../mod/datapath/messages.ts";
import { openFileDevice } from "../../mod/device/file_device.ts";
import { REQUEST_HEADER_BYTES } from "../../mod/export/nbd/protocol.ts";
import { negotiateSocket } from "../../mod/export/nbd/negotiator.ts";
import { pattern } from "../remap/harness.ts";
import {
  BytePipe,
  CLIENT_FLAGS,
  concat,
  encodeOption,
  encodeRequest,
  GREETING_BYTES,
  infoData,
  NBD_OPT_GO,
  readOptionReplies,
  readSimpleReply,
  u32,
  type WireClient,
} from "../export/nbd/_harness.ts";
import type { Drained } from "./_reply_drain.ts";
import { startServedSetup } from "./_setup.ts";

const MIB = 1024 * 1024;
const NBD_CMD_READ = 0;
const NBD_CMD_WRITE = 1;
const NBD_CMD_DISC = 2;

interface Row {
  limit: string;
  count: number;
  readBytes: number;
  /** Whether the client shuts its side after sending (else it waits with its side open). */
  halfClose: boolean;
  /**
   * Whether the stream ends inside a write's payload instead of with
   * NBD_CMD_DISC: the reads before it are answered, then the connection ends.
   */
  truncatedWrite?: boolean;
}

const ROWS: Row[] = [];
for (const halfClose of [false, true]) {
  ROWS.push(
    // 300 small reads: the request count parks the last 172.
    { limit: "NBD_INFLIGHT_MAX", count: NBD_INFLIGHT_MAX + 172, readBytes: 512, halfClose },
    // Three reads of the largest size: the byte limit parks the third.
    { limit: "NBD_INFLIGHT_BYTES_MAX", count: 3, readBytes: NBD_REQUEST_BYTES_MAX, halfClose },
  );
}

ROWS.push({
  limit: "NBD_INFLIGHT_MAX",
  count: NBD_INFLIGHT_MAX + 172,
  readBytes: 512,
  halfClose: true,
  truncatedWrite: true,
});

assert(3 * NBD_REQUEST_BYTES_MAX > NBD_INFLIGHT_BYTES_MAX, "the second row parks its third read");

for (const row of ROWS) {
  const clientSide = row.truncatedWrite
    ? "shuts its side inside a write's payload"
    : row.halfClose
    ? "shuts its side after sending"
    : "keeps its side open";
  Deno.test(`connection worker: requests parked by ${row.limit} are served after a turn that completes everything in flight (the client ${clientSide})`, async () => {
    await using served = await startServedSetup({ direct: false });
    const before = pattern(64 * MIB, 3);
    using file = await Deno.open(served.mainPath, { write: true });
    for (let done = 0; done < before.length;) done += await file.write(before.subarray(done));
    const main = await openFileDevice(served.mainPath, { direct: false });
    const spare = await openFileDevice(served.sparePath, { direct: false });
    const offsets = Array.from(
      { length: row.count },
      (_, i) => (i * row.readBytes) % before.length,
    );
    const clientBytes = concat(
      u32(CLIENT_FLAGS),
      encodeOption(NBD_OPT_GO, infoData("dp")),
      ...offsets.map((offset, cookie) =>
        encodeRequest({ type: NBD_CMD_READ, cookie, offset, length: row.readBytes })
      ),
      row.truncatedWrite
        ? encodeRequest({ type: NBD_CMD_WRITE, cookie: 0, offset: 0, length: 65536 })
          .subarray(0, REQUEST_HEADER_BYTES + 1024)
        : encodeRequest({ type: NBD_CMD_DISC, cookie: 0 }),
    );
    const pair = createSocketPair();
    assert(typeof pair !== "number", `socketpair failed: errno ${-pair}`);
    const [serverFd, clientFd] = pair;
    const wakeFd = createEventFd();
    const drain = new Worker(new URL("./_reply_drain.ts", import.meta.url), { type: "module" });
    try {
      assertEquals(sendBytes(clientFd, clientBytes, 0), clientBytes.length);
      if (row.halfClose) assertEquals(shutdownSocket(clientFd, SHUT_WR), 0);
      const drained = new Promise<Drained>((resolve) =>
        drain.onmessage = (event) => resolve(event.data)
      );
      drain.postMessage({ fd: clientFd });
      const posted: FromWorker[] = [];
      const exported = {
        name: "dp",
        sizeBytes: main.sizeBytes,
        preferredBlockBytes: served.blockBytes,
      };
      const negotiated = await negotiateSocket(serverFd, { export: exported });
      assert(negotiated !== "aborted");
      await serveWorkerConnection(
        {
          connectionFd: serverFd,
          wakeFd,
          mailbox: new Int32Array(new SharedArrayBuffer(MAILBOX.WORDS * 4)),
          counters: new Float64Array(new SharedArrayBuffer(COUNTERS.WORDS * 8)),
          transport: negotiated,
          blockBytes: served.blockBytes,
          main: { fd: main.directAccess().fd, direct: false },
          spares: [{
            index: 0,
            fd: spare.directAccess().fd,
            direct: false,
            layout: served.engine.spares[0]!.layout,
          }],
          state: served.engine.sharedState.buffers,
          leftToDevice: undefined,
        },
        new MessageQueue(),
        (message) => posted.push(message),
      );
      closeDescriptor(serverFd);
      const { bytes, stalled, errno } = await drained;
      assert(!stalled, `the server stopped answering: ${bytes.length} bytes of replies came`);
      assertEquals(errno, undefined);
      assertEquals(
        posted.at(-1),
        row.truncatedWrite
          ? {
            type: "ended",
            end: "failed",
            error: { name: "UnexpectedEof", message: "The stream ended inside a write" },
          }
          : { type: "ended", end: "disconnect" },
      );
      const client = readerOf(bytes.subarray(GREETING_BYTES));
      assertEquals((await readOptionReplies(client)).at(-1)!.type, 1, "NBD_OPT_GO acknowledged");
      const answered = new Set<number>();
      for (let i = 0; i < row.count; i++) {
        const reply = await readSimpleReply(client);
        const cookie = Number(reply.cookie);
        assertEquals(reply.error, 0);
        const data = await client.readExact(row.readBytes);
        const offset = offsets[cookie]!;
        assert(data.every((byte, at) => byte === before[offset + at]), `read ${cookie}'s data`);
        answered.add(cookie);
      }
      assertEquals(answered.size, row.count, "every request answered once");
    } finally {
      drain.terminate();
      await main.close();
      await spare.close();
      closeDescriptor(clientFd);
      closeDescriptor(wakeFd);
    }
  });
}

/** A client over bytes already received. */
function readerOf(bytes: Uint8Array): WireClient {
  const pipe = new BytePipe();
  pipe.push(bytes);
  pipe.end();
  return {
    write: () => assert.fail("the conversation was sent before the loop ran"),
    readExact: (lengthBytes) => pipe.readExact(lengthBytes),
    end: () => {},
  };
}

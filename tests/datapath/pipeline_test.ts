/**
 * Deep pipelines: every request a client sends is answered, however many it
 * sends before reading a reply and however the byte stream is cut.
 *
 * Goal: NBD lets a client send any number of requests before it reads a
 * reply; the server may stop reading to bound its work in flight, but it must
 * come back to the requests it has already read. Method: a raw client sends
 * far more requests than `NBD_INFLIGHT_MAX` (and more read bytes than
 * `NBD_INFLIGHT_BYTES_MAX`), in one write, one byte at a time, or in pieces of
 * seeded random sizes, over the Unix socket (the data plane's workers) and
 * over TCP (the event loop), while it reads replies. Each request touches its
 * own blocks, so every reply's data is known whatever order they complete in;
 * written blocks are read back afterwards. A client that waits longer than
 * {@link REPLY_WAIT_MS} for a reply fails the test with the count answered.
 */

import assert, { deepStrictEqual as assertEquals } from "node:assert/strict";
import { NBD_INFLIGHT_BYTES_MAX, NBD_INFLIGHT_MAX } from "../../mod/constants.ts";
import { pattern } from "../remap/harness.ts";
import {
  concat,
  encodeRequest,
  negotiate,
  readSimpleReply,
  seededRandom,
  socketClient,
  testSeed,
  type WireClient,
} from "../export/nbd/_harness.ts";
import { type ServedSetup, startServedSetup } from "./_setup.ts";

const KIB = 1024;
const MIB = 1024 * KIB;
const BLOCK_BYTES = 4096;
/** No reply takes this long on tmpfs; a request left unanswered fails the test after it. */
const REPLY_WAIT_MS = 10_000;

const NBD_CMD = { READ: 0, WRITE: 1, FLUSH: 3, TRIM: 4 } as const;

/** One request of a pipeline and what its reply must carry. */
interface PipelinedRequest {
  type: number;
  offsetBytes: number;
  lengthBytes: number;
  payload?: Uint8Array;
  /** A read's expected data. */
  expected?: Uint8Array;
}

type Transport = "unix" | "tcp";
type Cut = "one write" | "1-byte pieces" | "random pieces" | "one write, then a half-close";

/** The first half of the disk holds this pattern before the pipeline; reads look there. */
function preloaded(setupBytes: number): Uint8Array {
  return pattern(setupBytes / 2, 7);
}

/**
 * `count` requests: reads of the preloaded half, writes to blocks of the other
 * half that nothing else touches, flushes and trims. `bigReads` of them are
 * 1 MiB reads, enough to pass the in-flight byte limit.
 */
function makePipeline(
  random: () => number,
  options: { count: number; mix: readonly number[]; bigReads: number; diskBytes: number },
): PipelinedRequest[] {
  const half = options.diskBytes / 2;
  const before = preloaded(options.diskBytes);
  const freeBlocks = Array.from({ length: half / BLOCK_BYTES }, (_, i) => half / BLOCK_BYTES + i);
  const requests: PipelinedRequest[] = [];
  for (let i = 0; i < options.count; i++) {
    const type = i < options.bigReads
      ? NBD_CMD.READ
      : options.mix[Math.floor(random() * options.mix.length)]!;
    if (type === NBD_CMD.READ) {
      const lengthBytes = i < options.bigReads ? MIB : BLOCK_BYTES * (1 + Math.floor(random() * 4));
      const offsetBytes = BLOCK_BYTES * Math.floor(random() * ((half - lengthBytes) / BLOCK_BYTES));
      const expected = before.slice(offsetBytes, offsetBytes + lengthBytes);
      requests.push({ type, offsetBytes, lengthBytes, expected });
    } else if (type === NBD_CMD.WRITE || type === NBD_CMD.TRIM) {
      const at = Math.floor(random() * freeBlocks.length);
      const block = freeBlocks.splice(at, 1)[0]!;
      const offsetBytes = block * BLOCK_BYTES;
      const payload = type === NBD_CMD.WRITE ? pattern(BLOCK_BYTES, block) : undefined;
      requests.push({ type, offsetBytes, lengthBytes: BLOCK_BYTES, payload });
    } else requests.push({ type, offsetBytes: 0, lengthBytes: 0 });
  }
  return requests;
}

/** The stream of all requests, cut into the pieces the client writes one by one. */
function cutStream(stream: Uint8Array, cut: Cut, random: () => number): Uint8Array[] {
  if (cut.startsWith("one write")) return [stream];
  const pieces: Uint8Array[] = [];
  for (let at = 0; at < stream.length;) {
    const size = cut === "1-byte pieces" ? 1 : 1 + Math.floor(random() * 9000);
    pieces.push(stream.subarray(at, at + size));
    at += size;
  }
  return pieces;
}

/** Reads one reply, or fails once `deadline` passes. */
function withDeadline<T>(promise: Promise<T>, what: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(what())), REPLY_WAIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Runs `use` with a negotiated client on a new connection, then closes it. */
async function withClient(
  setup: ServedSetup,
  transport: Transport,
  use: (client: WireClient) => Promise<void>,
): Promise<void> {
  const conn = transport === "unix"
    ? await Deno.connect({ transport: "unix", path: setup.server.unixPath! })
    : await Deno.connect({ hostname: "127.0.0.1", port: setup.server.tcpPort! });
  try {
    const client = socketClient(conn);
    await negotiate(client, { exportName: "dp" });
    await use(client);
  } finally {
    conn.close();
  }
}

/** Sends every request before reading any reply, then checks each reply by its cookie. */
async function runPipeline(
  client: WireClient,
  requests: PipelinedRequest[],
  pieces: (stream: Uint8Array) => Uint8Array[],
  halfClose: boolean,
): Promise<void> {
  const stream = concat(
    ...requests.map((request, cookie) =>
      encodeRequest({
        type: request.type,
        cookie,
        offset: request.offsetBytes,
        length: request.lengthBytes,
        payload: request.payload,
      })
    ),
  );
  for (const piece of pieces(stream)) client.write(piece);
  if (halfClose) client.end();
  const answered = new Set<number>();
  for (let i = 0; i < requests.length; i++) {
    const reply = await withDeadline(
      readSimpleReply(client),
      () => `${answered.size} of ${requests.length} requests answered; the rest never were`,
    );
    const cookie = Number(reply.cookie);
    const request = requests[cookie];
    assert(request !== undefined && !answered.has(cookie), `reply to request ${cookie} is new`);
    answered.add(cookie);
    assertEquals(reply.error, 0, `request ${cookie} (type ${request.type}) succeeds`);
    if (request.type !== NBD_CMD.READ) continue;
    const data = await client.readExact(request.lengthBytes);
    assert(
      data.every((byte, at) => byte === request.expected![at]),
      `read ${cookie} at ${request.offsetBytes} returns the preloaded data`,
    );
  }
}

/** Reads every block the pipeline wrote, one request at a time, and compares. */
async function assertWritesLanded(client: WireClient, requests: PipelinedRequest[]) {
  for (const request of requests) {
    if (request.type !== NBD_CMD.WRITE) continue;
    client.write(encodeRequest({
      type: NBD_CMD.READ,
      cookie: 1,
      offset: request.offsetBytes,
      length: request.lengthBytes,
    }));
    assertEquals((await readSimpleReply(client)).error, 0);
    assertEquals(await client.readExact(request.lengthBytes), request.payload);
  }
}

interface Row {
  transport: Transport;
  cut: Cut;
  count: number;
  mix: readonly number[];
  bigReads: number;
  /**
   * Writes whose blocks fail on the main disk (through the fault layer, which
   * the workers see): they go to the engine and are remapped, so group
   * commits close the gate in the middle of the pipeline. @default 0
   */
  failingWrites?: number;
}

const ALL = [NBD_CMD.READ, NBD_CMD.READ, NBD_CMD.WRITE, NBD_CMD.WRITE, NBD_CMD.FLUSH, NBD_CMD.TRIM];
const ROWS: Row[] = [];
for (const transport of ["unix", "tcp"] as const) {
  ROWS.push(
    { transport, cut: "one write", count: 300, mix: [NBD_CMD.READ], bigReads: 0 },
    { transport, cut: "one write", count: 2000, mix: ALL, bigReads: 0 },
    { transport, cut: "one write", count: 400, mix: ALL, bigReads: 200 },
    {
      transport,
      cut: "1-byte pieces",
      count: 400,
      mix: [NBD_CMD.READ, NBD_CMD.FLUSH],
      bigReads: 0,
    },
    { transport, cut: "random pieces", count: 1500, mix: ALL, bigReads: 100 },
    { transport, cut: "one write, then a half-close", count: 1000, mix: ALL, bigReads: 100 },
    { transport, cut: "random pieces", count: 1000, mix: ALL, bigReads: 50, failingWrites: 60 },
  );
}

assert(NBD_INFLIGHT_MAX < 300, "every row pipelines more requests than the in-flight limit");
assert(NBD_INFLIGHT_BYTES_MAX < 100 * MIB, "rows with big reads pass the in-flight byte limit");

for (const row of ROWS) {
  const kinds = row.mix.length === 1
    ? "reads"
    : row.mix === ALL
    ? "mixed requests"
    : "reads and flushes";
  const big = row.bigReads > 0 ? `, ${row.bigReads} of them 1 MiB reads,` : "";
  const failing = row.failingWrites ? ` (${row.failingWrites} writes remapped on the way)` : "";
  Deno.test(`pipeline: ${row.count} ${kinds}${big}${failing} sent over ${row.transport} in ${row.cut} before any reply is read are all answered`, async () => {
    const seed = testSeed();
    const random = seededRandom(seed);
    const diskBytes = 64 * MIB;
    await using setup = await startServedSetup({
      mainBytes: diskBytes,
      tcp: true,
      faultsVisible: true,
    });
    using main = await Deno.open(setup.mainPath, { write: true });
    const before = preloaded(diskBytes);
    for (let done = 0; done < before.length;) done += await main.write(before.subarray(done));
    const requests = makePipeline(random, { ...row, diskBytes });
    const failing = requests.filter((request) => request.type === NBD_CMD.WRITE)
      .slice(0, row.failingWrites ?? 0);
    for (const { offsetBytes, lengthBytes } of failing) {
      setup.faulty.setBad({ offsetBytes, lengthBytes }, "write");
    }
    const halfClose = row.cut.endsWith("half-close");
    try {
      await withClient(
        setup,
        row.transport,
        (client) =>
          runPipeline(client, requests, (stream) => cutStream(stream, row.cut, random), halfClose),
      );
      await withClient(setup, row.transport, (client) => assertWritesLanded(client, requests));
      assertEquals(setup.engine.remapCount, failing.length, "every failing write was remapped");
    } catch (error) {
      throw new Error(`seed ${seed} (replay with NBD_TEST_SEED=${seed})`, { cause: error });
    }
  });
}

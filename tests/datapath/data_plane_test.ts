/**
 * The NBD data plane with real clients: requests are served by connection
 * workers, routed by the engine's remap table, and everything the workers do
 * not serve themselves reaches the engine, whose data rules then apply.
 */

import assert, {
  deepStrictEqual as assertEquals,
  notStrictEqual as assertNotEquals,
} from "node:assert/strict";
import { assertClientOk, runClient, SYSTEM_PATH_PREFIX } from "../clients/run_client.ts";
import { startFailingDisk } from "../clients/failing_disk.ts";
import { failingWorkerModule, fileBytes, type ServedSetup, startServedSetup } from "./_setup.ts";
import { pattern } from "../remap/harness.ts";
import { REQUEST_HEADER_BYTES } from "../../mod/export/nbd/protocol.ts";
import {
  concat,
  encodeRequest,
  negotiate,
  readSimpleReply,
  socketClient,
  type WireClient,
} from "../export/nbd/_harness.ts";

const KIB = 1024;
const MIB = 1024 * KIB;

/** Files holding data for the next nbdsh run, removed after it. */
const dataFiles: string[] = [];

/** Runs nbdsh with `h` connected to `uri`; the script prints what the test checks. */
async function nbdsh(uri: string, script: string): Promise<string> {
  try {
    const result = await runClient("nbdsh", ["-u", uri, "-c", script]);
    assertClientOk(result);
    return result.stdout.trim();
  } finally {
    for (const path of dataFiles.splice(0)) await Deno.remove(path);
  }
}

/** Python for `bytes` of a buffer: small ones inline, large ones through a file. */
function py(bytes: Uint8Array): string {
  if (bytes.length <= 8192) return `bytes.fromhex("${hex(bytes)}")`;
  const path = Deno.makeTempFileSync({ dir: "/dev/shm", prefix: "dm-remap-nbdsh-" });
  Deno.writeFileSync(path, bytes);
  dataFiles.push(path);
  return `open("${path}", "rb").read()`;
}

function hex(bytes: Uint8Array): string {
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** The SHA-256 of `bytes` in hex, as Python's hashlib prints it. */
async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return hex(
    new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>)),
  );
}

/** Remaps `block` through the engine, as a failed write does, with `data` in its slot. */
async function remapThroughEngine(setup: ServedSetup, block: number, data: Uint8Array) {
  const blockBytes = setup.blockBytes;
  setup.faulty.setBad({ offsetBytes: block * blockBytes, lengthBytes: blockBytes }, "write");
  await setup.engine.write(data, block * blockBytes);
}

/** Makes `block` pending through the engine, as a read that fails does. */
async function makePending(setup: ServedSetup, block: number) {
  const blockBytes = setup.blockBytes;
  setup.faulty.setBad({ offsetBytes: block * blockBytes, lengthBytes: blockBytes }, "read");
  await setup.engine.read(new Uint8Array(blockBytes), block * blockBytes).then(
    () => assert.fail("the read must fail"),
    () => {},
  );
}

Deno.test("data plane: nbdsh writes and reads are served by the worker, on the main file, not by the engine", async () => {
  await using setup = await startServedSetup();
  const aligned = pattern(4096, 1);
  const spanning = pattern(MIB, 2);
  const subBlock = pattern(512, 3);
  const out = await nbdsh(
    setup.uri,
    [
      `h.pwrite(${py(aligned)}, 8192)`,
      `h.pwrite(${py(spanning)}, 3 * 1024 * 1024 + 512)`,
      `h.pwrite(${py(subBlock)}, 512)`,
      `h.flush()`,
      `print(h.pread(4096, 8192).hex())`,
      `print(h.pread(512, 512).hex())`,
      `import hashlib; print(hashlib.sha256(h.pread(${MIB}, 3 * 1024 * 1024 + 512)).hexdigest())`,
    ].join("\n"),
  );
  const [readAligned, readSubBlock, spanningDigest] = out.split("\n");
  assertEquals(readAligned, hex(aligned));
  assertEquals(readSubBlock, hex(subBlock));
  assertEquals(spanningDigest, await sha256Hex(spanning));
  assertEquals(await fileBytes(setup.mainPath, 8192, 4096), aligned);
  assertEquals(await fileBytes(setup.mainPath, 3 * MIB + 512, MIB), spanning);
  const counters = setup.dataPlane.counters();
  assertEquals(counters.writes, 3);
  assertEquals(counters.reads, 3);
  assertEquals(counters.flushes, 1);
  assertEquals(setup.engine.counters.writes, 0, "no write went through the engine");
  assertEquals(setup.engine.counters.reads, 0, "no read went through the engine");
});

Deno.test("data plane: a remapped block is read and written on its spare slot, its neighbours on the main file", async () => {
  await using setup = await startServedSetup();
  const block = 10;
  const blockBytes = setup.blockBytes;
  const remapped = pattern(blockBytes, 10);
  await remapThroughEngine(setup, block, remapped);
  assertEquals(setup.engine.lookup(block)?.slotIndex, 0);
  const neighbours = pattern(3 * blockBytes, 11);
  await Deno.writeFile(setup.mainPath, new Uint8Array(0), { append: true }); // keep the file
  using main = await Deno.open(setup.mainPath, { write: true });
  await main.seek((block - 1) * blockBytes, Deno.SeekMode.Start);
  await main.write(neighbours);
  const spanning = await nbdsh(
    setup.uri,
    `print(h.pread(${3 * blockBytes}, ${(block - 1) * blockBytes}).hex())`,
  );
  const expected = neighbours.slice();
  expected.set(remapped, blockBytes);
  assertEquals(spanning, hex(expected), "block 10 from its slot, 9 and 11 from the main file");
  // Starting 512 bytes into block 9, the slot's piece is not O_DIRECT-aligned in the reply
  // buffer: the worker hands the request to the engine, which bounces it.
  const readsBefore = setup.engine.counters.reads;
  const unaligned = await nbdsh(
    setup.uri,
    `print(h.pread(${2 * blockBytes}, ${(block - 1) * blockBytes + 512}).hex())`,
  );
  assertEquals(unaligned, hex(expected.subarray(512, 512 + 2 * blockBytes)));
  assertEquals(setup.engine.counters.reads, readsBefore + 1, "served by the engine");

  const rewritten = pattern(blockBytes, 12);
  const readBack = await nbdsh(
    setup.uri,
    `h.pwrite(${py(rewritten)}, ${
      block * blockBytes
    }, nbd.CMD_FLAG_FUA)\nprint(h.pread(${blockBytes}, ${block * blockBytes}).hex())`,
  );
  assertEquals(readBack, hex(rewritten));
  const slotOffset = setup.engine.spares[0]!.layout.dataOffsetBytes;
  assertEquals(await fileBytes(setup.sparePath, slotOffset, blockBytes), rewritten);
  assertEquals(
    await fileBytes(setup.mainPath, block * blockBytes, blockBytes),
    neighbours.subarray(blockBytes, 2 * blockBytes),
    "the main file's copy is left alone",
  );
  assertEquals(setup.engine.counters.writes, 1, "only the test's own engine write");
});

Deno.test("data plane: a write to a pending block goes to the engine and is remapped", async () => {
  await using setup = await startServedSetup();
  const block = 20;
  const blockBytes = setup.blockBytes;
  await makePending(setup, block);
  assertEquals(setup.engine.pendingBlocks, [block]);
  // The whole block: the rest of a pending block cannot be read, and is never invented.
  const data = pattern(blockBytes, 20);
  const out = await nbdsh(
    setup.uri,
    `h.pwrite(${py(data)}, ${block * blockBytes})\nprint(h.pread(${blockBytes}, ${
      block * blockBytes
    }).hex())`,
  );
  assertEquals(out, hex(data));
  assertEquals(setup.engine.pendingBlocks, []);
  assert(setup.events.some((event) => event.type === "remap" && event.blockIndex === block));
  assertEquals(setup.engine.counters.writes, 1, "the write was forwarded to the engine");
  assertEquals(
    await fileBytes(setup.mainPath, block * blockBytes, blockBytes),
    new Uint8Array(blockBytes),
  );
});

Deno.test("data plane: real EIO from the disk reaches the engine: a failed write is remapped, a failed read is EIO and pending", async () => {
  await using disk = await startFailingDisk({ sizeBytes: 8 * MIB });
  await using setup = await startServedSetup({ mainPath: disk.path });
  const blockBytes = setup.blockBytes;
  await disk.setBadRanges([
    { offsetBytes: 5 * blockBytes, lengthBytes: blockBytes, fail: "write" },
    { offsetBytes: 7 * blockBytes, lengthBytes: blockBytes, fail: "read" },
  ]);
  const data = pattern(blockBytes, 5);
  const out = await nbdsh(
    setup.uri,
    [
      `h.pwrite(${py(data)}, ${5 * blockBytes})`,
      `print(h.pread(${blockBytes}, ${5 * blockBytes}).hex())`,
      `try:\n    h.pread(${blockBytes}, ${
        7 * blockBytes
      })\n    print("read-ok")\nexcept nbd.Error as e:\n    print("errno", e.errno)`,
    ].join("\n"),
  );
  const [readBack, readFailure] = out.split("\n");
  assertEquals(readBack, hex(data));
  assertEquals(readFailure, "errno EIO", "EIO, never invented data");
  assert(setup.events.some((event) => event.type === "remap" && event.blockIndex === 5));
  assertEquals(setup.engine.pendingBlocks, [7]);
});

Deno.test("data plane: remaps committed while 4 connections write with verification lose nothing", async () => {
  await using setup = await startServedSetup({ mainBytes: 64 * MIB, spareSlots: 2048 });
  const blockBytes = setup.blockBytes;
  const remapFirst = (32 * MIB) / blockBytes;
  const remapCount = 1200; // past 512 entries the table grows: workers must take the new arrays
  setup.faulty.setBad({ offsetBytes: 32 * MIB, lengthBytes: remapCount * blockBytes }, "write");
  const fio = runClient("fio", [
    "--name=verify",
    "--ioengine=nbd",
    `--uri=${setup.uri}`,
    "--rw=randwrite",
    "--bs=4k",
    "--iodepth=16",
    "--numjobs=4",
    "--size=8M",
    "--offset_increment=8M",
    "--verify=crc32c",
    "--verify_fatal=1",
    "--verify_state_save=0",
    "--randrepeat=0",
  ], { timeoutMs: 120_000, cwd: "/tmp" });
  const writes = [];
  for (let i = 0; i < remapCount; i++) {
    writes.push(setup.engine.write(pattern(blockBytes, i), (remapFirst + i) * blockBytes));
    if (i % 50 === 49) await Promise.all(writes.splice(0));
  }
  await Promise.all(writes);
  assertClientOk(await fio);
  assertEquals(setup.engine.remapCount, remapCount);
  assert(setup.engine.counters.remapBatches > 1, "the gate closed many times during the run");
  const probes = [0, 511, 512, 1199];
  const out = await nbdsh(
    setup.uri,
    probes.map((i) => `print(h.pread(${blockBytes}, ${(remapFirst + i) * blockBytes}).hex())`).join(
      "\n",
    ),
  );
  assertEquals(out.split("\n"), probes.map((i) => hex(pattern(blockBytes, i))));
});

Deno.test("data plane: qemu-img and nbdcopy over 4 connections copy an image in and out bit for bit", async () => {
  await using setup = await startServedSetup({ mainBytes: 16 * MIB });
  const dir = await Deno.makeTempDir();
  try {
    const source = `${dir}/source.img`;
    const copy = `${dir}/copy.img`;
    await Deno.writeFile(source, pattern(16 * MIB, 99));
    assertClientOk(await runClient("nbdcopy", ["--connections=4", source, setup.uri]));
    assertClientOk(await runClient("nbdcopy", ["--connections=4", setup.uri, copy]));
    assertEquals(await Deno.readFile(copy), await Deno.readFile(source));
    assertClientOk(
      await runClient("qemu-img", ["compare", "-f", "raw", "-F", "raw", source, setup.uri]),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("data plane: trim, zeroing and block status are answered by the engine for the worker's client", async () => {
  await using setup = await startServedSetup();
  const out = await nbdsh(
    setup.uri,
    [
      `h.pwrite(b"\\xaa" * 8192, 0)`,
      `h.zero(4096, 0)`,
      `h.trim(4096, 4096)`,
      `print(h.pread(4096, 0).hex() == "00" * 4096)`,
      `print(h.can_zero(), h.can_trim())`,
    ].join("\n"),
  );
  assertEquals(out.split("\n"), ["True", "True True"]);
});

Deno.test("data plane: shutdown ends an idle connection and the client sees the server go", async () => {
  const setup = await startServedSetup();
  const client = new Deno.Command("nbdsh", {
    args: ["-u", setup.uri, "-c", "import sys\nsys.stdin.read()\nh.pread(4096, 0)"],
    env: { PATH: `${SYSTEM_PATH_PREFIX}:${Deno.env.get("PATH") ?? ""}` },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  for (let i = 0; i < 500 && setup.server.connectionCount === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assertEquals(setup.server.connectionCount, 1);
  await setup[Symbol.asyncDispose]();
  await client.stdin.close();
  const result = await client.output();
  assertNotEquals(result.code, 0, "the read after shutdown fails: the server is gone");
});

Deno.test("data plane: requests that touch the fault layer's bad blocks, or any while random faults are on, go through the layer", async () => {
  await using setup = await startServedSetup({ faultsVisible: true });
  const blockBytes = setup.blockBytes;
  setup.faulty.setBad({ offsetBytes: 30 * blockBytes, lengthBytes: blockBytes }, "write");
  const bad = pattern(2 * blockBytes, 30);
  const good = pattern(blockBytes, 40);
  await nbdsh(setup.uri, `h.pread(${blockBytes}, ${30 * blockBytes})`);
  assertEquals(
    setup.engine.counters.reads,
    0,
    "a read of a block that fails only writes stays in the worker",
  );
  const out = await nbdsh(
    setup.uri,
    [
      `h.pwrite(${py(bad)}, ${29 * blockBytes})`,
      `h.pwrite(${py(good)}, ${40 * blockBytes})`,
      `print(h.pread(${2 * blockBytes}, ${29 * blockBytes}).hex())`,
    ].join("\n"),
  );
  assertEquals(out, hex(bad));
  assertEquals(setup.engine.remaps().map((remap) => remap.blockIndex), [30]);
  assertEquals(setup.engine.counters.writes, 1, "only the write over the bad block went through");
  assertEquals(setup.dataPlane.counters().writes, 1);

  setup.faulty.setRates({ writeEio: 1 });
  await nbdsh(setup.uri, `h.pwrite(${py(good)}, ${50 * blockBytes})`);
  assertEquals(setup.engine.remaps().map((remap) => remap.blockIndex), [30, 50]);
  setup.faulty.setRates({});
  await nbdsh(setup.uri, `h.pwrite(${py(good)}, ${60 * blockBytes})`);
  assertEquals(setup.engine.remapCount, 2);
  assertEquals(setup.dataPlane.counters().writes, 2);
});

Deno.test("data plane: on the wire, an oversized write is refused and skipped in step, and a bad magic ends only that connection", async () => {
  await using setup = await startServedSetup();
  const socketPath = setup.server.unixPath!;
  const conn = await Deno.connect({ transport: "unix", path: socketPath });
  try {
    const client = socketClient(conn);
    await negotiate(client, { exportName: "dp" });
    const oversized = new Uint8Array(32 * MIB + 4096).fill(7);
    client.write(encodeRequest({ type: 1, cookie: 1, offset: 0, payload: oversized }));
    assertEquals((await readSimpleReply(client)).error, 22, "EINVAL for a write over 32 MiB");
    const data = pattern(4096, 77);
    client.write(encodeRequest({ type: 1, cookie: 2, offset: 4096, payload: data }));
    client.write(encodeRequest({ type: 0, cookie: 3, offset: 4096, length: 4096 }));
    assertEquals(await readSimpleReply(client), { error: 0, cookie: 2n });
    assertEquals(await readSimpleReply(client), { error: 0, cookie: 3n });
    assertEquals(await client.readExact(4096), data, "the stream stayed in step");
    client.write(encodeRequest({ type: 0, cookie: 4, offset: 0, length: 4096, magic: 0xdeadbeef }));
    await assert.rejects(client.readExact(1), "the connection is closed");
  } finally {
    conn.close();
  }
  assertEquals(
    await nbdsh(setup.uri, `print(h.pread(4096, 4096).hex())`),
    hex(pattern(4096, 77)),
    "the server serves the next client",
  );
});

Deno.test("data plane: a client stalled in the middle of a write payload does not hold up another client's remap", async () => {
  await using disk = await startFailingDisk({ sizeBytes: 8 * MIB });
  await using setup = await startServedSetup({ mainPath: disk.path });
  const blockBytes = setup.blockBytes;
  await disk.setBadRanges([{
    offsetBytes: 9 * blockBytes,
    lengthBytes: blockBytes,
    fail: "write",
  }]);
  const conn = await Deno.connect({ transport: "unix", path: setup.server.unixPath! });
  try {
    const stalled = socketClient(conn);
    await negotiate(stalled, { exportName: "dp" });
    // A read whose disk I/O is in flight (each request forks nbdkit's sh plugin),
    // then a write whose payload stops halfway.
    const payload = pattern(256 * KIB, 5);
    stalled.write(encodeRequest({ type: 0, cookie: 1, offset: 0, length: 4096 }));
    const header = encodeRequest({ type: 1, cookie: 2, offset: MIB, payload });
    stalled.write(header.subarray(0, REQUEST_HEADER_BYTES + 128 * KIB));
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Another client's write to a failing block needs a remap commit, which
    // needs the engine's gate empty.
    const other = await runClient("nbdsh", [
      "-u",
      setup.uri,
      "-c",
      `h.pwrite(b"\\x09" * ${blockBytes}, ${9 * blockBytes})`,
    ], { timeoutMs: 15_000 });
    assertClientOk(other);
    assert(setup.events.some((event) => event.type === "remap" && event.blockIndex === 9));
    stalled.write(header.subarray(REQUEST_HEADER_BYTES + 128 * KIB));
    assertEquals(await readSimpleReply(stalled), { error: 0, cookie: 1n });
    await stalled.readExact(4096);
    assertEquals(await readSimpleReply(stalled), { error: 0, cookie: 2n });
  } finally {
    conn.close();
  }
});

Deno.test("data plane: a worker that starts slower than the handshake deadline still serves the client", async () => {
  // The deadline is for clients that stall. It used to run on while the server started the
  // connection's worker, which under `deno test` type-checks the worker's module: in a run at
  // load 10, 2 of 4 fio jobs connecting at once were cut in the handshake ("server
  // disconnected unexpectedly"), most likely by it.
  await using setup = await startServedSetup({ handshakeTimeoutMs: 2_000 });
  const claimWorker = setup.dataPlane.claimWorker.bind(setup.dataPlane);
  setup.dataPlane.claimWorker = async () => {
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    return await claimWorker();
  };
  const conn = await Deno.connect({ transport: "unix", path: setup.server.unixPath! });
  try {
    const client = socketClient(conn);
    await negotiate(client, { exportName: "dp" });
    client.write(encodeRequest({ type: 0, cookie: 7, offset: 0, length: 4096 }));
    assertEquals(await readSimpleReply(client), { error: 0, cookie: 7n });
    await client.readExact(4096);
  } finally {
    conn.close();
  }
});

Deno.test("data plane: a worker that cannot start fails its connection only; the next is served", async () => {
  // A worker's module that fails to load (as one does whose working directory was removed) used
  // to reject the server's task, which ended the whole process: every connection, root's too.
  await using failing = await failingWorkerModule();
  await using setup = await startServedSetup({ workerUrl: failing.workerUrl });
  const refused = await Deno.connect({ transport: "unix", path: setup.server.unixPath! });
  try {
    await assert.rejects(negotiate(socketClient(refused), { exportName: "dp" }));
  } finally {
    refused.close();
  }
  await failing.heal();
  assertEquals(await nbdsh(setup.uri, `print(h.pread(4096, 0) == bytes(4096))`), "True");
});

/** Polls until `check` holds; fails the test after `timeoutMs`. */
async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 5_000) {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Writes 1 MiB of `pattern(MIB, seed)` at offset 0 on a connection of its own,
 * sending its payload in pieces: up to each stop's `sentBytes`, then its
 * `then` (which waits for what the worker must have done by then), and at last
 * the rest. Checks the reply; the caller closes `conn`.
 */
async function writeInPieces(
  setup: ServedSetup,
  seed: number,
  stops: readonly { sentBytes: number; then: (payload: Uint8Array) => Promise<void> }[],
) {
  const conn = await Deno.connect({ transport: "unix", path: setup.server.unixPath! });
  const client = socketClient(conn);
  await negotiate(client, { exportName: "dp" });
  const payload = pattern(MIB, seed);
  const request = encodeRequest({ type: 1, cookie: 1, offset: 0, payload });
  let sent = 0;
  for (const stop of stops) {
    const end = REQUEST_HEADER_BYTES + stop.sentBytes;
    client.write(request.subarray(sent, end));
    sent = end;
    await stop.then(payload);
  }
  client.write(request.subarray(sent));
  assertEquals(await readSimpleReply(client), { error: 0, cookie: 1n });
  return { conn, client, payload };
}

/** Waits until `path`, a file without faults, starts with the first `lengthBytes` of `payload`. */
function untilWritten(path: string, payload: Uint8Array, lengthBytes: number): Promise<void> {
  return eventually(
    `the first ${lengthBytes} bytes are on ${path}`,
    async () =>
      hex(await fileBytes(path, 0, lengthBytes)) === hex(payload.subarray(0, lengthBytes)),
  );
}

/** Reads the first MiB back on `client` and checks it is `payload`. */
async function assertReadsBack(client: WireClient, payload: Uint8Array) {
  client.write(encodeRequest({ type: 0, cookie: 2, offset: 0, length: MIB }));
  assertEquals(await readSimpleReply(client), { error: 0, cookie: 2n });
  assertEquals(hex(await client.readExact(MIB)), hex(payload), "reads back whole");
}

Deno.test("data plane: a large write is written in parts while its payload arrives, a remapped block's part on its slot", async () => {
  await using setup = await startServedSetup();
  const blockBytes = setup.blockBytes;
  const remappedBlock = 40;
  await remapThroughEngine(setup, remappedBlock, pattern(blockBytes, 1));
  const slotOffset = setup.engine.spares[0]!.layout.dataOffsetBytes;
  const { conn, payload } = await writeInPieces(setup, 41, [{
    sentBytes: 256 * KIB,
    then: async (payload) => {
      await untilWritten(setup.mainPath, payload, remappedBlock * blockBytes);
      const slotPiece = payload.subarray(
        remappedBlock * blockBytes,
        (remappedBlock + 1) * blockBytes,
      );
      await eventually(
        "the remapped block's piece is on its slot",
        async () =>
          hex(await fileBytes(setup.sparePath, slotOffset, blockBytes)) === hex(slotPiece),
      );
      assertNotEquals(
        hex(await fileBytes(setup.mainPath, 512 * KIB, blockBytes)),
        hex(payload.subarray(512 * KIB, 512 * KIB + blockBytes)),
        "what has not arrived is not written",
      );
    },
  }]);
  conn.close();
  const withoutRemapped = (bytes: Uint8Array) =>
    hex(bytes.slice().fill(0, remappedBlock * blockBytes, (remappedBlock + 1) * blockBytes));
  assertEquals(
    withoutRemapped(await fileBytes(setup.mainPath, 0, MIB)),
    withoutRemapped(payload),
    "every other block on the main file",
  );
  assertEquals(setup.engine.counters.writes, 1, "only the test's own engine write");
});

Deno.test("data plane: when a part of a large write cannot be served by the worker, the whole write goes to the engine once its payload is in", async () => {
  await using setup = await startServedSetup();
  const pendingBlock = 200; // in the last quarter of the write
  await makePending(setup, pendingBlock);
  assertEquals(setup.engine.pendingBlocks, [pendingBlock]);
  const { conn, client, payload } = await writeInPieces(setup, 42, [{
    sentBytes: 256 * KIB,
    then: (payload) => untilWritten(setup.mainPath, payload, 256 * KIB),
  }]);
  try {
    assertEquals(setup.engine.counters.writes, 1, "the engine wrote the whole request");
    assertEquals(setup.engine.pendingBlocks, []);
    assert(
      setup.events.some((event) => event.type === "remap" && event.blockIndex === pendingBlock),
    );
    await assertReadsBack(client, payload);
  } finally {
    conn.close();
  }
});

Deno.test("data plane: a client that hangs up in the middle of a streamed write ends only its own connection", async () => {
  await using setup = await startServedSetup();
  const conn = await Deno.connect({ transport: "unix", path: setup.server.unixPath! });
  const client = socketClient(conn);
  await negotiate(client, { exportName: "dp" });
  const payload = pattern(MIB, 43);
  client.write(
    encodeRequest({ type: 1, cookie: 1, offset: 0, payload }).subarray(
      0,
      REQUEST_HEADER_BYTES + 512 * KIB,
    ),
  );
  await eventually(
    "a part is written",
    async () =>
      hex(await fileBytes(setup.mainPath, 0, 128 * KIB)) === hex(payload.subarray(0, 128 * KIB)),
  );
  await client.closed;
  conn.close();
  await eventually(
    "the worker let the connection go",
    () => Promise.resolve(setup.server.connectionCount === 0),
  );
  const out = await nbdsh(
    setup.uri,
    `h.pwrite(b"\\x05" * 4096, 0)\nprint(h.pread(4096, 0)[:4].hex())`,
  );
  assertEquals(out, "05050505");
});

Deno.test("data plane: a part of a large write that fails with real EIO sends the whole write to the engine, which remaps the block", async () => {
  await using disk = await startFailingDisk({ sizeBytes: 8 * MIB });
  await using setup = await startServedSetup({ mainPath: disk.path });
  const blockBytes = setup.blockBytes;
  const badBlock = 150;
  await disk.setBadRanges([{
    offsetBytes: badBlock * blockBytes,
    lengthBytes: blockBytes,
    fail: "write",
  }]);
  const badBlockFailed = async () =>
    (await disk.injectedErrors()).some(({ operation, offsetBytes, lengthBytes }) =>
      operation === "write" && offsetBytes <= badBlock * blockBytes &&
      badBlock * blockBytes < offsetBytes + lengthBytes
    );
  // The disk fails a request as a whole, so the first part must end before the
  // bad block to be written; the part with the bad block fails while the rest
  // of the payload has not been sent.
  const { conn, client, payload } = await writeInPieces(setup, 44, [
    { sentBytes: 256 * KIB, then: (payload) => untilWritten(disk.backingPath, payload, 256 * KIB) },
    {
      sentBytes: 768 * KIB,
      then: () => eventually("the part with the bad block failed", badBlockFailed),
    },
  ]);
  try {
    assertEquals(setup.engine.counters.writes, 1, "the engine wrote the whole request");
    assert(setup.events.some((event) => event.type === "remap" && event.blockIndex === badBlock));
    await assertReadsBack(client, payload);
  } finally {
    conn.close();
  }
});

Deno.test("data plane: remapped neighbours in neighbouring slots are read and written together, out-of-order slots apart", async () => {
  await using setup = await startServedSetup();
  const blockBytes = setup.blockBytes;
  // Slots are handed out in remap order: 30→0, 31→1, 33→2, 32→3.
  const remapOrder = [30, 31, 33, 32];
  for (const block of remapOrder) {
    await remapThroughEngine(setup, block, pattern(blockBytes, block));
  }
  assertEquals(remapOrder.map((block) => setup.engine.lookup(block)?.slotIndex), [0, 1, 2, 3]);
  const expected = new Uint8Array(6 * blockBytes); // blocks 29..34; 29 and 34 never written
  for (const block of remapOrder) {
    expected.set(pattern(blockBytes, block), (block - 29) * blockBytes);
  }
  assertEquals(
    await nbdsh(setup.uri, `print(h.pread(${6 * blockBytes}, ${29 * blockBytes}).hex())`),
    hex(expected),
  );
  const rewritten = pattern(6 * blockBytes, 99);
  await nbdsh(setup.uri, `h.pwrite(${py(rewritten)}, ${29 * blockBytes})`);
  const slotOffset = setup.engine.spares[0]!.layout.dataOffsetBytes;
  const slots = await fileBytes(setup.sparePath, slotOffset, 4 * blockBytes);
  remapOrder.forEach((block, slot) =>
    assertEquals(
      hex(slots.subarray(slot * blockBytes, (slot + 1) * blockBytes)),
      hex(rewritten.subarray((block - 29) * blockBytes, (block - 28) * blockBytes)),
      `block ${block} in slot ${slot}`,
    )
  );
  assertEquals(setup.engine.counters.writes, 4, "only the test's own engine writes");
});

Deno.test("data plane: a connection's socket has room for whole 1 MiB replies", async () => {
  await using setup = await startServedSetup();
  const socketPath = setup.server.unixPath!;
  const conn = await Deno.connect({ transport: "unix", path: socketPath });
  try {
    await negotiate(socketClient(conn), { exportName: "dp" });
    // The server's end of the connection, as the kernel reports it (tb: send buffer bytes).
    const ss = await runClient("ss", ["-x", "-m", "state", "established", "src", socketPath]);
    assertClientOk(ss);
    const sendBuffers = [...ss.stdout.matchAll(/tb(\d+)/g)].map((match) => Number(match[1]));
    assertEquals(sendBuffers.length, 1, ss.stdout);
    assert(sendBuffers[0]! >= 2 * MIB, `send buffer ${sendBuffers[0]} bytes`);
  } finally {
    conn.close();
  }
});

Deno.test("data plane: remapped blocks in consecutive slots with main-disk blocks between them are one vectored I/O, for one request or several in flight", async () => {
  await using setup = await startServedSetup();
  const blockBytes = setup.blockBytes;
  const remapped = [40, 42, 44]; // slots 0, 1, 2: one range of the spare
  for (const block of remapped) await remapThroughEngine(setup, block, pattern(blockBytes, block));
  assertEquals(remapped.map((block) => setup.engine.lookup(block)?.slotIndex), [0, 1, 2]);
  const first = 39, count = 7; // blocks 39..45; the odd ones were never written
  const expected = new Uint8Array(count * blockBytes);
  for (const block of remapped) {
    expected.set(pattern(blockBytes, block), (block - first) * blockBytes);
  }
  const offset = first * blockBytes, length = count * blockBytes;
  // One request, then four in flight together.
  const out = await nbdsh(
    setup.uri,
    [
      `print(h.pread(${length}, ${offset}).hex())`,
      `bufs = [nbd.Buffer(${length}) for _ in range(4)]`,
      `cookies = [h.aio_pread(b, ${offset}) for b in bufs]`,
      `while h.aio_in_flight() > 0: h.poll(-1)`,
      `assert all(h.aio_command_completed(c) for c in cookies)`,
      `print(" ".join(b.to_bytearray().hex() for b in bufs))`,
    ].join("\n"),
  );
  const [alone, batched] = out.split("\n");
  assertEquals(alone, hex(expected));
  assertEquals(batched, Array(4).fill(hex(expected)).join(" "));
  const rewritten = pattern(length, 98);
  const readBack = await nbdsh(
    setup.uri,
    `h.pwrite(${
      py(rewritten)
    }, ${offset}, nbd.CMD_FLAG_FUA)\nprint(h.pread(${length}, ${offset}).hex())`,
  );
  assertEquals(readBack, hex(rewritten));
  const slotOffset = setup.engine.spares[0]!.layout.dataOffsetBytes;
  const slots = await fileBytes(setup.sparePath, slotOffset, 3 * blockBytes);
  const main = await fileBytes(setup.mainPath, offset, length);
  for (let block = first; block < first + count; block++) {
    const at = (block - first) * blockBytes;
    const slot = remapped.indexOf(block);
    if (slot >= 0) {
      assertEquals(
        hex(slots.subarray(slot * blockBytes, (slot + 1) * blockBytes)),
        hex(rewritten.subarray(at, at + blockBytes)),
        `block ${block} in slot ${slot}`,
      );
      assertEquals(main.subarray(at, at + blockBytes), new Uint8Array(blockBytes), `main ${block}`);
    } else {
      assertEquals(
        hex(main.subarray(at, at + blockBytes)),
        hex(rewritten.subarray(at, at + blockBytes)),
        `block ${block} on main`,
      );
    }
  }
  assertEquals(setup.engine.counters.writes, 3, "only the test's own engine writes");
  assertEquals(setup.engine.counters.reads, 0, "every read served by the worker");
});

Deno.test("data plane: a request over extents with and without remaps finds every remapped block, at extent edges too", async () => {
  await using setup = await startServedSetup();
  const blockBytes = setup.blockBytes;
  // Extents are SUMMARY_EXTENT_BLOCKS (64) blocks. 63|64 straddle an edge; 192 starts extent
  // 3 right after extent 2, which has no remap; 200 sits inside extent 3; 319 ends extent 4;
  // 329 is the request's last block.
  const remapped = [63, 64, 192, 200, 319, 329];
  const first = 60, count = 330 - 60; // blocks 60..329, from mid-extent to mid-extent
  const offset = first * blockBytes, length = count * blockBytes;
  const onMain = pattern(length, 61);
  using main = await Deno.open(setup.mainPath, { write: true });
  await main.seek(offset, Deno.SeekMode.Start);
  await main.write(onMain);
  for (const block of remapped) await remapThroughEngine(setup, block, pattern(blockBytes, block));
  const expected = onMain.slice();
  for (const block of remapped) {
    expected.set(pattern(blockBytes, block), (block - first) * blockBytes);
  }
  const readPath = await Deno.makeTempFile({ dir: "/dev/shm", prefix: "dm-remap-extents-" });
  using _removeRead = { [Symbol.dispose]: () => Deno.removeSync(readPath) };
  const blocksOf = (bytes: Uint8Array) =>
    Array.from(
      { length: count },
      (_, i) => hex(bytes.subarray(i * blockBytes, i * blockBytes + 16)),
    );
  const rewritten = pattern(length, 62);
  await nbdsh(
    setup.uri,
    `open("${readPath}", "wb").write(h.pread(${length}, ${offset}))\n` +
      `h.pwrite(${py(rewritten)}, ${offset})`,
  );
  assertEquals(blocksOf(await Deno.readFile(readPath)), blocksOf(expected), "read: block by block");
  const slotOffset = setup.engine.spares[0]!.layout.dataOffsetBytes;
  const slots = await fileBytes(setup.sparePath, slotOffset, remapped.length * blockBytes);
  const mainAfter = await fileBytes(setup.mainPath, offset, length);
  const expectedMain = rewritten.slice();
  remapped.forEach((block, slot) => {
    const at = (block - first) * blockBytes;
    assertEquals(
      hex(slots.subarray(slot * blockBytes, (slot + 1) * blockBytes)),
      hex(rewritten.subarray(at, at + blockBytes)),
      `block ${block} written to slot ${slot}`,
    );
    expectedMain.set(onMain.subarray(at, at + blockBytes), at);
  });
  assertEquals(
    blocksOf(mainAfter),
    blocksOf(expectedMain),
    "write: remapped blocks' main copies untouched",
  );
  assertEquals(setup.engine.counters.reads, 0, "every read served by the worker");
  assertEquals(setup.engine.counters.writes, remapped.length, "only the test's own engine writes");
});

Deno.test("data plane: requests whose pieces outnumber the free AIO slots wait for room in the worker, not go to the engine", async () => {
  await using setup = await startServedSetup();
  const blockBytes = setup.blockBytes;
  // Every other block remapped: a 1 MiB request is 128 main-disk runs and two
  // vectored slot runs, so two such requests need more than AIO_SLOTS_MAX (256).
  const requests = 4, requestBytes = MIB;
  const blocks = (requests * requestBytes) / blockBytes;
  const onMain = pattern(requests * requestBytes, 71);
  using main = await Deno.open(setup.mainPath, { write: true });
  await main.write(onMain);
  const remapped = Array.from({ length: blocks / 2 }, (_, i) => 2 * i + 1);
  for (const block of remapped) await remapThroughEngine(setup, block, pattern(blockBytes, block));
  const expected = onMain.slice();
  for (const block of remapped) expected.set(pattern(blockBytes, block), block * blockBytes);
  // The reads' headers go in one write, so the worker receives and plans them
  // in one turn: the second finds fewer free slots than it has pieces.
  const conn = await Deno.connect({ transport: "unix", path: setup.server.unixPath! });
  const read = new Uint8Array(requests * requestBytes);
  try {
    const client = socketClient(conn);
    await negotiate(client, { exportName: "dp" });
    const headers = Array.from(
      { length: requests },
      (_, i) =>
        encodeRequest({ type: 0, cookie: i, offset: i * requestBytes, length: requestBytes }),
    );
    client.write(concat(...headers));
    for (let i = 0; i < requests; i++) {
      const { error, cookie } = await readSimpleReply(client);
      assertEquals(error, 0);
      read.set(await client.readExact(requestBytes), Number(cookie) * requestBytes);
    }
  } finally {
    conn.close();
  }
  assertEquals(await sha256Hex(read), await sha256Hex(expected));
  const rewritten = pattern(requests * requestBytes, 72);
  // All writes are sent before any reply is read, so they are in flight together.
  const out = await nbdsh(
    setup.uri,
    [
      "import hashlib",
      `data = ${py(rewritten)}`,
      `writes = [nbd.Buffer.from_bytearray(bytearray(data[i * ${requestBytes}:(i + 1) * ${requestBytes}])) for i in range(${requests})]`,
      `cookies = [h.aio_pwrite(writes[i], i * ${requestBytes}) for i in range(${requests})]`,
      `while h.aio_in_flight() > 0: h.poll(-1)`,
      `assert all(h.aio_command_completed(c) for c in cookies)`,
      `print(hashlib.sha256(b"".join(h.pread(${requestBytes}, i * ${requestBytes}) for i in range(${requests}))).hexdigest())`,
    ].join("\n"),
  );
  assertEquals(out, await sha256Hex(rewritten));
  assertEquals(setup.engine.counters.reads, 0, "every read served by the worker");
  assertEquals(setup.engine.counters.writes, remapped.length, "only the test's own engine writes");
});

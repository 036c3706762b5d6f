/**
 * `serveNbd` on real sockets: addresses, the Unix socket file's life cycle,
 * several connections, limits, graceful shutdown, and that a broken client
 * ends only its own connection.
 *
 * Method: start a server over a `ScriptedDevice` on a fresh temporary socket,
 * speak the wire protocol with the harness client over `Deno.connect`, and
 * always close server and sockets in `finally`.
 */

import assert from "node:assert/strict";
import { NBD_CONNECTIONS_MAX } from "../../../mod/constants.ts";
import { ListenError, UsageError } from "../../../mod/errors.ts";
import { StreamEndedError } from "../../../mod/export/nbd/byte_stream.ts";
import { type NbdServer, type NbdServerOptions, serveNbd } from "../../../mod/export/nbd/server.ts";
import {
  encodeRequest,
  gate,
  negotiate,
  readSimpleReply,
  ScriptedDevice,
  settle,
  socketClient,
  type WireClient,
} from "./_harness.ts";

const SIZE_BYTES = 4 * 1024 * 1024;

async function tempSocketPath(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-nbd-" });
  return `${dir}/nbd.sock`;
}

async function removeDirOf(path: string): Promise<void> {
  await Deno.remove(path.slice(0, path.lastIndexOf("/")), { recursive: true }).catch(() => {});
}

interface Running {
  server: NbdServer;
  device: ScriptedDevice;
  unixPath: string;
  log: string[];
  conns: Deno.Conn[];
  connect(): Promise<WireClient>;
}

/** Runs `body` against a fresh server and cleans everything up afterwards. */
async function withServer(
  body: (running: Running) => Promise<void>,
  options: Partial<NbdServerOptions> = {},
): Promise<void> {
  const unixPath = await tempSocketPath();
  const device = new ScriptedDevice(SIZE_BYTES);
  const log: string[] = [];
  const conns: Deno.Conn[] = [];
  const server = await serveNbd({
    device,
    exportName: "disk0",
    preferredBlockBytes: 4096,
    unixPath,
    log: (line) => log.push(line),
    ...options,
  });
  const running: Running = {
    server,
    device,
    unixPath,
    log,
    conns,
    async connect() {
      const conn = await Deno.connect({ transport: "unix", path: unixPath });
      conns.push(conn);
      return socketClient(conn);
    },
  };
  try {
    await body(running);
  } finally {
    await server.close();
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // Already closed by the test.
      }
    }
    await removeDirOf(unixPath);
  }
}

async function expectClosed(client: WireClient): Promise<void> {
  const error = await client.readExact(1).then(() => undefined, (error) => error);
  assert.ok(
    error instanceof StreamEndedError || error instanceof Deno.errors.ConnectionReset,
    `expected the server to close the connection, got ${String(error)}`,
  );
}

Deno.test("serveNbd serves NBD_OPT_GO, writes and reads over a Unix socket, and counts requests", async () => {
  await withServer(async ({ server, connect, device }) => {
    const client = await connect();
    const { sizeBytes } = await negotiate(client, { exportName: "disk0" });
    assert.equal(sizeBytes, BigInt(SIZE_BYTES));
    assert.equal(server.connectionCount, 1);
    const data = new Uint8Array(4096).fill(0x5a);
    client.write(encodeRequest({ type: 1, cookie: 1, offset: 8192, payload: data }));
    assert.deepEqual(await readSimpleReply(client), { error: 0, cookie: 1n });
    client.write(encodeRequest({ type: 0, cookie: 2, offset: 8192, length: 4096 }));
    assert.deepEqual(await readSimpleReply(client), { error: 0, cookie: 2n });
    assert.deepEqual(await client.readExact(4096), data);
    assert.deepEqual(device.memory.peek({ offsetBytes: 8192, lengthBytes: 4096 }), data);
    client.write(encodeRequest({ type: 2, cookie: 3 }));
    await expectClosed(client);
    assert.equal(server.requestCount, 2);
    for (let turn = 0; turn < 10 && server.connectionCount > 0; turn++) await settle();
    assert.equal(server.connectionCount, 0);
  });
});

Deno.test("serveNbd listens on TCP port 0 and reports the bound port", async () => {
  const server = await serveNbd({
    device: new ScriptedDevice(SIZE_BYTES),
    exportName: "disk0",
    preferredBlockBytes: 4096,
    tcp: { port: 0 },
  });
  try {
    assert.equal(server.tcpHostname, "127.0.0.1", "loopback by default");
    assert.ok(server.tcpPort !== undefined && server.tcpPort > 0);
    assert.equal(server.unixPath, undefined);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.tcpPort });
    try {
      const client = socketClient(conn);
      await negotiate(client);
      client.write(encodeRequest({ type: 3, cookie: 9 }));
      assert.deepEqual(await readSimpleReply(client), { error: 0, cookie: 9n });
    } finally {
      conn.close();
    }
  } finally {
    await server.close();
  }
});

Deno.test("serveNbd replaces a stale Unix socket file and removes its socket at close", async () => {
  const unixPath = await tempSocketPath();
  try {
    // A process that binds and exits without unlinking leaves a stale socket file, as a crash would.
    const bound = await new Deno.Command("python3", {
      args: ["-c", "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", unixPath],
    }).output();
    assert.equal(bound.code, 0, new TextDecoder().decode(bound.stderr));
    assert.ok((await Deno.lstat(unixPath)).isSocket);
    const server = await serveNbd({
      device: new ScriptedDevice(SIZE_BYTES),
      exportName: "d",
      preferredBlockBytes: 512,
      unixPath,
    });
    const conn = await Deno.connect({ transport: "unix", path: unixPath });
    conn.close();
    await server.close();
    await assert.rejects(Deno.lstat(unixPath), Deno.errors.NotFound);
  } finally {
    await removeDirOf(unixPath);
  }
});

Deno.test("serveNbd refuses a Unix socket another server listens on, and leaves it alone", async () => {
  const unixPath = await tempSocketPath();
  const other = Deno.listen({ transport: "unix", path: unixPath });
  try {
    await assert.rejects(
      serveNbd({
        device: new ScriptedDevice(SIZE_BYTES),
        exportName: "d",
        preferredBlockBytes: 512,
        unixPath,
      }),
      (error) => {
        assert.ok(error instanceof ListenError);
        assert.equal(
          error.message,
          `Cannot serve NBD on "${unixPath}": another process answers on it; ` +
            "is `dm-remap serve` already running?",
        );
        return true;
      },
    );
    const conn = await Deno.connect({ transport: "unix", path: unixPath });
    conn.close();
    (await other.accept()).close();
  } finally {
    other.close();
    await removeDirOf(unixPath);
  }
});

Deno.test("serveNbd refuses to replace a file that is not a socket", async () => {
  const unixPath = await tempSocketPath();
  try {
    await Deno.writeTextFile(unixPath, "precious");
    await assert.rejects(
      serveNbd({
        device: new ScriptedDevice(SIZE_BYTES),
        exportName: "d",
        preferredBlockBytes: 512,
        unixPath,
      }),
      ListenError,
    );
    assert.equal(await Deno.readTextFile(unixPath), "precious");
  } finally {
    await removeDirOf(unixPath);
  }
});

Deno.test("serveNbd on a TCP port in use names the port, and leaves its Unix socket unclaimed", async () => {
  const unixPath = await tempSocketPath();
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await assert.rejects(
      serveNbd({
        device: new ScriptedDevice(SIZE_BYTES),
        exportName: "d",
        preferredBlockBytes: 512,
        unixPath,
        tcp: { hostname: "127.0.0.1", port: taken.addr.port },
      }),
      (error) => {
        assert.ok(error instanceof ListenError);
        assert.equal(
          error.message,
          `Cannot serve NBD on "127.0.0.1:${taken.addr.port}": address in use: another ` +
            "program listens there; stop it or choose another port",
        );
        return true;
      },
    );
    await assert.rejects(Deno.lstat(unixPath), Deno.errors.NotFound);
  } finally {
    taken.close();
    await removeDirOf(unixPath);
  }
});

/** Rows: options serveNbd must refuse before listening. */
const BAD_OPTIONS: { name: string; options: Partial<NbdServerOptions> }[] = [
  { name: "no address", options: {} },
  {
    name: "preferred block size not a power of two",
    options: { preferredBlockBytes: 1000, tcp: { port: 0 } },
  },
  {
    name: "preferred block size under 512",
    options: { preferredBlockBytes: 256, tcp: { port: 0 } },
  },
  {
    name: "export name over 4096 bytes",
    options: { exportName: "x".repeat(4097), tcp: { port: 0 } },
  },
];

for (const { name, options } of BAD_OPTIONS) {
  Deno.test(`serveNbd throws UsageError for ${name}`, async () => {
    await assert.rejects(
      serveNbd({
        device: new ScriptedDevice(SIZE_BYTES),
        exportName: "d",
        preferredBlockBytes: 4096,
        ...options,
      }),
      UsageError,
    );
  });
}

Deno.test("serveNbd close() lets a request in flight finish and be answered before closing", async () => {
  const slow = gate();
  await withServer(async ({ server, connect, device }) => {
    device.hook = (call) => call.op === "read" ? slow.promise : undefined;
    const client = await connect();
    await negotiate(client);
    client.write(encodeRequest({ type: 0, cookie: 5, length: 512 }));
    for (let turn = 0; turn < 20 && device.active === 0; turn++) await settle();
    assert.equal(device.active, 1, "the read reached the device");
    let closed = false;
    const closing = server.close().then(() => closed = true);
    await settle();
    assert.equal(closed, false, "close() waits for the read");
    await assert.rejects(
      Deno.connect({ transport: "unix", path: server.unixPath! }),
      "no longer accepting",
    );
    slow.open();
    await closing;
    assert.deepEqual(await readSimpleReply(client), { error: 0, cookie: 5n });
    assert.deepEqual(await client.readExact(512), new Uint8Array(512));
    await expectClosed(client);
  });
});

Deno.test("serveNbd close() closes connections still in the handshake", async () => {
  await withServer(async ({ server, connect }) => {
    const client = await connect();
    await client.readExact(18); // The greeting; then the client stalls.
    await server.close();
    await expectClosed(client);
    assert.equal(server.connectionCount, 0);
  });
});

Deno.test("serveNbd closes a connection that does not finish the handshake in time, with a log line", async () => {
  await withServer(async ({ connect, log }) => {
    const client = await connect();
    await client.readExact(18);
    await expectClosed(client);
    assert.ok(log.some((line) => /no export chosen within 50 ms/.test(line)), log.join("\n"));
  }, { handshakeTimeoutMs: 50 });
});

Deno.test("serveNbd refuses connections beyond NBD_CONNECTIONS_MAX and serves again when one closes", async () => {
  await withServer(async ({ server, connect, log, conns }) => {
    const clients: WireClient[] = [];
    for (let index = 0; index < NBD_CONNECTIONS_MAX; index++) {
      const client = await connect();
      await client.readExact(18);
      clients.push(client);
    }
    const refused = await connect();
    await expectClosed(refused);
    assert.ok(log.some((line) => /refused a connection/.test(line)));
    conns[0]!.close();
    for (let turn = 0; turn < 1000 && server.connectionCount >= NBD_CONNECTIONS_MAX; turn++) {
      await settle();
    }
    assert.equal(
      server.connectionCount,
      NBD_CONNECTIONS_MAX - 1,
      "the closed connection was noticed",
    );
    const accepted = await connect();
    await negotiate(accepted);
  });
});

Deno.test("serveNbd ends only the connection that sends a bad request magic, with a log line", async () => {
  await withServer(async ({ connect, log }) => {
    const good = await connect();
    const bad = await connect();
    await negotiate(good);
    await negotiate(bad);
    bad.write(encodeRequest({ type: 0, cookie: 1, length: 512, magic: 0xdeadbeef }));
    await expectClosed(bad);
    assert.ok(log.some((line) => /bad magic 0xdeadbeef/.test(line)), log.join("\n"));
    good.write(encodeRequest({ type: 3, cookie: 2 }));
    assert.deepEqual(await readSimpleReply(good), { error: 0, cookie: 2n });
  });
});

Deno.test("serveNbd shares one device across connections: a write on one is read on another", async () => {
  await withServer(async ({ connect }) => {
    const [writer, reader] = [await connect(), await connect()];
    await negotiate(writer);
    await negotiate(reader, { structured: true });
    writer.write(
      encodeRequest({ type: 1, cookie: 1, flags: 1, payload: new Uint8Array(512).fill(3) }),
    );
    assert.equal((await readSimpleReply(writer)).error, 0);
    reader.write(encodeRequest({ type: 0, cookie: 2, length: 512 }));
    const header = await reader.readExact(20);
    assert.equal(new DataView(header.buffer).getUint16(6), 1, "OFFSET_DATA");
    const payload = await reader.readExact(8 + 512);
    assert.deepEqual(payload.subarray(8), new Uint8Array(512).fill(3));
  });
});

Deno.test("serveNbd close() gives up on a client that stops reading replies after closeTimeoutMs", async () => {
  await withServer(async ({ server, connect, log }) => {
    const client = await connect();
    await negotiate(client);
    // 64 MiB of read replies that the client never reads: the socket fills up.
    for (let cookie = 0; cookie < 64; cookie++) {
      client.write(
        encodeRequest({ type: 0, cookie, offset: (cookie % 4) * 1024 * 1024, length: 1024 * 1024 }),
      );
    }
    for (let turn = 0; turn < 20; turn++) await settle();
    const startedMs = performance.now();
    await server.close();
    const tookMs = performance.now() - startedMs;
    assert.ok(tookMs >= 150 && tookMs < 5000, `close() took ${tookMs} ms`);
    assert.ok(log.some((line) => /replies not taken within 200 ms/.test(line)), log.join("\n"));
  }, { closeTimeoutMs: 200 });
});

Deno.test("serveNbd lets an AssertionError from the device crash the process", async () => {
  const unixPath = await tempSocketPath();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./_crash_server.ts", import.meta.url).pathname, unixPath],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let stdout = "";
    while (!stdout.includes("ready")) {
      const { value, done } = await reader.read();
      if (done) break;
      stdout += value;
    }
    reader.releaseLock();
    assert.match(stdout, /ready/);
    const conn = await Deno.connect({ transport: "unix", path: unixPath });
    try {
      const client = socketClient(conn);
      await negotiate(client);
      client.write(encodeRequest({ type: 1, cookie: 1, payload: new Uint8Array(512) }));
      const status = await child.status;
      assert.notEqual(status.code, 0, "the process died");
      const stderr = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
      assert.match(stderr, /AssertionError: test invariant broken by the device/);
    } finally {
      conn.close();
    }
  } finally {
    clearTimeout(killer);
    await child.stdout.cancel().catch(() => {});
    await removeDirOf(unixPath);
  }
});

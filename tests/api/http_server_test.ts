/**
 * Serving the API on a Unix socket and on TCP, and reading it with
 * `fetchStatus()` as `dm-remap status` does.
 *
 * Method: real listeners in a fresh temporary directory per test, always
 * closed and removed in `finally`. Stale sockets are made by a child Deno
 * process that exits while listening, as a killed server would.
 */

import assert from "node:assert/strict";
import { createApp } from "../../mod/api/app.ts";
import { fetchStatus, StatusRequestError } from "../../mod/api/client.ts";
import { ApiListenError, serveApi } from "../../mod/api/http_server.ts";
import type { StatusSource } from "../../mod/api/status.ts";
import { UsageError } from "../../mod/errors.ts";
import { fakeSource, statusFixture } from "./fixtures.ts";

async function withTempDir(test: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-api-" });
  try {
    await test(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Leaves a socket file that nothing listens on, as a server killed with SIGKILL does. */
async function makeStaleSocket(path: string): Promise<void> {
  const code = `Deno.listen({ transport: "unix", path: ${JSON.stringify(path)} }); Deno.exit(0);`;
  const output = await new Deno.Command(Deno.execPath(), { args: ["eval", code], stderr: "piped" })
    .output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  assert.ok((await Deno.lstat(path)).isSocket, "the stale socket file is left behind");
}

/** A TCP port that nothing listens on (bound, then released). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

function assertStatusError(error: unknown, target: string, detail: string | RegExp): true {
  assert.ok(error instanceof StatusRequestError, String(error));
  assert.equal(error.target, target);
  const expected = `Cannot read the status from "${target}": `;
  assert.ok(error.message.startsWith(expected), error.message);
  if (typeof detail === "string") assert.equal(error.message.slice(expected.length), detail);
  else assert.match(error.message.slice(expected.length), detail);
  return true;
}

Deno.test("serveApi() serves on a Unix socket, and close() removes the socket file", async () => {
  await withTempDir(async (dir) => {
    const unixPath = `${dir}/api.sock`;
    const status = statusFixture();
    const server = await serveApi(createApp(fakeSource(status)), { unixPath });
    try {
      assert.deepEqual(server.addresses, [{ transport: "unix", path: unixPath }]);
      assert.ok((await Deno.lstat(unixPath)).isSocket);
      assert.deepEqual(await fetchStatus(unixPath), status);
    } finally {
      await server.close();
    }
    assert.equal(await exists(unixPath), false);
  });
});

Deno.test("serveApi() serves on TCP port 0 and reports the port it bound, on loopback by default", async () => {
  const status = statusFixture();
  const server = await serveApi(createApp(fakeSource(status)), { tcp: { port: 0 } });
  try {
    const [address] = server.addresses;
    assert.ok(address?.transport === "tcp");
    assert.equal(address.hostname, "127.0.0.1");
    assert.ok(address.port > 0);
    assert.equal(address.url, `http://127.0.0.1:${address.port}`);
    assert.deepEqual(await fetchStatus(address.url), status);
    assert.deepEqual(await fetchStatus(`${address.url}/`), status);
    const health = await fetch(`${address.url}/api/v1/health`);
    assert.equal(health.status, 200);
    assert.equal((await health.json()).status, "ok");
  } finally {
    await server.close();
  }
});

Deno.test("serveApi() serves on a Unix socket and TCP at once, socket first", async () => {
  await withTempDir(async (dir) => {
    const unixPath = `${dir}/api.sock`;
    const server = await serveApi(createApp(fakeSource()), {
      unixPath,
      tcp: { hostname: "127.0.0.1", port: 0 },
    });
    try {
      const [unix, tcp] = server.addresses;
      assert.deepEqual(unix, { transport: "unix", path: unixPath });
      assert.ok(tcp?.transport === "tcp");
      assert.equal((await fetchStatus(unixPath)).setup.name, "vault");
      assert.equal((await fetchStatus(tcp.url)).setup.name, "vault");
    } finally {
      await server.close();
    }
    assert.equal(await exists(unixPath), false);
  });
});

Deno.test("serveApi() close() can be called twice and stops answering", async () => {
  const server = await serveApi(createApp(fakeSource()), { tcp: { port: 0 } });
  const address = server.addresses[0]!;
  assert.ok(address.transport === "tcp");
  await server.close();
  await server.close();
  await assert.rejects(
    fetchStatus(address.url),
    (error) => assertStatusError(error, address.url, /^connection refused; /),
  );
});

Deno.test("serveApi() replaces a stale socket file that nothing answers on", async () => {
  await withTempDir(async (dir) => {
    const unixPath = `${dir}/api.sock`;
    await makeStaleSocket(unixPath);
    const server = await serveApi(createApp(fakeSource()), { unixPath });
    try {
      assert.equal((await fetchStatus(unixPath)).setup.name, "vault");
    } finally {
      await server.close();
    }
  });
});

Deno.test("serveApi() refuses a socket another server answers on, and leaves that server alone", async () => {
  await withTempDir(async (dir) => {
    const unixPath = `${dir}/api.sock`;
    const first = await serveApi(createApp(fakeSource()), { unixPath });
    try {
      await assert.rejects(serveApi(createApp(fakeSource()), { unixPath }), (error) => {
        assert.ok(error instanceof ApiListenError);
        assert.equal(error.address, unixPath);
        assert.equal(
          error.message,
          `Cannot serve the status API on "${unixPath}": another process answers on it; ` +
            "is `dm-remap serve` already running?",
        );
        return true;
      });
      assert.equal(
        (await fetchStatus(unixPath)).setup.name,
        "vault",
        "the first server still answers",
      );
    } finally {
      await first.close();
    }
  });
});

Deno.test("serveApi() refuses a path that is not a socket, and leaves the file alone", async () => {
  await withTempDir(async (dir) => {
    const unixPath = `${dir}/notes.txt`;
    await Deno.writeTextFile(unixPath, "keep me");
    await assert.rejects(serveApi(createApp(fakeSource()), { unixPath }), (error) => {
      assert.ok(error instanceof ApiListenError);
      assert.match(
        error.message,
        /: the path exists and is not a socket; move it away or choose another path$/,
      );
      return true;
    });
    assert.equal(await Deno.readTextFile(unixPath), "keep me");
  });
});

Deno.test("serveApi() on a TCP port in use fails with ApiListenError and leaves nothing listening", async () => {
  await withTempDir(async (dir) => {
    const unixPath = `${dir}/api.sock`;
    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      await assert.rejects(
        serveApi(createApp(fakeSource()), { unixPath, tcp: { port: taken.addr.port } }),
        (error) => {
          assert.ok(error instanceof ApiListenError);
          assert.equal(error.address, `127.0.0.1:${taken.addr.port}`);
          assert.equal(
            error.message,
            `Cannot serve the status API on "127.0.0.1:${taken.addr.port}": address in use: ` +
              "another program listens there; stop it or choose another port",
          );
          return true;
        },
      );
      assert.equal(
        await exists(unixPath),
        false,
        "the socket bound before the failure is closed and removed",
      );
    } finally {
      taken.close();
    }
  });
});

Deno.test("serveApi() without a socket path or TCP address is a UsageError", async () => {
  await assert.rejects(serveApi(createApp(fakeSource()), {}), UsageError);
});

Deno.test("fetchStatus() names the socket and the fix when it cannot reach a server", async () => {
  await withTempDir(async (dir) => {
    const missing = `${dir}/missing.sock`;
    const stale = `${dir}/stale.sock`;
    const file = `${dir}/file.txt`;
    await makeStaleSocket(stale);
    await Deno.writeTextFile(file, "");
    const closedUrl = `http://127.0.0.1:${freePort()}`;
    const rows: [scenario: string, target: string, detail: string | RegExp][] = [
      ["no socket file", missing, "no such socket; is `dm-remap serve` running?"],
      ["stale socket", stale, "connection refused; is `dm-remap serve` running?"],
      [
        "not a socket",
        file,
        "the path is not a socket; pass the socket that `dm-remap serve` listens on",
      ],
      ["closed TCP port", closedUrl, "connection refused; is `dm-remap serve` running?"],
    ];
    for (const [scenario, target, detail] of rows) {
      await assert.rejects(
        fetchStatus(target),
        (error) => assertStatusError(error, target, detail),
        scenario,
      );
    }
  });
});

Deno.test("fetchStatus() reports the API's error answer with its HTTP status", async () => {
  await withTempDir(async (dir) => {
    const unixPath = `${dir}/api.sock`;
    const source: StatusSource = {
      status() {
        throw new Error('Cannot read "/dev/sdb": offset 0, length 512: EIO');
      },
      remaps() {
        return { total: 0, entries: [] };
      },
      events: () => [],
    };
    const server = await serveApi(createApp(source), { unixPath });
    try {
      await assert.rejects(fetchStatus(unixPath), (error) => {
        assertStatusError(
          error,
          unixPath,
          'HTTP 500: Cannot read "/dev/sdb": offset 0, length 512: EIO',
        );
        assert.equal((error as StatusRequestError).httpStatus, 500);
        return true;
      });
    } finally {
      await server.close();
    }
  });
});

Deno.test("fetchStatus() refuses an answer that is not a dm-remap status", async () => {
  await withTempDir(async (dir) => {
    const unixPath = `${dir}/other.sock`;
    const rows: [body: string, detail: string][] = [
      [
        '{"hello":"world"}',
        "the answer is not a dm-remap status; is another service listening there?",
      ],
      ["<html>", "the answer is not JSON; is another service listening there?"],
    ];
    for (const [body, detail] of rows) {
      const other = Deno.serve(
        { transport: "unix", path: unixPath, onListen() {} },
        () => new Response(body),
      );
      try {
        await assert.rejects(
          fetchStatus(unixPath),
          (error) => assertStatusError(error, unixPath, detail),
          body,
        );
      } finally {
        await other.shutdown();
      }
    }
  });
});

Deno.test("fetchStatus() gives up after timeoutMs when the server does not answer", async () => {
  await withTempDir(async (dir) => {
    const unixPath = `${dir}/slow.sock`;
    const { promise: released, resolve: release } = Promise.withResolvers<void>();
    const slow = Deno.serve({ transport: "unix", path: unixPath, onListen() {} }, async () => {
      await released;
      return new Response("late");
    });
    try {
      await assert.rejects(
        fetchStatus(unixPath, { timeoutMs: 100 }),
        (error) =>
          assertStatusError(
            error,
            unixPath,
            "no answer within 100 ms; is `dm-remap serve` responsive?",
          ),
      );
    } finally {
      release();
      await slow.shutdown();
    }
  });
});

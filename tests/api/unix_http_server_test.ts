/**
 * The API's own HTTP/1.1 server on its Unix socket: it hands the app each
 * request with the peer's kernel credentials, answers one request per
 * connection, and refuses what it does not take (a bad request line or
 * header, a head or body over its limit, a chunked body) with a 4xx JSON
 * error before the app sees it. Random bytes never crash it or go unanswered
 * without a close.
 *
 * Method: a real socket in a temporary directory, raw bytes written with
 * `Deno.connect`, the whole answer read until the server closes. The random
 * bytes come from fast-check with a printed seed (`DM_REMAP_FUZZ_SEED`).
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { API_REQUEST_BODY_BYTES_MAX, API_REQUEST_HEAD_BYTES_MAX } from "../../mod/constants.ts";
import { UnixHttpServer, type UnixPeer } from "../../mod/api/unix_http_server.ts";

/** Serves `handler` on a fresh socket for the duration of `test`. */
async function withServer(
  handler: (request: Request, env: UnixPeer) => Response | Promise<Response>,
  test: (path: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-unix-http-" });
  const path = `${dir}/api.sock`;
  const server = UnixHttpServer.listen(path, handler);
  try {
    await test(path);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Sends raw bytes and reads everything until the server closes. */
async function exchange(path: string, bytes: Uint8Array | string): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
    // The server may answer and close before reading everything (a refused head): ignore that.
    await conn.write(data).catch(() => {});
    // The end of the request: a server still reading sees the end of the stream.
    await conn.closeWrite().catch(() => {});
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(65536);
    for (;;) {
      const count = await conn.read(buffer).catch(() => null);
      if (count === null) break;
      chunks.push(buffer.slice(0, count));
    }
    return new TextDecoder().decode(
      chunks.reduce((all, chunk) => new Uint8Array([...all, ...chunk]), new Uint8Array()),
    );
  } finally {
    conn.close();
  }
}

function statusOf(answer: string): number {
  return Number(/^HTTP\/1\.1 (\d{3}) /.exec(answer)?.[1]);
}

Deno.test("UnixHttpServer hands the app the request and the peer's credentials", async () => {
  const seen: { method: string; url: string; body: string; env: UnixPeer }[] = [];
  await withServer(async (request, env) => {
    seen.push({ method: request.method, url: request.url, body: await request.text(), env });
    return Response.json({ ok: true }, { headers: { "x-test": "1" } });
  }, async (path) => {
    const answer = await exchange(
      path,
      "POST /api/v1/stop?x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}",
    );
    assert.equal(statusOf(answer), 200);
    assert.match(answer, /\r\nx-test: 1\r\n/);
    assert.match(answer, /\r\nConnection: close\r\n\r\n\{"ok":true\}$/);
    const proxyForm = await exchange(path, "GET http://localhost/api/v1/status HTTP/1.1\r\n\r\n");
    assert.equal(statusOf(proxyForm), 200);
  });
  assert.equal(seen.length, 2);
  assert.deepEqual(
    seen.map(({ method, url, body }) => ({ method, url, body })),
    [
      { method: "POST", url: "http://localhost/api/v1/stop?x=1", body: "{}" },
      { method: "GET", url: "http://localhost/api/v1/status", body: "" },
    ],
  );
  assert.equal(seen[0]!.env.peer.pid, Deno.pid);
  assert.equal(seen[0]!.env.peer.uid, Deno.uid());
  assert.equal(seen[0]!.env.peer.gid, Deno.gid());
});

Deno.test("UnixHttpServer refuses malformed or oversized requests with a JSON 4xx", async () => {
  let reached = 0;
  await withServer(() => {
    reached++;
    return new Response("ok");
  }, async (path) => {
    const rows: [what: string, request: string, status: number][] = [
      ["no request line", "\r\n\r\n", 400],
      ["a relative target", "GET api HTTP/1.1\r\n\r\n", 400],
      ["HTTP/2 on the wire", "GET / HTTP/2\r\n\r\n", 400],
      ["a header without a colon", "GET / HTTP/1.1\r\nbroken\r\n\r\n", 400],
      ["a header name with a space", "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400],
      ["a body on a GET", "GET / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 400],
      ["a chunked body", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411],
      ["a non-numeric length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400],
      [
        "a body over the limit",
        `POST / HTTP/1.1\r\nContent-Length: ${API_REQUEST_BODY_BYTES_MAX + 1}\r\n\r\n`,
        413,
      ],
      [
        "a head over the limit",
        `GET / HTTP/1.1\r\nX: ${"a".repeat(API_REQUEST_HEAD_BYTES_MAX)}\r\n\r\n`,
        431,
      ],
    ];
    for (const [what, request, status] of rows) {
      const answer = await exchange(path, request);
      assert.equal(statusOf(answer), status, `${what}: ${answer.slice(0, 80)}`);
      const body = answer.slice(answer.indexOf("\r\n\r\n") + 4);
      assert.equal(typeof JSON.parse(body).error, "string", what);
    }
  });
  assert.equal(reached, 0, "the app never sees a refused request");
});

Deno.test("UnixHttpServer answers HEAD without a body, and a client that leaves gets nothing", async () => {
  await withServer(() => Response.json({ a: 1 }), async (path) => {
    const answer = await exchange(path, "HEAD / HTTP/1.1\r\n\r\n");
    assert.equal(statusOf(answer), 200);
    assert.ok(answer.endsWith("\r\n\r\n"), answer);
    assert.equal(await exchange(path, "GET / HTT"), "");
  });
});

Deno.test("UnixHttpServer survives random bytes: every answer is HTTP or a close", async () => {
  const seed = Number(Deno.env.get("DM_REMAP_FUZZ_SEED") ?? Date.now() % 2 ** 31);
  console.log(`Unix HTTP fuzz seed ${seed} (DM_REMAP_FUZZ_SEED=${seed} replays it)`);
  await withServer(() => new Response("ok"), async (path) => {
    const line = fc.constantFrom(
      "GET / HTTP/1.1",
      "POST /api/v1/stop HTTP/1.1",
      "Content-Length: 3",
      "Content-Length: 99999999",
      "Transfer-Encoding: chunked",
      "Host: x",
      "",
    );
    const request = fc.oneof(
      fc.uint8Array({ maxLength: 300 }),
      fc.array(fc.oneof(line, fc.string({ maxLength: 40 })), { maxLength: 8 }).map((lines) =>
        new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\nabc")
      ),
    );
    await fc.assert(
      fc.asyncProperty(request, async (bytes) => {
        const answer = await exchange(path, bytes);
        if (answer === "") return; // Closed: the stream ended before the request did.
        const status = statusOf(answer);
        assert.ok(status >= 200 && status < 500, answer.slice(0, 120));
      }),
      { seed, numRuns: 150 },
    );
    // Still serving after all that.
    assert.equal(statusOf(await exchange(path, "GET / HTTP/1.1\r\n\r\n")), 200);
  });
});

Deno.test("UnixHttpServer.close() ends a connection whose request has not arrived, at once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-unix-http-" });
  const path = `${dir}/api.sock`;
  const server = UnixHttpServer.listen(path, () => new Response("ok"));
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    await conn.write(new TextEncoder().encode("GET / HTTP/1.1\r\n"));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const startedMs = Date.now();
    await server.close();
    assert.ok(Date.now() - startedMs < 2_000, "the stop does not wait for the slow client");
    assert.equal(await conn.read(new Uint8Array(16)).catch(() => null), null);
  } finally {
    conn.close();
    await Deno.remove(dir, { recursive: true });
  }
});

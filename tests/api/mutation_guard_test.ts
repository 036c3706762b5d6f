/**
 * The guard on the API's mutations: every method but GET, HEAD and OPTIONS
 * needs the bearer token, or the Unix socket and a peer that is root or in
 * the socket's group; a TCP address beyond loopback needs a token to start.
 *
 * Method: first the middleware alone through `app.request()`, with a fake
 * control that records what it was asked, as a table of requests and the
 * status each must get; then a real setup served by `SetupService`, with a
 * metadata copy broken on its spare file, asked to repair it over TCP and
 * over the Unix socket by real `curl` processes that `setpriv` turns into
 * uid 65534, with and without the socket's group, and as root. A refused
 * request must leave the broken copy broken.
 */

import assert from "node:assert/strict";
import { createApp } from "../../mod/api/app.ts";
import type { MetadataRepair, SetupControl } from "../../mod/api/control.ts";
import { serveApi } from "../../mod/api/http_server.ts";
import { COPY_SECTORS, SECTOR_BYTES } from "../../mod/constants.ts";
import { UsageError } from "../../mod/errors.ts";
import { openFileDevice } from "../../mod/device/file_device.ts";
import { readCopies } from "../../mod/metadata/spare_store.ts";
import type { PeerCredentials } from "../../mod/sys/syscalls.ts";
import { serveSetup } from "../service/served_setup.ts";
import { fakeSource } from "./fixtures.ts";

const TOKEN = "correct horse battery staple";
const GROUP = 4321;

function recordingControl(): SetupControl & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    repairMetadata(): Promise<MetadataRepair> {
      calls.push("repair");
      return Promise.resolve({ spares: [], repairedCopies: 0 });
    },
    requestStop(options) {
      calls.push(`stop detach=${options.detach} force=${options.force}`);
      return { stopping: true, pid: 1, kernelDevice: null };
    },
    reload() {
      calls.push("reload");
      return Promise.resolve({ file: "/x.yaml", reloaded: true, applied: [], needsRestart: [] });
    },
    addSpare(request) {
      calls.push(`add ${request.path} force=${request.force}`);
      return Promise.resolve({ index: 2, path: request.path, slotCount: 16 });
    },
    removeSpare(request) {
      calls.push(`remove ${request.path}`);
      return Promise.resolve({
        spareIndex: 0,
        state: "running",
        blocksTotal: 10,
        blocksMoved: 0,
        blocksFailed: 0,
        startedMs: 0,
        rateBlocksPerS: 0,
        etaSeconds: null,
      });
    },
  };
}

function peer(overrides: Partial<PeerCredentials>): { peer: PeerCredentials } {
  return { peer: { pid: 99, uid: 1000, gid: 1000, groups: [], ...overrides } };
}

Deno.test("createApp() guards every mutation: token, or root or the group over the socket", async () => {
  const control = recordingControl();
  const app = createApp(fakeSource(), { control, guard: { token: TOKEN, socketGid: GROUP } });
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const rows: [what: string, init: RequestInit, env: object | undefined, status: number][] = [
    ["no token over TCP", {}, undefined, 401],
    ["a wrong token", { headers: bearer("nope") }, undefined, 401],
    ["the token with a suffix", { headers: bearer(`${TOKEN}x`) }, undefined, 401],
    ["a prefix of the token", { headers: bearer(TOKEN.slice(0, 5)) }, undefined, 401],
    ["Basic instead of Bearer", { headers: { authorization: `Basic ${TOKEN}` } }, undefined, 401],
    ["the token", { headers: bearer(TOKEN) }, undefined, 200],
    ["a socket peer neither root nor in the group", {}, peer({}), 403],
    ["a socket peer with the group as primary", {}, peer({ gid: GROUP }), 200],
    ["a socket peer with the group as supplementary", {}, peer({ groups: [7, GROUP] }), 200],
    ["root over the socket", {}, peer({ uid: 0, gid: 0 }), 200],
    ["a wrong token from root over the socket", { headers: bearer("nope") }, peer({ uid: 0 }), 401],
  ];
  const routes: [path: string, call: string][] = [
    ["/api/v1/metadata/repair", "repair"],
    ["/api/v1/reload", "reload"],
  ];
  for (
    const [[what, init, env, status], [path, call]] of rows.flatMap((row) =>
      routes.map((route) => [row, route] as const)
    )
  ) {
    control.calls.length = 0;
    const response = await app.request(path, { method: "POST", ...init }, env);
    assert.equal(response.status, status, `${path}: ${what}`);
    const body = await response.json();
    if (status === 200) assert.deepEqual(control.calls, [call], what);
    else {
      assert.deepEqual(control.calls, [], `${what}: the control is not called`);
      assert.match(body.error, /^Cannot change the setup: /, what);
    }
    if (status === 401) {
      assert.equal(response.headers.get("www-authenticate"), 'Bearer realm="dm-remap"', what);
    }
  }
});

Deno.test("createApp() guards the spare pool's routes and hands them their options", async () => {
  const control = recordingControl();
  const app = createApp(fakeSource(), { control, guard: { token: TOKEN } });
  const body = (value: unknown) => JSON.stringify(value);
  for (const path of ["/api/v1/spares/add", "/api/v1/spares/remove"]) {
    const refused = await app.request(path, { method: "POST", body: body({ path: "/dev/x" }) });
    assert.equal(refused.status, 401, path);
  }
  assert.deepEqual(control.calls, [], "the control is not called without the token");
  const headers = { authorization: `Bearer ${TOKEN}` };
  const added = await app.request("/api/v1/spares/add", {
    method: "POST",
    headers,
    body: body({ path: "/dev/x", force: true }),
  });
  assert.equal(added.status, 200);
  assert.deepEqual(await added.json(), { index: 2, path: "/dev/x", slotCount: 16 });
  const removed = await app.request("/api/v1/spares/remove", {
    method: "POST",
    headers,
    body: body({ path: "/dev/y" }),
  });
  assert.equal(removed.status, 202);
  assert.deepEqual(control.calls, ["add /dev/x force=true", "remove /dev/y"]);
  for (const bad of [{}, { path: 3 }, { path: "/dev/x", other: 1 }]) {
    const refused = await app.request("/api/v1/spares/add", {
      method: "POST",
      headers,
      body: body(bad),
    });
    assert.equal(refused.status, 400, JSON.stringify(bad));
  }
});

Deno.test("createApp() guards routes added after it, and every method but GET, HEAD, OPTIONS", async () => {
  const app = createApp(fakeSource(), { guard: { token: TOKEN } });
  let reached = 0;
  app.post("/api/v1/later", (c) => {
    reached++;
    return c.json({ ok: true });
  });
  app.on(["PUT", "DELETE", "PATCH"], "/api/v1/later", (c) => {
    reached++;
    return c.json({ ok: true });
  });
  for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
    const refused = await app.request("/api/v1/later", { method });
    assert.equal(refused.status, 401, method);
    const allowed = await app.request("/api/v1/later", {
      method,
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(allowed.status, 200, method);
  }
  assert.equal(reached, 4);
  for (const method of ["GET", "HEAD"]) {
    assert.equal((await app.request("/api/v1/status", { method })).status, 200, method);
  }
});

Deno.test("createApp() without a token refuses every bearer token, and TCP mutations", async () => {
  const app = createApp(fakeSource(), { control: recordingControl() });
  const tries: Record<string, string>[] = [{}, { authorization: "Bearer " }, {
    authorization: "Bearer x",
  }];
  for (const headers of tries) {
    const response = await app.request("/api/v1/stop", { method: "POST", headers });
    assert.equal(response.status, 401, JSON.stringify(headers));
  }
});

Deno.test("serveApi() refuses TCP beyond loopback without a token, and serves it with one", async () => {
  const app = createApp(fakeSource());
  for (const hostname of ["0.0.0.0", "::", "192.0.2.1"]) {
    await assert.rejects(
      serveApi(app, { tcp: { hostname, port: 0 } }),
      (error: Error) => {
        assert.ok(error instanceof UsageError);
        assert.match(
          error.message,
          new RegExp(
            `^Cannot serve the status API on "${
              hostname.replaceAll(".", "\\.")
            }:0" without a token: .*set the API token \\(api\\.token\\), or bind 127\\.0\\.0\\.1$`,
          ),
        );
        return true;
      },
    );
  }
  for (const hostname of ["127.0.0.1", "127.0.0.2", "localhost"]) {
    const server = await serveApi(app, { tcp: { hostname, port: 0 } });
    await server.close();
  }
  const open = await serveApi(app, {
    tcp: { hostname: "0.0.0.0", port: 0 },
    tokenConfigured: true,
  });
  await open.close();
});

/** Runs curl as root, or as uid/gid 65534 with the given supplementary groups. */
async function curl(
  args: string[],
  as: "root" | { groups: number[] },
): Promise<{ status: number; body: string }> {
  const curlArgs = ["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20", ...args];
  const argv = as === "root" ? ["curl", ...curlArgs] : [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    ...(as.groups.length === 0 ? ["--clear-groups"] : [`--groups=${as.groups.join(",")}`]),
    "curl",
    ...curlArgs,
  ];
  const output = await new Deno.Command(argv[0]!, { args: argv.slice(1), stderr: "inherit" })
    .output();
  assert.equal(output.code, 0, `${argv.join(" ")} exits 0`);
  const text = new TextDecoder().decode(output.stdout);
  const newline = text.lastIndexOf("\n");
  return { status: Number(text.slice(newline + 1)), body: text.slice(0, newline) };
}

/** Overwrites metadata copy `copyIndex` of the spare file with garbage. */
async function breakCopy(sparePath: string, copyIndex: number): Promise<void> {
  const file = await Deno.open(sparePath, { write: true });
  try {
    await file.seek(COPY_SECTORS[copyIndex]! * SECTOR_BYTES, Deno.SeekMode.Start);
    await file.write(new Uint8Array(SECTOR_BYTES).fill(0xee));
    await file.syncData();
  } finally {
    file.close();
  }
}

async function validCopies(sparePath: string): Promise<boolean[]> {
  const device = await openFileDevice(sparePath, { direct: false, readOnly: true });
  try {
    return (await readCopies(device)).map((copy) => copy.valid);
  } finally {
    await device.close();
  }
}

Deno.test("A served setup repairs metadata only for the token, root or the socket's group", async () => {
  const served = await serveSetup({
    remapBlocks: [3, 4],
    api: { tcp: { hostname: "127.0.0.1", port: 0 }, token: TOKEN, socketGroup: GROUP },
  });
  try {
    const socketInfo = await Deno.stat(served.apiSocket);
    assert.equal(socketInfo.mode! & 0o777, 0o660);
    assert.equal(socketInfo.gid, GROUP);
    // Let uid 65534 reach the socket (the directories are 0700), so the peer check, not the
    // file mode, is what refuses it.
    await Deno.chmod(served.dir, 0o755);
    await Deno.chmod(`${served.dir}/run`, 0o755);
    await Deno.chmod(served.apiSocket, 0o666);
    const url = served.service.apiAddresses[1]!;
    const repairUrl = `${url}/api/v1/metadata/repair`;
    const overSocket = [
      "--unix-socket",
      served.apiSocket,
      "http://localhost/api/v1/metadata/repair",
    ];

    await breakCopy(served.sparePath, 2);
    assert.deepEqual(await validCopies(served.sparePath), [true, true, false, true, true]);
    const refused: [string, string[], "root" | { groups: number[] }, number][] = [
      ["TCP without a token", ["-X", "POST", repairUrl], "root", 401],
      [
        "TCP with a wrong token",
        ["-X", "POST", "-H", "Authorization: Bearer no", repairUrl],
        "root",
        401,
      ],
      ["the socket as uid 65534", ["-X", "POST", ...overSocket], { groups: [] }, 403],
      [
        "the socket as uid 65534 in other groups",
        ["-X", "POST", ...overSocket],
        { groups: [100] },
        403,
      ],
    ];
    for (const [what, args, as, status] of refused) {
      const answer = await curl(args, as);
      assert.equal(answer.status, status, `${what}: ${answer.body}`);
      assert.match(JSON.parse(answer.body).error, /^Cannot change the setup: /, what);
      assert.deepEqual(await validCopies(served.sparePath), [true, true, false, true, true], what);
    }
    // Reading stays open to whoever can connect.
    const read = await curl(["--unix-socket", served.apiSocket, "http://localhost/api/v1/status"], {
      groups: [],
    });
    assert.equal(read.status, 200);
    assert.equal(JSON.parse(read.body).counters.remaps, 2);

    const allowed: [string, string[], "root" | { groups: number[] }][] = [
      ["the socket as uid 65534 in the group", ["-X", "POST", ...overSocket], { groups: [GROUP] }],
      ["the socket as root", ["-X", "POST", ...overSocket], "root"],
      [
        "TCP with the token",
        ["-X", "POST", "-H", `Authorization: Bearer ${TOKEN}`, repairUrl],
        "root",
      ],
    ];
    for (const [what, args, as] of allowed) {
      await breakCopy(served.sparePath, 4);
      const answer = await curl(args, as);
      assert.equal(answer.status, 200, `${what}: ${answer.body}`);
      const repair = JSON.parse(answer.body) as MetadataRepair;
      const copies = repair.spares[0]!.copies;
      assert.equal(copies[4]!.valid, false, what);
      assert.equal(copies[4]!.repaired, true, what);
      assert.deepEqual(await validCopies(served.sparePath), [true, true, true, true, true], what);
    }
    const status = served.service.status();
    assert.equal(status.spares[0]!.validCopies, 5);
    // Each allowed repair rewrote a copy, and each is an event (and so an alert).
    assert.equal(status.events["metadata-repaired"], allowed.length);
  } finally {
    await served.close();
  }
});

Deno.test("POST /api/v1/stop over the socket as root hands the stop to whoever runs the service", async () => {
  const asked = Promise.withResolvers<{ detach: boolean }>();
  const served = await serveSetup({ onStopRequested: asked.resolve });
  try {
    const answer = await curl([
      "-X",
      "POST",
      "-H",
      "Content-Type: application/json",
      "--data",
      '{"detach": false}',
      "--unix-socket",
      served.apiSocket,
      "http://localhost/api/v1/stop",
    ], "root");
    assert.equal(answer.status, 202, answer.body);
    assert.deepEqual(JSON.parse(answer.body), {
      stopping: true,
      pid: Deno.pid,
      kernelDevice: null,
    });
    assert.deepEqual(await asked.promise, { detach: false });
    const bad = await curl([
      "-X",
      "POST",
      "--data",
      '{"detach": "yes"}',
      "--unix-socket",
      served.apiSocket,
      "http://localhost/api/v1/stop",
    ], "root");
    assert.equal(bad.status, 400);
    assert.equal(
      JSON.parse(bad.body).error,
      'Cannot stop the setup: "detach" must be true or false, got string',
    );
  } finally {
    await served.close();
  }
});

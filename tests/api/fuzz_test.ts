/**
 * Fuzzing the API's inputs: whatever a client sends (any method, path,
 * query, header or body, with or without the token, from root or not over
 * the socket), the app answers below 500, every error answer is a JSON
 * `{ error }`, and nothing throws out of the app.
 *
 * Method: fast-check builds requests from the API's own routes and
 * parameter names mixed with random text, huge and negative numbers and
 * JSON of wrong types, and sends them through `app.request()` over the
 * fixture status and a control that records what it is asked. The seed
 * comes from `DM_REMAP_FUZZ_SEED` or the clock and is printed, so a failure
 * replays with that seed.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { createApp } from "../../mod/api/app.ts";
import type { SetupControl } from "../../mod/api/control.ts";
import { API_OPERATIONS } from "../../mod/api/openapi.ts";
import { fakeSource, remapsFixture, statusFixture } from "./fixtures.ts";

const TOKEN = "fuzz-token";
const RUNS = 1_500;

const control: SetupControl = {
  repairMetadata: () => Promise.resolve({ spares: [], repairedCopies: 0 }),
  requestStop: () => ({ stopping: true, pid: 1, kernelDevice: null }),
  reload: () =>
    Promise.resolve({
      file: "/x.yaml",
      reloaded: false,
      applied: [],
      needsRestart: [],
      problems: "x",
    }),
  addSpare: (request) => Promise.resolve({ index: 1, path: request.path, slotCount: 16 }),
  removeSpare: () =>
    Promise.resolve({
      spareIndex: 0,
      state: "running",
      blocksTotal: 0,
      blocksMoved: 0,
      blocksFailed: 0,
      startedMs: 0,
      rateBlocksPerS: 0,
      etaSeconds: null,
    }),
};

const paths = API_OPERATIONS.map((op) => op.path);
const names = ["offset", "limit", "detach", "force", "setup", "name", "x"];

/** Numbers of every awkward kind, as text. */
const numberText = fc.oneof(
  fc.integer().map(String),
  fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map(String),
  fc.double().map(String),
  fc.constantFrom("", "-0", "1e9", "0x10", "007", " 1", "NaN", "Infinity", "9".repeat(400)),
);
const text = fc.oneof(fc.string(), fc.string({ unit: "grapheme" }), numberText);
const path = fc.oneof(
  fc.constantFrom(...paths),
  fc.tuple(fc.constantFrom(...paths), fc.webSegment()).map(([p, s]) => `${p}/${s}`),
  fc.webPath().map((p) => p.startsWith("/") ? p : `/${p}`),
  fc.constantFrom("/api/v1/setups/unknown", "/api/v1/status/../stop", "//api/v1/stop"),
);
const query = fc.array(fc.tuple(fc.constantFrom(...names), text), { maxLength: 4 });
const jsonValue = fc.oneof(
  fc.jsonValue(),
  fc.dictionary(fc.constantFrom(...names), fc.jsonValue(), { maxKeys: 3 }),
  fc.record({ detach: fc.jsonValue(), force: fc.jsonValue() }, { requiredKeys: [] }),
);
const body = fc.oneof(
  fc.constant(undefined),
  text,
  jsonValue.map((value) => JSON.stringify(value)),
);
const request = fc.record({
  method: fc.constantFrom("GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"),
  path,
  query,
  authorization: fc.oneof(
    fc.constant(undefined),
    fc.constant(`Bearer ${TOKEN}`),
    fc.string().map((s) => `Bearer ${s}`),
    fc.string(),
  ),
  contentType: fc.constantFrom(undefined, "application/json", "text/plain", "x/\u00ff"),
  body,
  peer: fc.oneof(
    fc.constant(undefined),
    fc.record({
      pid: fc.nat(),
      uid: fc.constantFrom(0, 1000, 65534),
      gid: fc.nat(70_000),
      groups: fc.array(fc.nat(70_000), { maxLength: 3 }),
    }),
  ),
});

type FuzzRequest = typeof request extends fc.Arbitrary<infer T> ? T : never;
const mutationExamples: [FuzzRequest][] = API_OPERATIONS
  .filter((op) => op.method === "post")
  .map((op) => [{
    method: "POST",
    path: op.path,
    query: [],
    authorization: `Bearer ${TOKEN}`,
    contentType: undefined,
    body: undefined,
    peer: undefined,
  }]);

Deno.test("createApp() answers any request below 500, with a JSON error for every refusal", async () => {
  const seed = Number(Deno.env.get("DM_REMAP_FUZZ_SEED") ?? Date.now() % 2 ** 31);
  console.log(`API fuzz seed ${seed} (DM_REMAP_FUZZ_SEED=${seed} replays it)`);
  const app = createApp(fakeSource(statusFixture(), remapsFixture(50)), {
    control,
    guard: { token: TOKEN, socketGid: 4321 },
  });
  let mutationsReached = 0;
  await fc.assert(
    fc.asyncProperty(request, async (r) => {
      const search = new URLSearchParams(r.query).toString();
      const headers = new Headers();
      if (r.authorization !== undefined) {
        try {
          headers.set("authorization", r.authorization);
        } catch {
          // Not a value HTTP can carry: no client could send it.
        }
      }
      if (r.contentType !== undefined) headers.set("content-type", r.contentType);
      const canHaveBody = r.method !== "GET" && r.method !== "HEAD";
      let url: URL;
      try {
        url = new URL(`http://localhost${r.path}${search === "" ? "" : `?${search}`}`);
      } catch {
        return; // Not a URL any client could request.
      }
      const response = await app.request(
        url,
        { method: r.method, headers, body: canHaveBody ? r.body : undefined },
        r.peer === undefined ? undefined : { peer: r.peer },
      );
      assert.ok(response.status < 500, `${r.method} ${url}: ${response.status}`);
      if (r.method === "POST" && response.status < 300) mutationsReached++;
      if (response.status >= 400 && r.method !== "HEAD") {
        const error = await response.json();
        assert.equal(typeof error.error, "string");
        assert.ok(error.error.length > 0);
      } else await response.body?.cancel();
    }),
    // Each mutation once with the token, so their handlers run whatever the seed draws.
    { seed, numRuns: RUNS, examples: mutationExamples },
  );
  // The fuzz reached the mutations' handlers, not only the guard.
  assert.ok(mutationsReached > 0, `mutations reached: ${mutationsReached}`);
});

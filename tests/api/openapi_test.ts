/**
 * The OpenAPI document against the live API: every route the Hono app
 * registers is documented with its method, nothing documented is missing
 * from the app, and every documented JSON example has the shape of the
 * answer the route really gives.
 *
 * Method: read `app.routes` (the handlers Hono registered, middleware left
 * out) and the served document; then ask a real setup served by
 * `SetupService` (remaps, a pending block, a broken metadata copy) each
 * documented route, and compare each example with the live answer of the
 * same status key by key and type by type (arrays by the union of their
 * elements' shapes; a live `null` fits any example value).
 */

import assert from "node:assert/strict";
import { createApp } from "../../mod/api/app.ts";
import { API_OPERATIONS } from "../../mod/api/openapi.ts";
import { COPY_SECTORS, SECTOR_BYTES } from "../../mod/constants.ts";
import { serveSetup } from "../service/served_setup.ts";
import { fakeSource } from "./fixtures.ts";

/** "METHOD /path" of every handler the app registered (middleware is registered as ALL). */
function liveRoutes(): string[] {
  const app = createApp(fakeSource());
  return app.routes.filter((route) => route.method !== "ALL")
    .map((route) => `${route.method} ${route.path}`).sort();
}

Deno.test("The OpenAPI document lists exactly the app's live routes and methods", async () => {
  const documented = API_OPERATIONS.map((op) => `${op.method.toUpperCase()} ${op.path}`).sort();
  assert.deepEqual(documented, liveRoutes());
  const response = await createApp(fakeSource()).request("/api/v1/openapi.json");
  assert.equal(response.status, 200);
  const document = await response.json();
  assert.equal(document.openapi, "3.1.0");
  const served = Object.entries(document.paths as Record<string, object>)
    .flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`))
    .sort();
  assert.deepEqual(served, liveRoutes());
  for (const [path, methods] of Object.entries(document.paths as Record<string, object>)) {
    for (const [method, operation] of Object.entries(methods)) {
      assert.ok(Object.keys(operation.responses).length > 0, `${method} ${path} has answers`);
    }
  }
});

/** The shape of a JSON value: its type, and for objects and arrays what they hold. */
type Shape = string | { [key: string]: Shape } | Shape[];

function shapeOf(value: unknown): Shape {
  if (value === null) return "null";
  if (Array.isArray(value)) {
    // The union of the elements' shapes: optional fields appear in some elements only.
    const merged: Record<string, unknown> = {};
    let scalar: Shape | undefined;
    for (const element of value) {
      if (typeof element === "object" && element !== null && !Array.isArray(element)) {
        Object.assign(merged, element);
      } else scalar = shapeOf(element);
    }
    if (scalar !== undefined) return [scalar];
    return Object.keys(merged).length === 0 && value.length === 0 ? [] : [shapeOf(merged)];
  }
  if (typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value).sort().map((
        key,
      ) => [key, shapeOf((value as Record<string, unknown>)[key])]),
    );
  }
  return typeof value;
}

/** Checks that `live` has the shape of `example`; `where` names the place for the message. */
function assertFits(example: Shape, live: Shape, where: string): void {
  if (live === "null") return;
  if (Array.isArray(example) && Array.isArray(live)) {
    if (example.length > 0 && live.length > 0) assertFits(example[0]!, live[0]!, `${where}[]`);
    return;
  }
  if (typeof example === "object" && typeof live === "object") {
    assert.deepEqual(Object.keys(live), Object.keys(example), `the keys of ${where}`);
    for (const key of Object.keys(live)) {
      assertFits(
        (example as Record<string, Shape>)[key]!,
        (live as Record<string, Shape>)[key]!,
        `${where}.${key}`,
      );
    }
    return;
  }
  assert.deepEqual(live, example, `the type of ${where}`);
}

async function breakCopy(sparePath: string, copyIndex: number): Promise<void> {
  const file = await Deno.open(sparePath, { write: true });
  await file.seek(COPY_SECTORS[copyIndex]! * SECTOR_BYTES, Deno.SeekMode.Start);
  await file.write(new Uint8Array(SECTOR_BYTES).fill(1));
  file.close();
}

Deno.test("Every documented example has the shape of the live answer of a served setup", async () => {
  const stops: boolean[] = [];
  const served = await serveSetup({
    remapBlocks: [10, 11, 12],
    pendingBlocks: [20],
    api: { tcp: { hostname: "127.0.0.1", port: 0 }, token: "t" },
    onStopRequested: (request) => stops.push(request.detach),
    // What serve answers after a reload that changed one live key (tests/e2e/reload_api_cli_test.ts).
    onReloadRequested: () =>
      Promise.resolve({
        file: `${Deno.cwd()}/dm-remap.yaml`,
        reloaded: true,
        applied: ["read-retries"],
        needsRestart: [],
      }),
  });
  try {
    const base = served.service.apiAddresses[1]!;
    const checked: string[] = [];
    for (const operation of API_OPERATIONS) {
      const target = operation.query === undefined
        ? operation.path
        : `${operation.path}?${operation.query.map((q) => `${q.name}=${q.fallback}`).join("&")}`;
      // Broken just before the repair: a scan pass (POST /api/v1/scan/start) rewrites the copies.
      if (operation.path === "/api/v1/metadata/repair") await breakCopy(served.sparePath, 2);
      const response = await fetch(`${base}${target}`, {
        method: operation.method.toUpperCase(),
        headers: operation.method === "post" ? { authorization: "Bearer t" } : {},
      });
      const answer = operation.answers[response.status];
      assert.ok(answer, `${operation.method} ${operation.path} answers a documented status`);
      assert.match(response.headers.get("content-type")!, new RegExp(`^${answer.contentType}`));
      if (answer.example === undefined) {
        await response.body?.cancel();
        continue;
      }
      const where = `${operation.method.toUpperCase()} ${operation.path} ${response.status}`;
      assertFits(shapeOf(answer.example), shapeOf(await response.json()), where);
      checked.push(where);
    }
    assert.deepEqual(checked, [
      "GET /api/v1/status 200",
      "GET /api/v1/remaps 200",
      "GET /api/v1/policies 200",
      "GET /api/v1/events 200",
      "GET /api/v1/health 503",
      "POST /api/v1/metadata/repair 200",
      "POST /api/v1/reload 200",
      "POST /api/v1/spares/add 400",
      "POST /api/v1/spares/remove 400",
      "POST /api/v1/stop 202",
    ]);
    // The stop is handed over once its answer has gone out.
    for (let waitedMs = 0; stops.length === 0 && waitedMs < 2_000; waitedMs += 10) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual(stops, [true]);
    // The error examples: a refused query, as every error is { error }.
    const refused = await fetch(`${base}/api/v1/remaps?limit=x`);
    assertFits(
      shapeOf(API_OPERATIONS.find((op) => op.path === "/api/v1/remaps")!.answers[400]!.example),
      shapeOf(await refused.json()),
      "GET /api/v1/remaps 400",
    );
  } finally {
    await served.close();
  }
});

/**
 * The local status API as a Hono app: routes, the status middleware, and the
 * one table that turns errors into HTTP statuses.
 *
 * Routes (each described in the OpenAPI document, `openapi.ts`):
 * - `GET /` — the HTML dashboard;
 * - `GET /api/v1/status` — the `SetupStatus` as JSON;
 * - `GET /api/v1/remaps?offset=&limit=` — one page of remaps;
 * - `GET /api/v1/events?limit=` — the newest events;
 * - `GET /api/v1/health` — 200 when ok, 503 when degraded;
 * - `GET /api/v1/policies` — each policy's last evaluation;
 * - `GET /api/v1/openapi.json` — the OpenAPI document;
 * - `GET /api/v1/scan` — the background scanner's status;
 * - `GET /api/v1/scan/health` — the health report (scores with their inputs);
 * - `GET /metrics` — Prometheus text format 0.0.4;
 * - `POST /api/v1/metadata/repair` — rewrites stale metadata copies;
 * - `POST /api/v1/scan/start`, `POST /api/v1/scan/stop` — start or pause a scan pass;
 * - `POST /api/v1/reload` — reads the configuration file again, as SIGHUP;
 * - `POST /api/v1/spares/add`, `POST /api/v1/spares/remove` — the spare pool;
 * - `POST /api/v1/stop` — stops the server.
 *
 * The app never sees devices: it reads the injected {@link StatusSource}
 * through `c.var.status`, and changes the setup only through the injected
 * {@link SetupControl} and {@link ScanControl}, behind the guard of `mutation_guard.ts`, which runs
 * before every route, so routes added later are guarded too.
 *
 * @module
 */

import { Hono } from "hono";
import type { Context, MiddlewareHandler, Next } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { API_REQUEST_BODY_BYTES_MAX } from "../constants.ts";
import { RefusedError, UnavailableError, UsageError } from "../errors.ts";
import type { ApiEnv } from "./_env.ts";
import type { SetupControl } from "./control.ts";
import type { ApiErrorBody } from "./error_body.ts";
import { guardMutations, type MutationGuardSettings } from "./mutation_guard.ts";
import { getDashboard } from "./routes/dashboard.ts";
import { getHealth } from "./routes/health.ts";
import { postMetadataRepair } from "./routes/metadata_repair.ts";
import { getMetrics } from "./routes/metrics.ts";
import { getOpenApi } from "./routes/openapi.ts";
import { getPolicies } from "./routes/policies.ts";
import { postReload } from "./routes/reload.ts";
import { getRemaps } from "./routes/remaps.ts";
import { getEvents } from "./routes/events.ts";
import { getStatus } from "./routes/status.ts";
import { postStop } from "./routes/stop.ts";
import { postSpareAdd, postSpareRemove } from "./routes/spares.ts";
import { getScan, getScanHealth } from "./routes/scan.ts";
import { postScanStart, postScanStop } from "./routes/scan_control.ts";
import type { ScanControl, StatusSource } from "./status.ts";

export type { ApiErrorBody };

/** The routes the API serves, for the 404 answer and for clients. */
export const API_ROUTES = [
  "GET /",
  "GET /api/v1/status",
  "GET /api/v1/remaps",
  "GET /api/v1/events",
  "GET /api/v1/health",
  "GET /api/v1/policies",
  "GET /api/v1/openapi.json",
  "GET /api/v1/scan",
  "GET /api/v1/scan/health",
  "GET /metrics",
  "POST /api/v1/metadata/repair",
  "POST /api/v1/scan/start",
  "POST /api/v1/scan/stop",
  "POST /api/v1/reload",
  "POST /api/v1/spares/add",
  "POST /api/v1/spares/remove",
  "POST /api/v1/stop",
] as const;

/** Options of {@link createApp}. */
export interface CreateAppOptions {
  /** What the mutating routes change; without it they answer 503. @default none */
  control?: SetupControl;
  /** Who may change the setup. @default no token, root only over the Unix socket */
  guard?: MutationGuardSettings;
  /** The scanner's controls, for the POST routes. @default none (they answer 404) */
  scanControl?: ScanControl;
}

/**
 * Builds the status API over a status source.
 *
 * @param source What the handlers read; it is called on every request, so answers are live.
 * @param options The control the mutating routes use, and who may use them.
 * @returns The app; serve it with `serveApi()` or call `app.request()` directly.
 *
 * @example Asking for remaps without a socket
 * ```ts
 * import { createApp } from "./app.ts";
 * import type { StatusSource } from "./status.ts";
 *
 * const source: StatusSource = {
 *   status() {
 *     throw new Error("this example only lists remaps");
 *   },
 *   remaps(offset, limit) {
 *     const entries = [{ blockIndex: 7, spareIndex: 0, slotIndex: 0 }];
 *     return { total: entries.length, entries: entries.slice(offset, offset + limit) };
 *   },
 *   events: () => [],
 * };
 * const app = createApp(source);
 * const page = await app.request("/api/v1/remaps?limit=10");
 * console.log(page.status, await page.json()); // 200 { total: 1, entries: [ ... ] }
 * const refused = await app.request("/api/v1/remaps?limit=-1");
 * console.log(refused.status); // 400
 * ```
 */
export function createApp(source: StatusSource, options: CreateAppOptions = {}): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  // The guard comes first: every route, and every route added after these, is behind it.
  app.use(guardMutations(options.guard ?? {}));
  app.use(bodyLimit({ maxSize: API_REQUEST_BODY_BYTES_MAX, onError: answerTooLarge }));
  app.use(provideStatus(source, options.control, options.scanControl));
  app.get("/", getDashboard);
  app.get("/api/v1/status", getStatus);
  app.get("/api/v1/remaps", getRemaps);
  app.get("/api/v1/events", getEvents);
  app.get("/api/v1/health", getHealth);
  app.get("/api/v1/policies", getPolicies);
  app.get("/api/v1/openapi.json", getOpenApi);
  app.get("/api/v1/scan", getScan);
  app.get("/api/v1/scan/health", getScanHealth);
  app.post("/api/v1/scan/start", postScanStart);
  app.post("/api/v1/scan/stop", postScanStop);
  app.get("/metrics", getMetrics);
  app.post("/api/v1/metadata/repair", postMetadataRepair);
  app.post("/api/v1/reload", postReload);
  app.post("/api/v1/spares/add", postSpareAdd);
  app.post("/api/v1/spares/remove", postSpareRemove);
  app.post("/api/v1/stop", postStop);
  app.notFound(answerNotFound);
  app.onError(answerError);
  return app;
}

/** Makes the status source and the controls available to every handler as `c.var`. */
function provideStatus(
  source: StatusSource,
  control: SetupControl | undefined,
  scanControl: ScanControl | undefined,
): MiddlewareHandler<ApiEnv> {
  return async function setStatus(c: Context<ApiEnv>, next: Next): Promise<void> {
    c.set("status", source);
    c.set("control", control);
    c.set("scanControl", scanControl);
    // Every answer is a snapshot of a live setup; a cached one would mislead.
    c.header("Cache-Control", "no-store");
    await next();
  };
}

function answerNotFound(c: Context<ApiEnv>): Response {
  const body: ApiErrorBody = {
    error: `Cannot find "${c.req.method} ${c.req.path.slice(0, 200)}": the API serves ${
      API_ROUTES.join(", ")
    }`,
  };
  return c.json(body, 404);
}

function answerTooLarge(c: Context<ApiEnv>): Response {
  const body: ApiErrorBody = {
    error: `Cannot take the request: its body exceeds ${API_REQUEST_BODY_BYTES_MAX} bytes`,
  };
  return c.json(body, 413);
}

/**
 * The one translation from errors to HTTP statuses: refused client input is
 * 400, a change refused for the state of the setup (a device in use, a
 * spare without room or holding data) 409,
 * Hono's own HTTP errors keep their status, everything else is 500.
 */
function answerError(error: Error, c: Context<ApiEnv>): Response {
  const body: ApiErrorBody = { error: error.message };
  if (error instanceof UsageError) return c.json(body, 400);
  if (error instanceof UnavailableError || error instanceof RefusedError) {
    return c.json(body, 409);
  }
  if (error instanceof HTTPException) return c.json(body, error.status);
  return c.json(body, 500);
}

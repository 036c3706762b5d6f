/**
 * The local status API as a Hono app: routes, the status middleware, and the
 * one table that turns errors into HTTP statuses.
 *
 * Routes:
 * - `GET /` — the HTML dashboard;
 * - `GET /api/v1/status` — the `SetupStatus` as JSON;
 * - `GET /api/v1/remaps?offset=&limit=` — one page of remaps;
 * - `GET /api/v1/health` — 200 when ok, 503 when degraded;
 * - `GET /api/v1/scan` — the background scanner's status;
 * - `GET /api/v1/scan/health` — the health report (scores with their inputs);
 * - `POST /api/v1/scan/start`, `POST /api/v1/scan/stop` — start or pause a pass;
 * - `GET /metrics` — Prometheus text format 0.0.4.
 *
 * The app never sees devices: it reads the injected {@link StatusSource}
 * through `c.var.status`. Its only writes are the scanner's POST routes,
 * through the injected {@link ScanControl} (`c.var.scanControl`).
 *
 * @module
 */

import { Hono } from "hono";
import type { Context, MiddlewareHandler, Next } from "hono";
import { HTTPException } from "hono/http-exception";
import { UsageError } from "../errors.ts";
import type { ApiEnv } from "./_env.ts";
import { getDashboard } from "./routes/dashboard.ts";
import { getHealth } from "./routes/health.ts";
import { getMetrics } from "./routes/metrics.ts";
import { getRemaps } from "./routes/remaps.ts";
import { getEvents } from "./routes/events.ts";
import { getStatus } from "./routes/status.ts";
import { getScan, getScanHealth } from "./routes/scan.ts";
import { postScanStart, postScanStop } from "./routes/scan_control.ts";
import type { ScanControl, StatusSource } from "./status.ts";

/** The body of every error answer. */
export interface ApiErrorBody {
  error: string;
}

/** The paths the API serves, for the 404 answer and for clients. */
export const API_PATHS = [
  "/",
  "/api/v1/status",
  "/api/v1/remaps",
  "/api/v1/health",
  "/api/v1/scan",
  "/api/v1/scan/health",
  "/metrics",
] as const;

/** Options of {@link createApp}. */
export interface CreateAppOptions {
  /** The scanner's controls, for the POST routes. @default none (they answer 404) */
  scanControl?: ScanControl;
}

/**
 * Builds the status API over a status source.
 *
 * @param source What the handlers read; it is called on every request, so answers are live.
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
  app.use(provideStatus(source, options.scanControl));
  app.get("/", getDashboard);
  app.get("/api/v1/status", getStatus);
  app.get("/api/v1/remaps", getRemaps);
  app.get("/api/v1/events", getEvents);
  app.get("/api/v1/health", getHealth);
  app.get("/api/v1/scan", getScan);
  app.get("/api/v1/scan/health", getScanHealth);
  app.post("/api/v1/scan/start", postScanStart);
  app.post("/api/v1/scan/stop", postScanStop);
  app.get("/metrics", getMetrics);
  app.notFound(answerNotFound);
  app.onError(answerError);
  return app;
}

/** Makes the status source available to every handler as `c.var.status`. */
function provideStatus(
  source: StatusSource,
  scanControl: ScanControl | undefined,
): MiddlewareHandler<ApiEnv> {
  return async function setStatus(c: Context<ApiEnv>, next: Next): Promise<void> {
    c.set("status", source);
    c.set("scanControl", scanControl);
    // Every answer is a snapshot of a live setup; a cached one would mislead.
    c.header("Cache-Control", "no-store");
    await next();
  };
}

function answerNotFound(c: Context<ApiEnv>): Response {
  const body: ApiErrorBody = {
    error: `Cannot find "${c.req.method} ${c.req.path}": the API serves GET ${
      API_PATHS.join(", ")
    }, POST /api/v1/scan/start, /api/v1/scan/stop`,
  };
  return c.json(body, 404);
}

/**
 * The one translation from errors to HTTP statuses: refused client input is
 * 400, Hono's own HTTP errors keep their status, everything else is 500.
 */
function answerError(error: Error, c: Context<ApiEnv>): Response {
  const body: ApiErrorBody = { error: error.message };
  if (error instanceof UsageError) return c.json(body, 400);
  if (error instanceof HTTPException) return c.json(body, error.status);
  return c.json(body, 500);
}

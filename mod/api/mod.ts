/**
 * The local API of a running setup: a Hono app with a JSON status, a paged
 * remap listing, the events, a health check for monitoring, Prometheus
 * metrics, an OpenAPI document, a live HTML dashboard, and two guarded
 * mutations (metadata repair, stop); a server for a Unix socket (with the
 * peer's credentials) and/or TCP; and the client that `dm-remap status` uses.
 *
 * The API reads a {@link StatusSource} and changes the setup only through a
 * {@link SetupControl}: it never sees devices. Every method but GET, HEAD and
 * OPTIONS passes `mutation_guard.ts` first.
 *
 * | Route                             | Answer                                      |
 * | --------------------------------- | ------------------------------------------- |
 * | `GET /`                           | HTML dashboard, polls the status every 2 s  |
 * | `GET /api/v1/events?limit=`       | `{ events }`, newest first                  |
 * | `GET /api/v1/openapi.json`        | the OpenAPI 3.1 document                    |
 * | `GET /api/v1/scan`                | the scanner's status                        |
 * | `GET /api/v1/scan/health`         | the health report (`dm-remap health`)       |
 * | `POST /api/v1/metadata/repair`    | {@link MetadataRepair}; guarded             |
 * | `POST /api/v1/scan/start`, `…/stop` | starts or pauses a scan pass; guarded     |
 * | `POST /api/v1/reload`             | reads the configuration again; guarded      |
 * | `POST /api/v1/spares/add`, `…/remove` | the spare pool; guarded                 |
 * | `POST /api/v1/stop`               | {@link StopAccepted} (202); guarded         |
 * | `GET /api/v1/status`              | {@link SetupStatus}                         |
 * | `GET /api/v1/remaps?offset=&limit=` | `{ total, entries }`; 400 on a bad query  |
 * | `GET /api/v1/health`              | {@link Health}; 200 ok, 503 degraded        |
 * | `GET /api/v1/policies`            | `{ policies }`: each policy's last evaluation |
 * | `GET /metrics`                    | Prometheus text format 0.0.4                |
 *
 * @example Serving a setup on a Unix socket and reading it back
 * ```ts
 * import { createApp, fetchStatus, serveApi } from "./mod.ts";
 * import type { SetupStatus, StatusSource } from "./mod.ts";
 * import { zeroEventCounts } from "../events/setup_event.ts";
 *
 * const status: SetupStatus = {
 *   setup: {
 *     uuid: "0b5e7c2a-1d3f-4e6a-9b8c-7d6e5f4a3b2c", name: "vault", blockBytes: 4096,
 *     sizeBytes: 1 << 30, state: "clean", formatVersion: 2, allocation: "fill-first",
 *   },
 *   main: { path: "/dev/sda", kind: "block", sizeBytes: 1 << 30, fingerprint: "00" },
 *   spares: [],
 *   counters: {
 *     reads: 0, writes: 0, bytesRead: 0, bytesWritten: 0, flushes: 0,
 *     readErrors: 0, writeErrors: 0, remaps: 0, remapsCreated: 0, pending: 0,
 *   },
 *   pendingBlocks: [],
 *   events: zeroEventCounts(),
 *   nbd: { exportName: "vault", connections: 0 },
 *   alerts: [],
 *   policies: [],
 *   migration: null,
 *   uptimeSeconds: 1,
 *   version: "0.1.0",
 * };
 * const source: StatusSource = {
 *   status() {
 *     return status;
 *   },
 *   remaps() {
 *     return { total: 0, entries: [] };
 *   },
 *   events: () => [],
 * };
 *
 * const dir = await Deno.makeTempDir();
 * const server = await serveApi(createApp(source), { unixPath: `${dir}/api.sock` });
 * try {
 *   const read = await fetchStatus(`${dir}/api.sock`);
 *   console.log(read.setup.name); // "vault"
 * } finally {
 *   await server.close();
 *   await Deno.remove(dir);
 * }
 * ```
 *
 * @module
 */

export type { ApiEnv } from "./_env.ts";
export { API_ROUTES, type ApiErrorBody, createApp, type CreateAppOptions } from "./app.ts";
export type {
  MetadataRepair,
  SetupControl,
  SpareMetadataRepair,
  StopAccepted,
  StopRequestOptions,
} from "./control.ts";
export { guardMutations, type MutationGuardSettings, READ_METHODS } from "./mutation_guard.ts";
export { API_OPERATIONS, type ApiOperation, openApiDocument } from "./openapi.ts";
export {
  fetchStatus,
  type FetchStatusOptions,
  STATUS_TIMEOUT_MS_DEFAULT,
  StatusRequestError,
} from "./client.ts";
export {
  API_SOCKET_MODE,
  API_TCP_HOSTNAME_DEFAULT,
  type ApiAddress,
  ApiListenError,
  type ApiServer,
  serveApi,
  type ServeApiOptions,
} from "./http_server.ts";
export {
  encodePrometheus,
  escapeHelp,
  escapeLabelValue,
  formatSampleValue,
  type MetricFamily,
  type MetricSample,
  type MetricType,
  PROMETHEUS_CONTENT_TYPE,
} from "./prometheus.ts";
export { DASHBOARD_POLL_INTERVAL_MS } from "./routes/dashboard.ts";
export { type Health, healthOf } from "./routes/health.ts";
export { metricFamiliesOf } from "./routes/metrics.ts";
export { EventCounts } from "./event_counts.ts";
export {
  parseRemapsQuery,
  REMAPS_PAGE_ENTRIES_DEFAULT,
  REMAPS_PAGE_ENTRIES_MAX,
  type RemapsPage,
  type RemapsQuery,
} from "./routes/remaps.ts";
export type { CopyHealth, RemapEntry, SetupStatus, SpareStatus, StatusSource } from "./status.ts";

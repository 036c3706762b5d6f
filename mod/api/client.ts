/**
 * A small client for the status API, used by `dm-remap status`.
 *
 * A target is either a Unix socket path (`/run/dm-remap/vault.sock`) or the
 * base URL of a TCP listener (`http://127.0.0.1:8080`). Over a socket it uses
 * `Deno.createHttpClient({ proxy: { transport: "unix", path } })`, which
 * Deno 2.9 supports for plain HTTP.
 *
 * The answer comes from another process, so it is checked before use; every
 * failure is a {@link StatusRequestError} that names the target and the fix.
 *
 * @module
 */

import type { HealthReport, ScanStatus } from "../scan/mod.ts";
import type { SetupStatus, SpareMigrationStatus } from "./status.ts";
import type { SpareAdded, SpareAddRequest } from "./control.ts";
import { SPARE_REQUEST_TIMEOUT_MS, STATUS_TIMEOUT_MS_DEFAULT } from "../constants.ts";
export { STATUS_TIMEOUT_MS_DEFAULT };

/** Options of {@link fetchStatus}. */
export interface FetchStatusOptions {
  /** Give up when no answer arrived in this time. @default 5000 */
  timeoutMs?: number;
}

/** Reading the status failed: no server, wrong address, timeout or a bad answer. */
export class StatusRequestError extends Error {
  override name = "StatusRequestError";
  /** The socket path or URL that was asked. */
  readonly target: string;
  /** The HTTP status when the server answered with an error. */
  readonly httpStatus: number | undefined;
  constructor(
    target: string,
    detail: string,
    options: { httpStatus?: number; cause?: unknown } = {},
  ) {
    super(`Cannot read the status from "${target}": ${detail}`, { cause: options.cause });
    this.target = target;
    this.httpStatus = options.httpStatus;
  }
}

const RUNNING_HINT = "is `dm-remap serve` running?";

/**
 * Reads `GET /api/v1/status` from a running `dm-remap serve`.
 *
 * @param target A Unix socket path, or an `http://` base URL.
 * @param options The timeout.
 * @returns The status the server reported.
 * @throws {StatusRequestError} When the server cannot be reached, answers with an error, or
 * answers with something that is not a status.
 *
 * @example Reading the status of a served setup
 * ```ts ignore
 * import { fetchStatus } from "./client.ts";
 * const status = await fetchStatus("/run/dm-remap/vault.sock");
 * console.log(status.setup.state); // "clean"
 * ```
 */
export async function fetchStatus(
  target: string,
  options: FetchStatusOptions = {},
): Promise<SetupStatus> {
  const body = await requestJson(target, "api/v1/status", {
    timeoutMs: options.timeoutMs ?? STATUS_TIMEOUT_MS_DEFAULT,
  });
  if (!isSetupStatus(body)) {
    throw new StatusRequestError(
      target,
      "the answer is not a dm-remap status; is another service listening there?",
    );
  }
  return body;
}

/**
 * Reads `GET /api/v1/scan/health`: the setup's health report with the scanner's status.
 *
 * @throws {StatusRequestError} As {@link fetchStatus}; HTTP 404 when the server runs no scanner.
 */
export async function fetchHealthReport(
  target: string,
  options: FetchStatusOptions = {},
): Promise<HealthReport> {
  const body = await requestJson(target, "api/v1/scan/health", {
    timeoutMs: options.timeoutMs ?? STATUS_TIMEOUT_MS_DEFAULT,
  });
  const report = body as Partial<HealthReport>;
  if (typeof report?.setup?.score !== "number" || !Array.isArray(report.regions)) {
    throw new StatusRequestError(target, "the answer is not a dm-remap health report");
  }
  return body as HealthReport;
}

/**
 * Asks the scanner to start or stop a pass (`POST /api/v1/scan/start|stop`).
 *
 * @returns The scanner's status after the request.
 * @throws {StatusRequestError} As {@link fetchStatus}.
 */
export async function requestScan(
  target: string,
  action: "start" | "stop",
  options: FetchStatusOptions = {},
): Promise<ScanStatus> {
  const body = await requestJson(target, `api/v1/scan/${action}`, {
    timeoutMs: options.timeoutMs ?? STATUS_TIMEOUT_MS_DEFAULT,
    method: "POST",
  });
  if (typeof (body as Partial<ScanStatus>)?.positionBytes !== "number") {
    throw new StatusRequestError(target, "the answer is not a dm-remap scan status");
  }
  return body as ScanStatus;
}

/**
 * Adds a spare to a running setup's pool (`POST /api/v1/spares/add`).
 *
 * @returns Where it joined.
 * @throws {StatusRequestError} As {@link fetchStatus}; `httpStatus` 409 for a refusal, 400 for a bad request.
 */
export async function requestSpareAdd(
  target: string,
  request: SpareAddRequest,
  options: FetchStatusOptions = {},
): Promise<SpareAdded> {
  const body = await requestJson(target, "api/v1/spares/add", {
    timeoutMs: options.timeoutMs ?? SPARE_REQUEST_TIMEOUT_MS,
    method: "POST",
    body: request,
  });
  if (typeof (body as Partial<SpareAdded>)?.slotCount !== "number") {
    throw new StatusRequestError(target, "the answer is not a dm-remap spare");
  }
  return body as SpareAdded;
}

/**
 * Starts removing a spare of a running setup (`POST /api/v1/spares/remove`).
 *
 * @returns The migration as it starts; the status's `migration` follows it.
 * @throws {StatusRequestError} As {@link requestSpareAdd}.
 */
export async function requestSpareRemove(
  target: string,
  request: { path: string },
  options: FetchStatusOptions = {},
): Promise<SpareMigrationStatus> {
  const body = await requestJson(target, "api/v1/spares/remove", {
    timeoutMs: options.timeoutMs ?? SPARE_REQUEST_TIMEOUT_MS,
    method: "POST",
    body: request,
  });
  if (typeof (body as Partial<SpareMigrationStatus>)?.blocksTotal !== "number") {
    throw new StatusRequestError(target, "the answer is not a dm-remap spare migration");
  }
  return body as SpareMigrationStatus;
}

/** Whether a target names a TCP listener rather than a socket path. */
function isUrlTarget(target: string): boolean {
  return /^https?:\/\//i.test(target);
}

async function requestJson(
  target: string,
  path: string,
  options: { timeoutMs: number; method?: "GET" | "POST"; body?: unknown },
): Promise<unknown> {
  const { timeoutMs } = options;
  const client = isUrlTarget(target) ? undefined : await unixClient(target);
  // Resolve against a base that ends in "/", so a URL with a path prefix keeps it.
  const base = isUrlTarget(target)
    ? (target.endsWith("/") ? target : `${target}/`)
    : "http://localhost/";
  let response: Response;
  let text: string;
  try {
    response = await fetch(new URL(path, base), {
      client,
      method: options.method ?? "GET",
      signal: AbortSignal.timeout(timeoutMs),
      headers: options.body === undefined
        ? { accept: "application/json" }
        : { accept: "application/json", "content-type": "application/json" },
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    text = await response.text();
  } catch (error) {
    throw new StatusRequestError(target, describeFetchFailure(error, timeoutMs), { cause: error });
  } finally {
    // Closed only after the body is read: the body streams over this client's connection.
    client?.close();
  }
  if (!response.ok) {
    const detail = errorOf(text) ?? response.statusText;
    throw new StatusRequestError(target, `HTTP ${response.status}: ${detail}`, {
      httpStatus: response.status,
    });
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new StatusRequestError(
      target,
      "the answer is not JSON; is another service listening there?",
      {
        cause: error,
      },
    );
  }
}

/** Checks the socket path first, since its absence is the common case and has a clear fix. */
async function unixClient(path: string): Promise<Deno.HttpClient> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new StatusRequestError(path, `no such socket; ${RUNNING_HINT}`);
    }
    throw new StatusRequestError(path, `cannot inspect the socket path; ${RUNNING_HINT}`, {
      cause: error,
    });
  }
  if (!info.isSocket) {
    throw new StatusRequestError(
      path,
      "the path is not a socket; pass the socket that `dm-remap serve` listens on",
    );
  }
  return Deno.createHttpClient({ proxy: { transport: "unix", path } });
}

function describeFetchFailure(error: unknown, timeoutMs: number): string {
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return `no answer within ${timeoutMs} ms; is \`dm-remap serve\` responsive?`;
  }
  const messages = [error, (error as { cause?: unknown })?.cause].map((e) =>
    e instanceof Error ? e.message : ""
  );
  const text = messages.join(" ");
  if (/connection refused/i.test(text)) return `connection refused; ${RUNNING_HINT}`;
  if (/permission denied/i.test(text)) {
    return "permission denied; run as a user who may open the socket";
  }
  return `${messages.filter((m) => m !== "").at(-1) ?? String(error)}; ${RUNNING_HINT}`;
}

/** The `error` field of an API error body, if the text is one. */
function errorOf(text: string): string | undefined {
  try {
    const body: unknown = JSON.parse(text);
    if (
      typeof body === "object" && body !== null &&
      typeof (body as { error?: unknown }).error === "string"
    ) {
      return (body as { error: string }).error;
    }
  } catch {
    // Not our error body; the caller falls back to the status text.
  }
  return undefined;
}

/** A shallow check: enough to tell our status from another service's JSON. */
function isSetupStatus(value: unknown): value is SetupStatus {
  if (typeof value !== "object" || value === null) return false;
  const status = value as Partial<Record<keyof SetupStatus, unknown>>;
  const setup = status.setup as { name?: unknown; uuid?: unknown } | undefined;
  return typeof setup === "object" && setup !== null && typeof setup.name === "string" &&
    typeof setup.uuid === "string" && Array.isArray(status.spares) &&
    Array.isArray(status.pendingBlocks) &&
    typeof status.counters === "object" && status.counters !== null;
}

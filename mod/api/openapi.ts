/**
 * The OpenAPI 3.1 document of the status API, served at
 * `GET /api/v1/openapi.json`: every route with its methods, parameters,
 * answers and an example of each JSON answer. It is written by hand from
 * {@link API_OPERATIONS}, one row per route; `tests/api/openapi_test.ts`
 * checks the rows against the app's live routes and the examples against
 * live answers, so the document cannot drift from the code.
 *
 * @module
 */

import { zeroEventCounts } from "../events/setup_event.ts";
import { VERSION } from "../version.ts";
import type { PolicyEvaluation } from "../policy/policy.ts";
import type { MetadataRepair, ReloadOutcome, StopAccepted } from "./control.ts";
import { REMAPS_PAGE_ENTRIES_DEFAULT, REMAPS_PAGE_ENTRIES_MAX } from "./routes/remaps.ts";
import { EVENTS_PAGE_DEFAULT, EVENTS_PAGE_MAX } from "./routes/events.ts";
import type { Health } from "./routes/health.ts";
import type { SetupHealth, SetupStatus, SpareMigrationStatus } from "./status.ts";
import type { StoredEvent } from "../events/event_history.ts";

/** One answer of an operation. */
export interface ApiAnswer {
  description: string;
  /** The media type; JSON answers carry an example. */
  contentType: "application/json" | "text/html" | "text/plain";
  example?: unknown;
}

/** One route and method. */
export interface ApiOperation {
  method: "get" | "post";
  /** The path as Hono registers it. */
  path: string;
  summary: string;
  /** Query parameters: name, the most it may be, its default. */
  query?: { name: string; max: number; fallback: number; description: string }[];
  /** The JSON options a mutation takes: booleans with their default, or required strings. */
  options?: (
    | { name: string; fallback: boolean; description: string }
    | { name: string; type: "string"; description: string }
  )[];
  answers: Record<number, ApiAnswer>;
}

const COPY_EXAMPLE = { copyIndex: 0, sector: 8, valid: true, sequence: 12, winner: true };

/** A spare removal under way, as the status and `POST /api/v1/spares/remove` show it. */
const MIGRATION_EXAMPLE: SpareMigrationStatus = {
  spareIndex: 1,
  state: "running",
  blocksTotal: 5000,
  blocksMoved: 1200,
  blocksFailed: 0,
  startedMs: 1700000001000,
  rateBlocksPerS: 400,
  etaSeconds: 9.5,
};

/** A status as `GET /api/v1/status` answers it. */
const POLICY_EXAMPLE: PolicyEvaluation = {
  name: "pending-pager",
  evaluatedMs: 1700000002000,
  trigger: "event pending",
  holds: true,
  reasons: ["pending-blocks: 1 pending block (at least 1)"],
  actedMs: 1700000002000,
  actions: ["alert policy"],
  unavailable: [],
};

const NO_SMART = "not a block device (an image file has no SMART)";

const HEALTH_SECTION_EXAMPLE: SetupHealth = {
  smart: {
    intervalMs: 1_800_000,
    rounds: 1,
    disks: [{
      role: "main",
      path: "/srv/main.img",
      reading: {
        state: "no-smart",
        device: "/srv/main.img",
        reason: NO_SMART,
        timeMs: 1700000000500,
      },
      risk: { level: "none", reasons: [`no SMART: ${NO_SMART}`], rising: [] },
    }],
  },
  scrub: {
    intervalMs: 3_600_000,
    passes: 1,
    lastPassMs: 1700000000400,
    spares: [{
      spareIndex: 0,
      state: "ok",
      lastRepairs: [],
      repairsTotal: 0,
      failures: 0,
      lastScrubMs: 1700000000400,
      nextScrubMs: 1700003600400,
    }],
  },
  forecast: {
    slotsFree: 14997,
    remapsPerDay: 12,
    spanDays: 7,
    reasons: ["84 new remaps in the last 7 days: 12/day", "14997 of 15000 slots free"],
    state: "forecast",
    daysLeft: { low: 1100, expected: 1250, high: 1420 },
    summary: "12 new remaps/day over 7 days; pool full in about 1250 days (1100–1420)",
  },
};

export const STATUS_EXAMPLE: SetupStatus = {
  setup: {
    uuid: "0b5e7c2a-1d3f-4e6a-9b8c-7d6e5f4a3b2c",
    name: "vault",
    blockBytes: 4096,
    sizeBytes: 1073741824,
    state: "clean",
    formatVersion: 2,
    allocation: "fill-first",
  },
  main: { path: "/dev/sda", kind: "block", sizeBytes: 1073741824, fingerprint: "ab01" },
  spares: [{
    index: 0,
    uuid: "9a7d3a52-8d4e-4b8e-9b1f-2c3d4e5f6a7b",
    path: "/dev/sdb",
    sizeBytes: 67108864,
    state: "active",
    slotCount: 15000,
    slotsUsed: 3,
    missing: false,
    errors: 0,
    allocationStopped: false,
    validCopies: 5,
    copies: [0, 1, 2, 3, 4].map((copyIndex) => ({
      ...COPY_EXAMPLE,
      copyIndex,
      winner: copyIndex === 0,
      repaired: false,
    })),
  }],
  counters: {
    reads: 1200,
    writes: 340,
    bytesRead: 4915200,
    bytesWritten: 1392640,
    flushes: 17,
    readErrors: 2,
    writeErrors: 0,
    remaps: 3,
    remapsCreated: 1,
    pending: 1,
  },
  pendingBlocks: [77],
  events: { ...zeroEventCounts(), remap: 1, pending: 1, "read-error": 2, started: 1 },
  nbd: { exportName: "vault", unixPath: "/run/dm-remap/vault.nbd.sock", connections: 1 },
  uptimeSeconds: 3600,
  version: VERSION,
  alerts: [{ name: "pager", sent: 4, failed: 1, dropped: 0, suppressed: 7 }],
  policies: [POLICY_EXAMPLE],
  health: HEALTH_SECTION_EXAMPLE,
  migration: MIGRATION_EXAMPLE,
};

const HEALTH_EXAMPLE: Health = {
  status: "pending",
  reasons: [
    "1 block is pending: unreadable on the main disk, and read as errors until the client " +
    "rewrites it",
  ],
  setup: { name: "vault", uuid: STATUS_EXAMPLE.setup.uuid, state: "clean" },
  spares: { active: 1, failed: 0, slotsFree: 14997 },
  pendingBlocks: 1,
};

const EVENT_EXAMPLE: StoredEvent = {
  id: 2,
  timeMs: 1700000001000,
  type: "remap",
  message: "remapped block 7 to spare 0 slot 0",
  blockIndex: 7,
  spareIndex: 0,
  slotIndex: 0,
};

const REPAIR_EXAMPLE: MetadataRepair = {
  spares: [{
    index: 0,
    path: "/dev/sdb",
    copies: [0, 1, 2, 3, 4].map((copyIndex) => ({
      ...COPY_EXAMPLE,
      copyIndex,
      ...(copyIndex === 2
        ? { valid: false, reason: "checksum mismatch", sequence: undefined }
        : {}),
      winner: copyIndex === 0,
      repaired: copyIndex === 2,
    })).map((copy) => JSON.parse(JSON.stringify(copy))),
    repairedCopies: 1,
  }],
  repairedCopies: 1,
};

const RELOAD_EXAMPLE: ReloadOutcome = {
  file: "/etc/dm-remap/dm-remap.yaml",
  reloaded: true,
  applied: ["read-retries", "policies.health-falling"],
  needsRestart: ["api.tcp"],
};

const RELOAD_PROBLEMS = 'Invalid configuration "/etc/dm-remap/dm-remap.yaml": fix 1 problem(s):\n' +
  "  /etc/dm-remap/dm-remap.yaml:2:17: serve.read-retries: expected a whole number from 0 to " +
  "16, got 17";
const RELOAD_REFUSED_EXAMPLE: ReloadOutcome & { error: string } = {
  error: RELOAD_PROBLEMS,
  file: "/etc/dm-remap/dm-remap.yaml",
  reloaded: false,
  applied: [],
  needsRestart: [],
  problems: RELOAD_PROBLEMS,
};

const STOP_EXAMPLE: StopAccepted = { stopping: true, pid: 4242, kernelDevice: "/dev/nbd0" };

const ERROR_EXAMPLE = { error: 'Cannot list remaps: "limit" must be an integer from 0 to 10000' };

function error(description: string): ApiAnswer {
  return { description, contentType: "application/json", example: ERROR_EXAMPLE };
}

const REFUSED: Record<number, ApiAnswer> = {
  400: error("The options are not what the route takes."),
  401: error("No valid bearer token, and not over the Unix socket."),
  403: error("Over the Unix socket from a process that is neither root nor in the API's group."),
  413: error("The body is larger than the API takes."),
  503: error("The server has no running setup to change."),
};

/**
 * The scanner's routes (`routes/scan.ts`, `routes/scan_control.ts`; docs/scan.md). An API
 * served without a scanner answers them 404 (`serve --no-scan` only turns its schedule off).
 */
function scanOperations(): ApiOperation[] {
  const noScanner = error("The API is served without a scanner.");
  const json = (description: string): ApiAnswer => ({
    description,
    contentType: "application/json",
  });
  return [
    {
      method: "get",
      path: "/api/v1/scan",
      summary: "The background scanner: state, position, rate, passes, relocations.",
      answers: { 200: json("The scanner's status."), 404: noScanner },
    },
    {
      method: "get",
      path: "/api/v1/scan/health",
      summary: "The health report: the setup's score and each region's, with their inputs.",
      answers: { 200: json("The health report."), 404: noScanner },
    },
    {
      method: "post",
      path: "/api/v1/scan/start",
      summary: "Starts a scan pass now, or resumes a paused one.",
      answers: { 200: json("The scanner's status after the start."), 404: noScanner, ...REFUSED },
    },
    {
      method: "post",
      path: "/api/v1/scan/stop",
      summary: "Pauses the pass in progress; its position is kept.",
      answers: { 200: json("The scanner's status after the stop."), 404: noScanner, ...REFUSED },
    },
  ];
}

/** Every route of the API, with what it answers. */
export const API_OPERATIONS: readonly ApiOperation[] = [
  {
    method: "get",
    path: "/",
    summary: "The dashboard: an HTML page that polls the status and the events.",
    answers: { 200: { description: "The page.", contentType: "text/html" } },
  },
  {
    method: "get",
    path: "/api/v1/status",
    summary: "The setup, its disks, counters, pending blocks and event counts.",
    answers: {
      200: { description: "The status.", contentType: "application/json", example: STATUS_EXAMPLE },
    },
  },
  {
    method: "get",
    path: "/api/v1/remaps",
    summary: "One page of the remapped blocks, in block order.",
    query: [
      { name: "offset", max: Number.MAX_SAFE_INTEGER, fallback: 0, description: "Remaps to skip." },
      {
        name: "limit",
        max: REMAPS_PAGE_ENTRIES_MAX,
        fallback: REMAPS_PAGE_ENTRIES_DEFAULT,
        description: "Remaps to return at most.",
      },
    ],
    answers: {
      200: {
        description: "The page and the total.",
        contentType: "application/json",
        example: { total: 3, entries: [{ blockIndex: 7, spareIndex: 0, slotIndex: 0 }] },
      },
      400: error("A parameter is repeated, not an integer, or out of range."),
    },
  },
  {
    method: "get",
    path: "/api/v1/policies",
    summary: "Each configured policy with its last evaluation: why it holds, what it did.",
    answers: {
      200: {
        description: "The policies.",
        contentType: "application/json",
        example: { policies: [POLICY_EXAMPLE] },
      },
    },
  },
  ...scanOperations(),
  {
    method: "get",
    path: "/api/v1/events",
    summary: "The newest events of the setup's history, newest first.",
    query: [{
      name: "limit",
      max: EVENTS_PAGE_MAX,
      fallback: EVENTS_PAGE_DEFAULT,
      description: "Events to return at most.",
    }],
    answers: {
      200: {
        description: "The events.",
        contentType: "application/json",
        example: { events: [EVENT_EXAMPLE] },
      },
      400: error("The limit is repeated, not an integer, or out of range."),
    },
  },
  {
    method: "get",
    path: "/api/v1/health",
    summary: "Whether the setup is ok, for monitoring.",
    answers: {
      200: {
        description: "The setup is ok.",
        contentType: "application/json",
        example: { ...HEALTH_EXAMPLE, status: "ok", reasons: [], pendingBlocks: 0 },
      },
      503: {
        description: "The setup failed, is degraded, or has pending blocks.",
        contentType: "application/json",
        example: HEALTH_EXAMPLE,
      },
    },
  },
  {
    method: "get",
    path: "/api/v1/openapi.json",
    summary: "This document.",
    answers: { 200: { description: "The OpenAPI document.", contentType: "application/json" } },
  },
  {
    method: "get",
    path: "/metrics",
    summary: "Prometheus metrics, text exposition format 0.0.4.",
    answers: { 200: { description: "The metrics.", contentType: "text/plain" } },
  },
  {
    method: "post",
    path: "/api/v1/metadata/repair",
    summary: "Rewrites every stale or invalid metadata copy of the working spares now.",
    options: [],
    answers: {
      200: {
        description: "The copies as found, and which were rewritten.",
        contentType: "application/json",
        example: REPAIR_EXAMPLE,
      },
      ...REFUSED,
    },
  },
  {
    method: "post",
    path: "/api/v1/reload",
    summary: "Reads the configuration file again, as SIGHUP: live keys take effect at once, " +
      "the answer names the changed keys that need a restart.",
    options: [],
    answers: {
      200: {
        description: "The file was applied: what changed live, and what waits for a restart.",
        contentType: "application/json",
        example: RELOAD_EXAMPLE,
      },
      409: error("The server cannot reload now: not run by `dm-remap serve`, or stopping."),
      422: {
        description: "The file does not check: the running configuration stays.",
        contentType: "application/json",
        example: RELOAD_REFUSED_EXAMPLE,
      },
      ...REFUSED,
    },
  },
  {
    method: "post",
    path: "/api/v1/spares/add",
    summary: "Adds a spare to the pool while serving, checked as `create` checks one " +
      "(`dm-remap spare add`).",
    options: [
      { name: "path", type: "string", description: "The device or file, as the server sees it." },
      {
        name: "force",
        fallback: false,
        description: "Overwrite it though it holds a filesystem or another setup.",
      },
    ],
    answers: {
      200: {
        description: "The spare joined the pool.",
        contentType: "application/json",
        example: { index: 2, path: "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4", slotCount: 15000 },
      },
      400: error("No path, an unknown option, or a device too small; nothing was written."),
      409: error("The device holds data, is one of the setup's disks, is in use, or does not fit."),
      ...REFUSED,
    },
  },
  {
    method: "post",
    path: "/api/v1/spares/remove",
    summary: "Starts moving a spare's blocks to the others; once none is left it leaves the " +
      "setup (`dm-remap spare remove`). The status's `migration` shows the progress.",
    options: [{ name: "path", type: "string", description: "The spare's device or file." }],
    answers: {
      202: {
        description: "The migration started (or goes on).",
        contentType: "application/json",
        example: MIGRATION_EXAMPLE,
      },
      400: error("No path, or it is not a spare of the setup."),
      409: error("The other spares lack room (the answer says how much), or it is not active."),
      ...REFUSED,
    },
  },
  {
    method: "post",
    path: "/api/v1/stop",
    summary: "Stops the server in order (drain, flush, write metadata), as `dm-remap stop`.",
    options: [
      { name: "detach", fallback: true, description: "Detach the kernel device too." },
      { name: "force", fallback: false, description: "Detach it even while it is in use." },
    ],
    answers: {
      202: {
        description: "The stop has begun.",
        contentType: "application/json",
        example: STOP_EXAMPLE,
      },
      409: error("The kernel device is mounted or open, and force is not set."),
      ...REFUSED,
    },
  },
];

/**
 * The OpenAPI 3.1 document of {@link API_OPERATIONS}.
 *
 * @returns A JSON-ready object.
 */
export function openApiDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const operation of API_OPERATIONS) {
    paths[operation.path] ??= {};
    paths[operation.path]![operation.method] = operationObject(operation);
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "dm-remap status API",
      version: VERSION,
      description: "The local API of one running dm-remap setup. Methods other than GET, HEAD " +
        "and OPTIONS need the Unix socket as root or the API's group, or a bearer token.",
    },
    paths,
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      schemas: {
        Error: {
          type: "object",
          required: ["error"],
          properties: { error: { type: "string" } },
        },
      },
    },
  };
}

function operationObject(operation: ApiOperation): Record<string, unknown> {
  const object: Record<string, unknown> = {
    summary: operation.summary,
    responses: Object.fromEntries(
      Object.entries(operation.answers).map(([status, answer]) => [status, {
        description: answer.description,
        content: {
          [answer.contentType]: answer.example === undefined ? {} : { example: answer.example },
        },
      }]),
    ),
  };
  if (operation.query !== undefined) {
    object.parameters = operation.query.map((parameter) => ({
      name: parameter.name,
      in: "query",
      description: parameter.description,
      schema: { type: "integer", minimum: 0, maximum: parameter.max, default: parameter.fallback },
    }));
  }
  if (operation.options !== undefined) {
    object.security = [{ bearer: [] }, {}];
    object.requestBody = {
      required: false,
      content: {
        "application/json": {
          schema: {
            type: "object",
            additionalProperties: false,
            required: operation.options.filter((option) => "type" in option)
              .map((option) => option.name),
            properties: Object.fromEntries(operation.options.map((option) => [
              option.name,
              "type" in option
                ? { type: option.type, description: option.description }
                : { type: "boolean", default: option.fallback, description: option.description },
            ])),
          },
        },
      },
    };
  }
  return object;
}

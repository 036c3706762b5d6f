/**
 * The status API, route by route, as a client sees it.
 *
 * Method: `app.request()` against `createApp()` over a fake status source, no
 * socket. Each test states a request and the answer the spec requires;
 * metrics are read back with the strict exposition reader in `exposition.ts`.
 */

import assert from "node:assert/strict";
import { createApp } from "../../mod/api/app.ts";
import { PROMETHEUS_CONTENT_TYPE } from "../../mod/api/prometheus.ts";
import {
  REMAPS_PAGE_ENTRIES_DEFAULT,
  REMAPS_PAGE_ENTRIES_MAX,
} from "../../mod/api/routes/remaps.ts";
import type { SetupStatus, StatusSource } from "../../mod/api/status.ts";
import {
  EVENTS_FIXTURE,
  fakeSource,
  remapsFixture,
  spareFixture,
  statusFixture,
} from "./fixtures.ts";
import { parseExposition, SAMPLE_LINE } from "./exposition.ts";

function appOver(status: SetupStatus = statusFixture()) {
  return createApp(fakeSource(status));
}

Deno.test("createApp() GET /api/v1/status answers the source's status as JSON", async () => {
  const status = statusFixture();
  const response = await appOver(status).request("/api/v1/status");
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type")!, /^application\/json/);
  assert.equal(response.headers.get("cache-control"), "no-store");
  assert.deepEqual(await response.json(), status);
});

Deno.test("createApp() reads the source on every request, so answers are live", async () => {
  let reads = 0;
  const source: StatusSource = {
    status() {
      reads++;
      return statusFixture({ uptimeSeconds: reads });
    },
    remaps() {
      return { total: 0, entries: [] };
    },
    events: () => [],
  };
  const app = createApp(source);
  assert.equal((await (await app.request("/api/v1/status")).json()).uptimeSeconds, 1);
  assert.equal((await (await app.request("/api/v1/status")).json()).uptimeSeconds, 2);
});

Deno.test("createApp() GET /api/v1/remaps pages through the remaps with offset and limit", async () => {
  const source = fakeSource(statusFixture(), remapsFixture(2_500));
  const app = createApp(source);
  const rows: [query: string, expected: { offset: number; limit: number; entries: number }][] = [
    ["", { offset: 0, limit: REMAPS_PAGE_ENTRIES_DEFAULT, entries: 1_000 }],
    ["?offset=2000", { offset: 2_000, limit: 1_000, entries: 500 }],
    ["?offset=10&limit=5", { offset: 10, limit: 5, entries: 5 }],
    ["?limit=0", { offset: 0, limit: 0, entries: 0 }],
    [`?limit=${REMAPS_PAGE_ENTRIES_MAX}`, {
      offset: 0,
      limit: REMAPS_PAGE_ENTRIES_MAX,
      entries: 2_500,
    }],
    ["?offset=9999999&limit=1", { offset: 9_999_999, limit: 1, entries: 0 }],
    ["?offset=007", { offset: 7, limit: 1_000, entries: 1_000 }],
    ["?limit=2&cachebuster=123", { offset: 0, limit: 2, entries: 2 }],
  ];
  for (const [query, expected] of rows) {
    source.remapsCalls.length = 0;
    const response = await app.request(`/api/v1/remaps${query}`);
    assert.equal(response.status, 200, query);
    const body = await response.json();
    assert.equal(body.total, 2_500, query);
    assert.equal(body.entries.length, expected.entries, query);
    assert.deepEqual(
      source.remapsCalls,
      [{ offset: expected.offset, limit: expected.limit }],
      query,
    );
  }
  const page = await (await app.request("/api/v1/remaps?offset=1&limit=2")).json();
  assert.deepEqual(page, {
    total: 2_500,
    entries: [{ blockIndex: 10, spareIndex: 0, slotIndex: 1 }, {
      blockIndex: 20,
      spareIndex: 0,
      slotIndex: 2,
    }],
  });
});

Deno.test("createApp() GET /api/v1/remaps refuses a bad query with 400 and a JSON error, without asking the source", async () => {
  const source = fakeSource();
  const app = createApp(source);
  const rows: [query: string, error: string][] = [
    ["?limit=-1", 'Cannot list remaps: "limit" must be an integer from 0 to 10000, got "-1"'],
    ["?limit=10001", 'Cannot list remaps: "limit" must be an integer from 0 to 10000, got "10001"'],
    ["?limit=1.5", 'Cannot list remaps: "limit" must be an integer from 0 to 10000, got "1.5"'],
    ["?limit=1e3", 'Cannot list remaps: "limit" must be an integer from 0 to 10000, got "1e3"'],
    ["?limit=", 'Cannot list remaps: "limit" must be an integer from 0 to 10000, got ""'],
    ["?limit=ten", 'Cannot list remaps: "limit" must be an integer from 0 to 10000, got "ten"'],
    ["?limit=%2010", 'Cannot list remaps: "limit" must be an integer from 0 to 10000, got " 10"'],
    [
      "?offset=-5",
      `Cannot list remaps: "offset" must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}, got "-5"`,
    ],
    [
      "?offset=0x10",
      `Cannot list remaps: "offset" must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}, got "0x10"`,
    ],
    [
      "?offset=9007199254740992",
      `Cannot list remaps: "offset" must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}, got "9007199254740992"`,
    ],
    [
      `?offset=${"9".repeat(40)}`,
      `Cannot list remaps: "offset" must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}, got "${
        "9".repeat(32)
      }..."`,
    ],
    ["?limit=1&limit=2", 'Cannot list remaps: "limit" must be given once, got 2 values'],
  ];
  for (const [query, error] of rows) {
    const response = await app.request(`/api/v1/remaps${query}`);
    assert.equal(response.status, 400, query);
    assert.match(response.headers.get("content-type")!, /^application\/json/, query);
    assert.deepEqual(await response.json(), { error }, query);
  }
  assert.deepEqual(source.remapsCalls, []);
});

Deno.test("createApp() GET /api/v1/health answers 200 and ok for a clean setup", async () => {
  const response = await appOver().request("/api/v1/health");
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), {
    status: "ok",
    reasons: [],
    setup: { name: "vault", uuid: "0b5e7c2a-1d3f-4e6a-9b8c-7d6e5f4a3b2c", state: "clean" },
    spares: { active: 1, failed: 0, slotsFree: 97 },
    pendingBlocks: 0,
  });
});

Deno.test("createApp() GET /api/v1/health answers 503 and degraded so monitoring can alert", async () => {
  const base = statusFixture();
  const response = await appOver({ ...base, setup: { ...base.setup, state: "degraded" } }).request(
    "/api/v1/health",
  );
  assert.equal(response.status, 503);
  const body = await response.json();
  assert.equal(body.status, "degraded");
  assert.deepEqual(body.reasons, ['Setup "vault" is in the degraded state']);
});

Deno.test("createApp() GET /metrics answers every metric family in text format 0.0.4", async () => {
  const status = statusFixture({
    spares: [
      spareFixture(0, { slotsUsed: 3 }),
      spareFixture(1, {
        slotCount: 50,
        slotsUsed: 0,
        validCopies: 4,
        errors: 2,
        allocationStopped: true,
        state: "draining",
      }),
    ],
    counters: { ...statusFixture().counters, pending: 2 },
    pendingBlocks: [5, 9],
    migration: {
      spareIndex: 1,
      state: "running",
      blocksTotal: 100,
      blocksMoved: 40,
      blocksFailed: 0,
      startedMs: 1_700_000_000_000,
      rateBlocksPerS: 4,
      etaSeconds: 15,
    },
  });
  const response = await appOver(status).request("/metrics");
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), PROMETHEUS_CONTENT_TYPE);
  const text = await response.text();
  for (const line of text.trimEnd().split("\n")) {
    if (!line.startsWith("#")) assert.match(line, SAMPLE_LINE);
  }
  const families = parseExposition(text);
  const setup = { setup: "vault" };
  const expected: [
    name: string,
    type: string,
    samples: [labels: Record<string, string>, value: number][],
  ][] = [
    ["dm_remap_reads_total", "counter", [[setup, 1200]]],
    ["dm_remap_writes_total", "counter", [[setup, 340]]],
    ["dm_remap_read_bytes_total", "counter", [[setup, 4_915_200]]],
    ["dm_remap_written_bytes_total", "counter", [[setup, 1_392_640]]],
    ["dm_remap_flushes_total", "counter", [[setup, 17]]],
    ["dm_remap_read_errors_total", "counter", [[setup, 2]]],
    ["dm_remap_write_errors_total", "counter", [[setup, 0]]],
    ["dm_remap_remaps_created_total", "counter", [[setup, 1]]],
    ["dm_remap_remaps", "gauge", [[setup, 3]]],
    ["dm_remap_pending_blocks", "gauge", [[setup, 2]]],
    ["dm_remap_degraded", "gauge", [[setup, 1]]], // pending blocks make health 503
    ["dm_remap_spare_active", "gauge", [[{ ...setup, spare: "0" }, 1], [
      { ...setup, spare: "1" },
      0,
    ]]],
    ["dm_remap_spare_allocation_stopped", "gauge", [[{ ...setup, spare: "0" }, 0], [
      { ...setup, spare: "1" },
      1,
    ]]],
    ["dm_remap_spare_draining", "gauge", [[{ ...setup, spare: "0" }, 0], [
      { ...setup, spare: "1" },
      1,
    ]]],
    ["dm_remap_spare_migration_blocks_left", "gauge", [[setup, 60]]],
    ["dm_remap_allocation_policy", "gauge", [[{ ...setup, policy: "fill-first" }, 1]]],
    ["dm_remap_spare_missing", "gauge", [[{ ...setup, spare: "0" }, 0], [
      { ...setup, spare: "1" },
      0,
    ]]],
    ["dm_remap_spare_slot_errors_total", "counter", [[{ ...setup, spare: "0" }, 0], [
      { ...setup, spare: "1" },
      2,
    ]]],
    ["dm_remap_spare_slots", "gauge", [[{ ...setup, spare: "0" }, 100], [
      { ...setup, spare: "1" },
      50,
    ]]],
    ["dm_remap_spare_slots_used", "gauge", [[{ ...setup, spare: "0" }, 3], [{
      ...setup,
      spare: "1",
    }, 0]]],
    ["dm_remap_metadata_copies_valid", "gauge", [[{ ...setup, spare: "0" }, 5], [{
      ...setup,
      spare: "1",
    }, 4]]],
    ["dm_remap_events_total", "counter", [
      [{ ...setup, type: "remap" }, 1],
      [{ ...setup, type: "pending" }, 0],
      [{ ...setup, type: "read-error" }, 2],
      [{ ...setup, type: "remap-failed" }, 0],
      [{ ...setup, type: "spare-failed" }, 0],
      [{ ...setup, type: "spare-added" }, 0],
      [{ ...setup, type: "spare-draining" }, 0],
      [{ ...setup, type: "spare-removed" }, 0],
      [{ ...setup, type: "degraded" }, 0],
      [{ ...setup, type: "main-failed" }, 0],
      [{ ...setup, type: "started" }, 1],
      [{ ...setup, type: "stopped" }, 0],
      [{ ...setup, type: "config-reloaded" }, 0],
      [{ ...setup, type: "smart-risk-raised" }, 0],
      [{ ...setup, type: "metadata-repaired" }, 0],
      [{ ...setup, type: "metadata-scrub-failed" }, 0],
      [{ ...setup, type: "metadata-degraded" }, 0],
      [{ ...setup, type: "relocated" }, 0],
      [{ ...setup, type: "relocation-failed" }, 0],
      [{ ...setup, type: "scan-pass-completed" }, 0],
    ]],
    ["dm_remap_alerts_sent_total", "counter", [[{ ...setup, target: "pager" }, 4]]],
    ["dm_remap_alerts_failed_total", "counter", [[{ ...setup, target: "pager" }, 1]]],
    ["dm_remap_alerts_dropped_total", "counter", [[{ ...setup, target: "pager" }, 2]]],
    ["dm_remap_alerts_suppressed_total", "counter", [[{ ...setup, target: "pager" }, 7]]],
    ["dm_remap_nbd_connections", "gauge", [[setup, 1]]],
    ["dm_remap_uptime_seconds", "gauge", [[setup, 3600]]],
  ];
  assert.deepEqual([...families.keys()], expected.map(([name]) => name));
  for (const [name, type, samples] of expected) {
    const family = families.get(name)!;
    assert.equal(family.type, type, name);
    assert.ok(family.help.length > 0, `${name} has help`);
    assert.deepEqual(family.samples, samples.map(([labels, value]) => ({ labels, value })), name);
  }
  for (const family of ["dm_remap_reads_total", "dm_remap_spare_slots"]) {
    assert.equal(text.split(`# HELP ${family} `).length - 1, 1, `one HELP for ${family}`);
    assert.equal(text.split(`# TYPE ${family} `).length - 1, 1, `one TYPE for ${family}`);
  }
});

Deno.test("createApp() GET /metrics escapes the setup name in the setup label", async () => {
  const base = statusFixture();
  const name = 'lab "A"\\rack\n2';
  const text =
    await (await appOver({ ...base, setup: { ...base.setup, name } }).request("/metrics")).text();
  assert.ok(text.includes('dm_remap_reads_total{setup="lab \\"A\\"\\\\rack\\n2"} 1200\n'));
  for (const family of parseExposition(text).values()) {
    for (const sample of family.samples) assert.equal(sample.labels.setup, name);
  }
});

Deno.test("createApp() GET /metrics sets dm_remap_degraded to 1 exactly when health answers 503", async () => {
  const base = statusFixture();
  const rows: [scenario: string, status: SetupStatus, degraded: number][] = [
    ["clean", base, 0],
    ["degraded state", { ...base, setup: { ...base.setup, state: "degraded" } }, 1],
    [
      "spare failed",
      { ...base, spares: [spareFixture(0), spareFixture(1, { state: "failed" })] },
      1,
    ],
  ];
  for (const [scenario, status, degraded] of rows) {
    const app = appOver(status);
    const metrics = parseExposition(await (await app.request("/metrics")).text());
    assert.equal(metrics.get("dm_remap_degraded")!.samples[0]!.value, degraded, scenario);
    assert.equal(
      (await app.request("/api/v1/health")).status,
      degraded === 1 ? 503 : 200,
      scenario,
    );
  }
});

Deno.test("createApp() GET / answers the HTML dashboard", async () => {
  const response = await appOver().request("/");
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type")!, /^text\/html/);
  assert.match(await response.text(), /getJson\("\/api\/v1\/status"\)/);
});

Deno.test("createApp() answers an unknown path or method with 404 and a JSON error", async () => {
  const app = createApp(fakeSource(), { guard: { token: "t0ken" } });
  const rows: [method: string, path: string][] = [
    ["GET", "/api/v1/nope"],
    ["GET", "/api/v2/status"],
    ["POST", "/api/v1/status"],
    ["DELETE", "/api/v1/remaps"],
  ];
  for (const [method, path] of rows) {
    // Mutations pass the guard first: with the token, an unknown route is 404 as for GET.
    const response = await app.request(path, {
      method,
      headers: { authorization: "Bearer t0ken" },
    });
    assert.equal(response.status, 404, `${method} ${path}`);
    const body = await response.json();
    assert.match(
      body.error,
      new RegExp(
        `^Cannot find "${method} ${path.replaceAll("/", "\\/")}": the API serves GET /, `,
      ),
    );
  }
});

Deno.test("createApp() answers a failing source with 500 and the error message as JSON", async () => {
  const source: StatusSource = {
    status() {
      throw new Error('Cannot read "/dev/sdb": offset 4096, length 512: EIO');
    },
    remaps() {
      throw new TypeError("remap table is closed");
    },
    events() {
      throw new TypeError("event history is closed");
    },
  };
  const app = createApp(source);
  const rows: [path: string, error: string][] = [
    ["/api/v1/status", 'Cannot read "/dev/sdb": offset 4096, length 512: EIO'],
    ["/api/v1/health", 'Cannot read "/dev/sdb": offset 4096, length 512: EIO'],
    ["/metrics", 'Cannot read "/dev/sdb": offset 4096, length 512: EIO'],
    ["/api/v1/remaps", "remap table is closed"],
    ["/api/v1/events", "event history is closed"],
  ];
  for (const [path, error] of rows) {
    const response = await app.request(path);
    assert.equal(response.status, 500, path);
    assert.deepEqual(await response.json(), { error }, path);
  }
});

Deno.test("createApp() answers 500 when the source breaks its contract by returning more than `limit` remaps", async () => {
  const source: StatusSource = {
    status: statusFixture,
    remaps() {
      return { total: 3, entries: remapsFixture(3) };
    },
    events: () => [],
  };
  const response = await createApp(source).request("/api/v1/remaps?limit=2");
  assert.equal(response.status, 500);
  assert.deepEqual(await response.json(), { error: "the source returns at most `limit` remaps" });
});

Deno.test("createApp() GET /api/v1/events returns the newest events, at most `limit`, and refuses a bad limit", async () => {
  const app = createApp(fakeSource());
  const all = await app.request("/api/v1/events");
  assert.equal(all.status, 200);
  assert.deepEqual(await all.json(), { events: EVENTS_FIXTURE });
  const one = await app.request("/api/v1/events?limit=1");
  assert.deepEqual((await one.json()).events.map((event: { id: number }) => event.id), [2]);
  const refused = await app.request("/api/v1/events?limit=5000");
  assert.equal(refused.status, 400);
  assert.match(
    (await refused.json()).error,
    /Cannot list events: "limit" must be an integer from 0 to 1000/,
  );
});

Deno.test("createApp() GET /metrics answers SMART, forecast and scrub families when the status has them", async () => {
  const status = statusFixture({
    health: {
      smart: {
        intervalMs: 1_800_000,
        rounds: 1,
        disks: [
          {
            role: "main",
            path: "/dev/sda",
            reading: {
              state: "ok",
              device: "/dev/sda",
              protocol: "ata",
              kind: "hdd",
              serial: "Z295RVX4",
              passed: true,
              temperatureC: 36,
              counters: { reallocatedSectors: 3, pendingSectors: 1 },
              attributes: [],
              failingAttributes: [],
              selfTests: [],
              timeMs: 0,
            },
            risk: { level: "high", reasons: ["197 Current_Pending_Sector is 1"], rising: [] },
          },
          {
            role: "spare 0",
            path: "/srv/spare.img",
            reading: { state: "no-smart", device: "/srv/spare.img", reason: "file", timeMs: 0 },
            risk: { level: "none", reasons: ["no SMART: file"], rising: [] },
          },
          { role: "spare 1", path: "/dev/sdc" },
        ],
      },
      scrub: {
        intervalMs: 3_600_000,
        passes: 4,
        lastPassMs: 5_000,
        spares: [
          {
            spareIndex: 0,
            state: "repaired",
            lastScrubMs: 5_000,
            lastRepairs: ["copy 2: x"],
            repairsTotal: 1,
            failures: 0,
          },
          {
            spareIndex: 1,
            state: "degraded",
            lastScrubMs: 4_000,
            lastRepairs: [],
            repairsTotal: 0,
            failures: 6,
          },
        ],
      },
      forecast: {
        state: "forecast",
        slotsFree: 480,
        remapsPerDay: 12,
        spanDays: 7,
        daysLeft: { low: 32, expected: 40, high: null },
        reasons: [],
        summary: "",
      },
    },
  });
  const text = await (await appOver(status).request("/metrics")).text();
  const families = parseExposition(text);
  const samples = (name: string) =>
    families.get(name)!.samples.map(({ labels, value }) => [labels, value]);
  const main = { setup: "vault", disk: "/dev/sda", role: "main" };
  const spare = { setup: "vault", disk: "/srv/spare.img", role: "spare 0" };
  assert.deepEqual(samples("dm_remap_smart_available"), [[main, 1], [spare, 0]]);
  assert.deepEqual(samples("dm_remap_smart_risk_level"), [[main, 3], [spare, 0]]);
  assert.deepEqual(samples("dm_remap_smart_counter"), [
    [{ ...main, counter: "reallocatedSectors" }, 3],
    [{ ...main, counter: "pendingSectors" }, 1],
  ]);
  assert.deepEqual(samples("dm_remap_smart_temperature_celsius"), [[main, 36]]);
  assert.deepEqual(samples("dm_remap_spare_pool_seconds_left"), [
    [{ setup: "vault", bound: "low" }, 32 * 86_400],
    [{ setup: "vault", bound: "expected" }, 40 * 86_400],
    [{ setup: "vault", bound: "high" }, Infinity],
  ]);
  assert.deepEqual(samples("dm_remap_remaps_per_day"), [[{ setup: "vault" }, 12]]);
  assert.deepEqual(samples("dm_remap_metadata_scrub_passes_total"), [[{ setup: "vault" }, 4]]);
  assert.deepEqual(samples("dm_remap_metadata_scrub_repairs_total"), [
    [{ setup: "vault", spare: "0" }, 1],
    [{ setup: "vault", spare: "1" }, 0],
  ]);
  assert.deepEqual(samples("dm_remap_metadata_scrub_degraded"), [
    [{ setup: "vault", spare: "0" }, 0],
    [{ setup: "vault", spare: "1" }, 1],
  ]);
  assert.deepEqual(samples("dm_remap_metadata_scrub_last_timestamp_seconds"), [
    [{ setup: "vault", spare: "0" }, 5],
    [{ setup: "vault", spare: "1" }, 4],
  ]);
  assert.equal(families.has("dm_remap_smart_available"), true);
  const withoutSmart =
    await (await appOver({ ...status, health: { ...status.health!, smart: null } })
      .request("/metrics")).text();
  assert.equal(parseExposition(withoutSmart).has("dm_remap_smart_available"), false);
});

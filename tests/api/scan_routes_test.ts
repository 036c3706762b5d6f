/**
 * The scanner's API routes and metrics over a real scanner.
 *
 * Method: a `Scanner` over an engine on memory devices (one weak block), the
 * app built with its health report and controls, asked with `app.request()`.
 */

import assert from "node:assert/strict";
import { createApp } from "../../mod/api/app.ts";
import type { StatusSource } from "../../mod/api/status.ts";
import { Scanner } from "../../mod/scan/mod.ts";
import { makeHarness } from "../remap/harness.ts";
import { statusFixture } from "./fixtures.ts";
import { parseExposition } from "./exposition.ts";

const MIB = 1024 * 1024;

/** The POST routes are behind the API's guard (mutation_guard.ts): these requests carry its token. */
const TOKEN = "scan-test";
const AUTHORIZED = { authorization: `Bearer ${TOKEN}` };

Deno.test("scan routes: status, health report with inputs, POST stop and start, and the metrics", async () => {
  const { engine, faulty } = await makeHarness();
  faulty.setWeak({ offsetBytes: 5 * 4096, lengthBytes: 4096 });
  const scanner = new Scanner(engine, {
    settings: {
      enabled: true,
      intervalMs: 3_600_000,
      rateMaxBytesPerS: 1024 * MIB,
      regionBytes: MIB,
    },
  });
  await scanner.start();
  scanner.startPass();
  while (scanner.status().passesCompleted < 1) await new Promise((r) => setTimeout(r, 5));
  const source: StatusSource = {
    status: () => statusFixture(),
    remaps: () => ({ total: 0, entries: [] }),
    events: () => [],
    healthReport: () => scanner.health(),
  };
  const app = createApp(source, { scanControl: scanner, guard: { token: TOKEN } });
  try {
    const status = await (await app.request("/api/v1/scan")).json();
    assert.equal(status.state, "waiting");
    assert.equal(status.passesCompleted, 1);
    assert.equal(status.nextPassDueMs, status.lastPassCompletedMs + 3_600_000);
    const waiting = parseExposition(await (await app.request("/metrics")).text());
    assert.equal(
      waiting.get("dm_remap_scan_next_pass_timestamp_seconds")!.samples[0]!.value,
      Math.floor(status.nextPassDueMs / 1000),
    );
    const report = await (await app.request("/api/v1/scan/health")).json();
    assert.equal(report.setup.score, 90);
    assert.equal(report.setup.label, "GOOD");
    assert.deepEqual(report.regions[0].inputs.retriedReads, 1);
    assert.equal(report.regions.length, 4);
    assert.equal(report.smart, null);
    assert.equal(report.forecast, null);
    assert.equal((await app.request("/api/v1/scan/start")).status, 404, "start is POST only");
    const started =
      await (await app.request("/api/v1/scan/start", { method: "POST", headers: AUTHORIZED }))
        .json();
    assert.equal(started.state, "scanning");
    const stopped =
      await (await app.request("/api/v1/scan/stop", { method: "POST", headers: AUTHORIZED }))
        .json();
    assert.equal(stopped.state, "paused");
    const families = parseExposition(await (await app.request("/metrics")).text());
    assert.equal(families.get("dm_remap_health_score")!.samples[0]!.value, 90);
    assert.deepEqual(
      families.get("dm_remap_region_health_score")!.samples.map((s) => [s.labels.region, s.value]),
      [["0", 90], ["1", 100], ["2", 100], ["3", 100]],
    );
    assert.ok(families.has("dm_remap_scan_progress_ratio"));
    assert.ok(!families.has("dm_remap_scan_next_pass_timestamp_seconds"), "none while paused");
    assert.equal(families.get("dm_remap_scan_passes_total")!.samples[0]!.value, 1);
    assert.equal(families.get("dm_remap_scan_relocations_total")!.samples[0]!.value, 1);
    const readBytes = families.get("dm_remap_scan_read_bytes_total")!.samples[0]!.value;
    assert.equal(readBytes, scanner.status().bytesScanned);
    assert.ok(readBytes >= engine.sizeBytes, `a whole pass read: ${readBytes} bytes`);
  } finally {
    await scanner.stop();
    await engine.close();
  }
});

Deno.test("scan routes answer 404 naming the reason when the server runs no scanner", async () => {
  const app = createApp({
    status: () => statusFixture(),
    remaps: () => ({ total: 0, entries: [] }),
    events: () => [],
  }, { guard: { token: TOKEN } });
  for (
    const [path, method] of [["/api/v1/scan", "GET"], ["/api/v1/scan/health", "GET"], [
      "/api/v1/scan/start",
      "POST",
    ]]
  ) {
    const response = await app.request(path!, { method, headers: AUTHORIZED });
    assert.equal(response.status, 404, path);
    assert.match((await response.json()).error, /no scanner/);
  }
  const families = parseExposition(await (await app.request("/metrics")).text());
  assert.ok(!families.has("dm_remap_scan_progress_ratio"));
});

/**
 * The dashboard in a real browser: Debian's Chromium, headless, driven by
 * playwright-core, loads `/` from a real setup served by `SetupService` with
 * remapped and pending blocks. The page must load with no console error or
 * warning, show the remap and pending counts the API reports, and draw the
 * health map as the API reports it: before any scan every cell is "not
 * scanned yet"; after a scan pass over a main disk with weak and dead blocks
 * in chosen regions, every cell carries the score and label of the scanner
 * region it lies in (`GET /api/v1/scan/health`) and the fill of that label,
 * and the mark of the remapped or pending block it holds
 * (`GET /api/v1/remaps`, `pendingBlocks`); the scan's progress shows the
 * pass; a new remap appears live.
 *
 * Method: each cell's DOM attributes and fill are compared with what the
 * API answers, region by region; then a screenshot of the map is decoded
 * (`png.ts`) and, for every cell, a pixel near its corner must have the
 * region's fill and the pixel at its centre the mark's colour (or the fill).
 * With `DM_REMAP_DASHBOARD_PNG=<path>` the whole page is also saved there
 * (docs/dashboard.png was made so).
 */

import assert from "node:assert/strict";
import { chromium, type Page } from "playwright-core";
import {
  HEALTH_MAP_CELL_PX,
  HEALTH_MAP_COLOURS,
  HEALTH_MAP_COLUMNS,
  HEALTH_MAP_REGIONS,
} from "../../mod/api/routes/dashboard.ts";
import type { SetupStatus } from "../../mod/api/status.ts";
import type { HealthLabel, HealthReport } from "../../mod/scan/mod.ts";
import { apiRequest } from "../e2e/api_request.ts";
import { BLOCK_BYTES, serveSetup } from "../service/served_setup.ts";
import { decodePng, pixelAt } from "./png.ts";

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** The 64 MiB main disk has 16384 blocks; 4 MiB scan regions of 1024 blocks each. */
const BLOCK_COUNT = 16384;
const REGION_BYTES = 4 * 1024 * 1024;
/** Blocks spread over the disk; 12000 and 12001 share a cell. */
const REMAP_BLOCKS = [100, 5000, 12000, 12001];
const PENDING_BLOCKS = [9000];
/** Written while the page is open: the map and the count must follow. */
const LATE_REMAP_BLOCK = 15000;
/** What the scan pass finds: a weak block in region 1, dead ones in regions 3, 5 and 7. */
const WEAK_BLOCK = 1500;
const DEAD_BLOCKS = [3500, 5200, 5600, 7200, 7300, 7400, 7500];

Deno.test("The dashboard in headless Chromium draws the scanner's region health, remaps and pending blocks as the API reports them", async () => {
  const served = await serveSetup({
    remapBlocks: REMAP_BLOCKS,
    pendingBlocks: PENDING_BLOCKS,
    badBlocks: [LATE_REMAP_BLOCK],
    api: { tcp: { hostname: "127.0.0.1", port: 0 } },
    scan: { regionBytes: REGION_BYTES },
  });
  const profile = await Deno.makeTempDir({ prefix: "dm-remap-chromium-" });
  // A fresh profile each run; playwright passes it to Chromium as --user-data-dir.
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1000, height: 1100 },
    deviceScaleFactor: 1,
  });
  try {
    const url = served.service.apiAddresses[1]!;
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on("console", (message) => {
      if (message.type() === "error" || message.type() === "warning") {
        problems.push(`${message.type()}: ${message.text()}`);
      }
    });
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    await page.goto(url);
    const status = await api<SetupStatus>(url, "/api/v1/status");
    assert.equal(status.counters.remaps, REMAP_BLOCKS.length);
    await waitForText(page, "#remap-count", String(status.counters.remaps));
    assert.equal(await page.textContent("#pending-count"), String(status.counters.pending));
    assert.equal(await page.textContent("#name"), "web");
    assert.match((await page.textContent("#events"))!, /remap/);
    // Before any pass, no region has been read: every cell says so.
    const unscanned = await checkMap(page, url);
    assert.deepEqual(unscanned.labels, { unscanned: HEALTH_MAP_REGIONS });

    // A scan pass over weak and dead blocks: region scores fall, and the map follows.
    served.main.setWeak({ offsetBytes: WEAK_BLOCK * BLOCK_BYTES, lengthBytes: BLOCK_BYTES });
    served.main.addBadBlocks(DEAD_BLOCKS, "read");
    const started = await apiRequest(served.apiSocket, "/api/v1/scan/start", { method: "POST" });
    assert.equal(started.status, 200, started.text);
    for (let waitedMs = 0;; waitedMs += 100) {
      if ((await api<HealthReport>(url, "/api/v1/scan/health")).scan.passesCompleted > 0) break;
      assert.ok(waitedMs < 60_000, "the scan pass did not complete");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await waitForText(page, "#scan-state", "waiting");
    await waitFor(
      page,
      async () => (await page.textContent("#scan"))!.includes("1 passes completed"),
    );
    const scanned = await checkMap(page, url);
    const byRegion = scanned.regions;
    assert.equal(byRegion.get(7)!.label, "CRITICAL", "four dead blocks");
    assert.ok(byRegion.get(5)!.score <= 40, "two dead blocks");
    assert.ok(byRegion.get(3)!.score <= 70, "one dead block");
    assert.ok(byRegion.get(1)!.score <= 90, "one weak block");
    assert.ok(Object.keys(scanned.labels).length >= 4, JSON.stringify(scanned.labels));
    assert.equal(scanned.labels.unscanned, undefined, "the pass read every region");
    // The dead blocks, the weak one, and the late block (bad from the start, unread by clients).
    const scan = (await api<HealthReport>(url, "/api/v1/scan/health")).scan;
    assert.equal(scan.findingsLastPass, DEAD_BLOCKS.length + 2);
    assert.match(
      (await page.textContent("#scan"))!,
      new RegExp(`bad blocks found: 0 in this pass, ${scan.findingsLastPass} in the last`),
    );
    assert.match((await page.textContent("#health-score"))!, /^health \d+ (POOR|CRITICAL)$/);

    // Live: a new remap appears without a reload.
    await served.service.engine.write(
      new Uint8Array(BLOCK_BYTES).fill(1),
      LATE_REMAP_BLOCK * BLOCK_BYTES,
    );
    const after = (await api<SetupStatus>(url, "/api/v1/status")).counters.remaps;
    await waitForText(page, "#remap-count", String(after));
    const late = await checkMap(page, url);
    assert.equal(late.marks.get(cellOf(LATE_REMAP_BLOCK)), "remapped");

    const savePath = Deno.env.get("DM_REMAP_DASHBOARD_PNG");
    if (savePath !== undefined) await page.screenshot({ path: savePath, fullPage: true });
    assert.deepEqual(problems, [], "the page logs no error or warning");
  } finally {
    await browser.close();
    await Deno.remove(profile, { recursive: true });
    await served.close();
  }
});

async function api<T>(url: string, path: string): Promise<T> {
  const response = await fetch(`${url}${path}`);
  assert.equal(response.status, 200, path);
  return await response.json() as T;
}

function cellOf(block: number): number {
  return Math.floor(block * HEALTH_MAP_REGIONS / BLOCK_COUNT);
}

async function waitFor(page: Page, ready: () => Promise<boolean>): Promise<void> {
  for (let waitedMs = 0; waitedMs < 10_000; waitedMs += 100) {
    if (await ready()) return;
    await page.waitForTimeout(100);
  }
  assert.fail("the page did not update in 10 s");
}

/** Waits until the element shows `text`, as the page's polling updates it. */
async function waitForText(page: Page, selector: string, text: string): Promise<void> {
  let shown: string | null = null;
  for (let waitedMs = 0; waitedMs < 10_000; waitedMs += 100) {
    shown = await page.textContent(selector);
    if (shown === text) return;
    await page.waitForTimeout(100);
  }
  assert.fail(`${selector} shows ${JSON.stringify(shown)}, not ${JSON.stringify(text)}`);
}

/** What one cell of the map shows, as its attributes say. */
interface CellView {
  region: string | null;
  score: string | null;
  label: string | null;
  scanned: string | null;
  mark: string | null;
  fill: string | null;
}

/**
 * Compares every cell with the API, once the page shows the API's current
 * remap count: its region (4 MiB regions hold 64 cells each), that region's
 * score and label, its fill, and its mark; then the screenshot's pixels.
 *
 * @returns The regions as the API reported them, the cells per label, and each marked cell.
 */
async function checkMap(page: Page, url: string) {
  const report = await api<HealthReport>(url, "/api/v1/scan/health");
  const status = await api<SetupStatus>(url, "/api/v1/status");
  const remaps = await api<{ entries: { blockIndex: number }[] }>(
    url,
    "/api/v1/remaps?limit=10000",
  );
  // The page polls every 2 s: wait for a poll after these answers.
  await page.waitForTimeout(2_500);
  const regions = new Map(report.regions.map((region) => [region.regionIndex, region]));
  const marks = new Map<number, string>();
  for (const entry of remaps.entries) marks.set(cellOf(entry.blockIndex), "remapped");
  for (const block of status.pendingBlocks) marks.set(cellOf(block), "pending");
  const cells: CellView[] = await page.$$eval(
    "#health-map g[data-cell]",
    (groups) =>
      groups.map((group) => ({
        region: group.getAttribute("data-region"),
        score: group.getAttribute("data-score"),
        label: group.getAttribute("data-label"),
        scanned: group.getAttribute("data-scanned"),
        mark: group.getAttribute("data-mark"),
        fill: group.querySelector("rect.cell")!.getAttribute("fill"),
      })),
  );
  assert.equal(cells.length, HEALTH_MAP_REGIONS);
  const labels: Record<string, number> = {};
  const image = await decodePng(await page.locator("#health-map").screenshot({ type: "png" }));
  assert.equal(image.width, HEALTH_MAP_COLUMNS * (HEALTH_MAP_CELL_PX + 1));
  cells.forEach((cell, index) => {
    const region = regions.get(Math.floor(index / 64))!;
    const scanned = region.inputs.lastScannedMs !== undefined;
    const fill = scanned
      ? HEALTH_MAP_COLOURS[region.label as HealthLabel]
      : HEALTH_MAP_COLOURS.unscanned;
    const mark = marks.get(index) ?? "";
    assert.deepEqual(cell, {
      region: String(region.regionIndex),
      score: String(region.score),
      label: region.label,
      scanned: String(scanned),
      mark,
      fill,
    }, `cell ${index}`);
    const name = scanned ? region.label : "unscanned";
    labels[name] = (labels[name] ?? 0) + 1;
    const x = (index % HEALTH_MAP_COLUMNS) * (HEALTH_MAP_CELL_PX + 1);
    const y = Math.floor(index / HEALTH_MAP_COLUMNS) * (HEALTH_MAP_CELL_PX + 1);
    assert.equal(pixelAt(image, x + 1, y + 1), fill, `the fill of cell ${index}`);
    const centre = mark === "" ? fill : HEALTH_MAP_COLOURS[mark as "remapped" | "pending"];
    const half = HEALTH_MAP_CELL_PX / 2;
    assert.equal(pixelAt(image, x + half, y + half), centre, `the centre of cell ${index}`);
  });
  return { regions, labels, marks };
}

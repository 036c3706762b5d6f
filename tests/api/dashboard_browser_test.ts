/**
 * The dashboard in a real browser: Debian's Chromium, headless, driven by
 * playwright-core, loads `/` from a real setup served by `SetupService` with
 * remapped and pending blocks. The page must load with no console error, show
 * the remap and pending counts the API reports, follow a new remap live, and
 * draw the health map: in a screenshot, each region holding a remapped block
 * has the remap colour, the region of the pending block the pending colour,
 * and the rest the "ok" colour.
 *
 * Method: the screenshot of the map's canvas is decoded (`png.ts`) and the
 * centre pixel of every cell compared with the region each block falls in.
 * With `DM_REMAP_DASHBOARD_PNG=<path>` the whole page is also saved there
 * (docs/dashboard.png was made so).
 */

import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import {
  HEALTH_MAP_CELL_PX,
  HEALTH_MAP_COLOURS,
  HEALTH_MAP_COLUMNS,
  HEALTH_MAP_REGIONS,
} from "../../mod/api/routes/dashboard.ts";
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

/** Blocks spread over the 16384-block main disk; 12000 and 12001 share a region. */
const REMAP_BLOCKS = [100, 5000, 12000, 12001];
const PENDING_BLOCKS = [9000];
/** Written while the page is open: the map and the count must follow. */
const LATE_REMAP_BLOCK = 15000;

Deno.test("The dashboard in headless Chromium shows the API's remaps and draws the health map", async () => {
  const served = await serveSetup({
    remapBlocks: REMAP_BLOCKS,
    pendingBlocks: PENDING_BLOCKS,
    badBlocks: [LATE_REMAP_BLOCK],
    api: { tcp: { hostname: "127.0.0.1", port: 0 } },
  });
  const profile = await Deno.makeTempDir({ prefix: "dm-remap-chromium-" });
  // A fresh profile each run; playwright passes it to Chromium as --user-data-dir.
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1000, height: 900 },
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
    const status = await (await fetch(`${url}/api/v1/status`)).json();
    assert.equal(status.counters.remaps, REMAP_BLOCKS.length);
    await waitForText(page, "#remap-count", String(status.counters.remaps));
    assert.equal(await page.textContent("#pending-count"), String(status.counters.pending));
    assert.equal(await page.textContent("#name"), "web");
    assert.match((await page.textContent("#events"))!, /remap/);
    await checkMap(page, [...REMAP_BLOCKS], 16384);

    // Live: a new remap appears without a reload.
    await served.service.engine.write(
      new Uint8Array(BLOCK_BYTES).fill(1),
      LATE_REMAP_BLOCK * BLOCK_BYTES,
    );
    const after = (await (await fetch(`${url}/api/v1/status`)).json()).counters.remaps;
    assert.equal(after, REMAP_BLOCKS.length + 1);
    await waitForText(page, "#remap-count", String(after));
    await checkMap(page, [...REMAP_BLOCKS, LATE_REMAP_BLOCK], 16384);

    const savePath = Deno.env.get("DM_REMAP_DASHBOARD_PNG");
    if (savePath !== undefined) await page.screenshot({ path: savePath, fullPage: true });
    assert.deepEqual(problems, [], "the page logs no error or warning");
  } finally {
    await browser.close();
    await Deno.remove(profile, { recursive: true });
    await served.close();
  }
});

/** Waits until the element shows `text`, as the page's polling updates it. */
async function waitForText(
  page: import("playwright-core").Page,
  selector: string,
  text: string,
): Promise<void> {
  let shown: string | null = null;
  for (let waitedMs = 0; waitedMs < 10_000; waitedMs += 100) {
    shown = await page.textContent(selector);
    if (shown === text) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`${selector} shows ${JSON.stringify(shown)}, not ${JSON.stringify(text)}`);
}

/** Checks the centre pixel of every cell against the regions of the blocks. */
async function checkMap(
  page: import("playwright-core").Page,
  remapBlocks: number[],
  blockCount: number,
): Promise<void> {
  const regionOf = (block: number) => Math.floor(block * HEALTH_MAP_REGIONS / blockCount);
  const expected = new Array<string>(HEALTH_MAP_REGIONS).fill(HEALTH_MAP_COLOURS.ok);
  for (const block of remapBlocks) expected[regionOf(block)] = HEALTH_MAP_COLOURS.remapped;
  for (const block of PENDING_BLOCKS) expected[regionOf(block)] = HEALTH_MAP_COLOURS.pending;
  const image = await decodePng(await page.locator("#health-map").screenshot({ type: "png" }));
  assert.equal(image.width, HEALTH_MAP_COLUMNS * (HEALTH_MAP_CELL_PX + 1));
  const seen = { ok: 0, remapped: 0, pending: 0 };
  for (let region = 0; region < HEALTH_MAP_REGIONS; region++) {
    const x = (region % HEALTH_MAP_COLUMNS) * (HEALTH_MAP_CELL_PX + 1) + HEALTH_MAP_CELL_PX / 2;
    const y = Math.floor(region / HEALTH_MAP_COLUMNS) * (HEALTH_MAP_CELL_PX + 1) +
      HEALTH_MAP_CELL_PX / 2;
    const colour = pixelAt(image, x, y);
    assert.equal(colour, expected[region], `region ${region} at (${x}, ${y})`);
    for (const [name, value] of Object.entries(HEALTH_MAP_COLOURS)) {
      if (value === colour) seen[name as keyof typeof seen]++;
    }
  }
  const remapped = new Set(remapBlocks.map(regionOf)).size;
  assert.deepEqual(seen, {
    ok: HEALTH_MAP_REGIONS - remapped - 1,
    remapped,
    pending: 1,
  });
}

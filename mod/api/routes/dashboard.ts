/**
 * `GET /`: the dashboard, one self-contained page that polls the API.
 *
 * What it shows: the setup's state; a health map of the main disk (its
 * blocks cut into {@link HEALTH_MAP_REGIONS} regions, drawn on a canvas, a
 * region marked when it holds a pending or a remapped block); a bar per
 * spare for its slots in use; the scan's progress; counters; the newest
 * events. It polls `/api/v1/status` and `/api/v1/events` every
 * {@link DASHBOARD_POLL_INTERVAL_MS}, and re-reads the remap list (paged,
 * at most {@link HEALTH_MAP_REMAPS_MAX} blocks) when the remap count changed.
 *
 * The page is self-contained (inline CSS and script, no fonts, images or
 * CDN), because the appliance may have no network beyond this socket; its
 * Content-Security-Policy enforces that. Every value from the API goes in
 * through `textContent` or the canvas, never as HTML, so a setup or device
 * name cannot inject markup.
 *
 * @module
 */

import type { Context } from "hono";
import type { ApiEnv } from "../_env.ts";
import { REMAPS_PAGE_ENTRIES_MAX } from "./remaps.ts";

/** How often the dashboard asks for a new status. */
export const DASHBOARD_POLL_INTERVAL_MS = 2_000;
/** Columns of the health map; each region is one cell. */
export const HEALTH_MAP_COLUMNS = 64;
/** Rows of the health map. */
export const HEALTH_MAP_ROWS = 16;
/** Regions the main disk is cut into, in block order, row by row. */
export const HEALTH_MAP_REGIONS = HEALTH_MAP_COLUMNS * HEALTH_MAP_ROWS;
/** The side of one cell in CSS pixels, with a 1-pixel gap to its right and below. */
export const HEALTH_MAP_CELL_PX = 10;
/** The most remapped blocks the map reads (ten pages); beyond, the count still shows them all. */
export const HEALTH_MAP_REMAPS_MAX = 10 * REMAPS_PAGE_ENTRIES_MAX;

/**
 * The map's colours, as `#rrggbb`. A region with no known problem is "ok"
 * until the scanner reports region health; a pending block wins over a remap.
 */
export const HEALTH_MAP_COLOURS = {
  ok: "#a5d6a7",
  remapped: "#1565c0",
  pending: "#c62828",
} as const;

/** Allows only the page's own inline style and script, and fetches from its own origin. */
const DASHBOARD_CSP =
  "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const MAP_WIDTH_PX = HEALTH_MAP_COLUMNS * (HEALTH_MAP_CELL_PX + 1);
const MAP_HEIGHT_PX = HEALTH_MAP_ROWS * (HEALTH_MAP_CELL_PX + 1);

/** The dashboard page. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dm-remap</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; background: #fafafa; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  h2 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
  .muted { color: #777; }
  .badge { display: inline-block; padding: .1rem .5rem; border-radius: .6rem; color: #fff; background: #888; }
  .badge.clean, .badge.active { background: #2e7d32; }
  .badge.degraded, .badge.failed { background: #c62828; }
  .columns { display: flex; flex-wrap: wrap; gap: 2rem; }
  table { border-collapse: collapse; }
  td, th { padding: .15rem .8rem .15rem 0; text-align: left; vertical-align: top; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  .spare { margin: .4rem 0; padding: .5rem; background: #fff; border: 1px solid #ddd; border-radius: .3rem; min-width: 22rem; }
  .bar { height: .6rem; background: #e0e0e0; border-radius: .3rem; overflow: hidden; margin: .3rem 0; }
  .bar > div { height: 100%; background: #1565c0; }
  #health-map { display: block; background: #fafafa; }
  .legend span.swatch { display: inline-block; width: .8rem; height: .8rem; margin: 0 .3rem 0 .8rem; vertical-align: -.1rem; }
  .legend span.swatch:first-child { margin-left: 0; }
  #events td { font-size: .9em; }
  #error { color: #c62828; }
  code { font-size: .9em; }
</style>
</head>
<body>
<h1><span id="name">dm-remap</span> <span id="state" class="badge">…</span></h1>
<div class="muted" id="identity"></div>
<div id="error"></div>
<h2>Main disk <span class="muted" id="main"></span></h2>
<canvas id="health-map" width="${MAP_WIDTH_PX}" height="${MAP_HEIGHT_PX}" aria-label="health map of the main disk"></canvas>
<div class="legend muted">
<span class="swatch" style="background:${HEALTH_MAP_COLOURS.ok}"></span>no known problem
<span class="swatch" style="background:${HEALTH_MAP_COLOURS.remapped}"></span>remapped blocks: <strong id="remap-count">…</strong>
<span class="swatch" style="background:${HEALTH_MAP_COLOURS.pending}"></span>pending blocks: <strong id="pending-count">…</strong>
<span id="map-scale"></span>
</div>
<div class="columns">
<div>
<h2>Spares</h2>
<div id="spares"></div>
<h2>Scan</h2>
<div id="scan" class="muted"></div>
</div>
<div>
<h2>Counters</h2>
<table><tbody id="counters"></tbody></table>
</div>
</div>
<h2>Recent events</h2>
<table><tbody id="events"></tbody></table>
<div class="muted" id="updated"></div>
<script>
"use strict";
const POLL_INTERVAL_MS = ${DASHBOARD_POLL_INTERVAL_MS};
const COLUMNS = ${HEALTH_MAP_COLUMNS};
const REGIONS = ${HEALTH_MAP_REGIONS};
const CELL_PX = ${HEALTH_MAP_CELL_PX};
const PAGE_MAX = ${REMAPS_PAGE_ENTRIES_MAX};
const REMAPS_MAX = ${HEALTH_MAP_REMAPS_MAX};
const COLOURS = ${JSON.stringify(HEALTH_MAP_COLOURS)};
const EVENTS_SHOWN = 15;
const $ = (id) => document.getElementById(id);
let remapBlocks = [];
let remapBlocksCount = -1;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(url + ": HTTP " + response.status);
  return await response.json();
}

/** The remapped blocks, page by page, up to REMAPS_MAX. */
async function readRemapBlocks(total) {
  const blocks = [];
  for (let offset = 0; offset < Math.min(total, REMAPS_MAX); offset += PAGE_MAX) {
    const page = await getJson("/api/v1/remaps?offset=" + offset + "&limit=" + PAGE_MAX);
    for (const entry of page.entries) blocks.push(entry.blockIndex);
  }
  return blocks;
}

function drawMap(s) {
  const blockCount = Math.ceil(s.setup.sizeBytes / s.setup.blockBytes);
  const regionOf = (block) => Math.min(REGIONS - 1, Math.floor(block * REGIONS / blockCount));
  const marks = new Array(REGIONS).fill("ok");
  for (const block of remapBlocks) marks[regionOf(block)] = "remapped";
  for (const block of s.pendingBlocks) marks[regionOf(block)] = "pending";
  const context = $("health-map").getContext("2d");
  context.clearRect(0, 0, context.canvas.width, context.canvas.height);
  marks.forEach((mark, region) => {
    context.fillStyle = COLOURS[mark];
    context.fillRect((region % COLUMNS) * (CELL_PX + 1), Math.floor(region / COLUMNS) * (CELL_PX + 1),
      CELL_PX, CELL_PX);
  });
  $("map-scale").textContent = "· one cell is " + bytes(s.setup.sizeBytes / REGIONS) +
    (s.counters.remaps > remapBlocks.length ? " · map shows the first " + remapBlocks.length + " remaps" : "");
}

function renderStatus(s) {
  $("name").textContent = s.setup.name;
  $("state").textContent = s.setup.state;
  $("state").className = "badge " + s.setup.state;
  $("identity").textContent = "setup " + s.setup.uuid + " · " + bytes(s.setup.sizeBytes) +
    " · block " + s.setup.blockBytes + " B · format v" + s.setup.formatVersion +
    " · NBD export " + JSON.stringify(s.nbd.exportName) + ", " + s.nbd.connections + " connected" +
    " · up " + s.uptimeSeconds + " s · dm-remap " + s.version;
  $("main").textContent = s.main.path + " (" + s.main.kind + ", " + bytes(s.main.sizeBytes) + ")";
  $("remap-count").textContent = String(s.counters.remaps);
  $("pending-count").textContent = String(s.counters.pending);
  const c = s.counters;
  const rows = [
    ["reads", c.reads], ["writes", c.writes], ["bytes read", bytes(c.bytesRead)],
    ["bytes written", bytes(c.bytesWritten)], ["flushes", c.flushes], ["read errors", c.readErrors],
    ["write errors", c.writeErrors], ["remaps created", c.remapsCreated],
  ];
  $("counters").replaceChildren(...rows.map(([label, value]) => {
    const tr = el("tr");
    tr.append(el("th", label), el("td", value, "n"));
    return tr;
  }));
  $("spares").replaceChildren(...s.spares.map(renderSpare));
  // The scanner reports here once it exists; until then the slot says so.
  $("scan").textContent = s.scan === undefined ? "No scan data: this server runs no scanner" :
    JSON.stringify(s.scan);
  drawMap(s);
}

function renderSpare(spare) {
  const box = el("div", undefined, "spare");
  const head = el("div");
  head.append(el("strong", "spare " + spare.index + " "), el("code", spare.path), " ",
    el("span", spare.state, "badge " + spare.state));
  const bar = el("div", undefined, "bar");
  const fill = el("div");
  fill.style.width = (spare.slotCount === 0 ? 0 : 100 * spare.slotsUsed / spare.slotCount) + "%";
  bar.append(fill);
  const valid = spare.validCopies + "/" + spare.copies.length + " copies valid";
  box.append(head, bar, el("div", spare.slotsUsed + " of " + spare.slotCount + " slots used · " + valid +
    " · " + bytes(spare.sizeBytes), "muted"));
  return box;
}

function renderEvents(events) {
  $("events").replaceChildren(...events.map((event) => {
    const tr = el("tr");
    tr.append(el("td", new Date(event.timeMs).toLocaleString(), "muted"), el("th", event.type),
      el("td", event.message));
    return tr;
  }));
}

async function poll() {
  try {
    const [status, events] = await Promise.all([
      getJson("/api/v1/status"), getJson("/api/v1/events?limit=" + EVENTS_SHOWN),
    ]);
    if (status.counters.remaps !== remapBlocksCount) {
      remapBlocks = await readRemapBlocks(status.counters.remaps);
      remapBlocksCount = status.counters.remaps;
    }
    renderStatus(status);
    renderEvents(events.events);
    $("error").textContent = "";
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    $("error").textContent = "Cannot read the API: " + error.message;
  } finally {
    setTimeout(poll, POLL_INTERVAL_MS);
  }
}
poll();
</script>
</body>
</html>
`;

/**
 * Answers with the dashboard page.
 *
 * @param c The request context.
 * @returns 200 with the HTML page and a Content-Security-Policy that forbids outside assets.
 */
export function getDashboard(c: Context<ApiEnv>): Response {
  c.header("Content-Security-Policy", DASHBOARD_CSP);
  return c.html(DASHBOARD_HTML);
}

/**
 * `GET /`: the dashboard, one self-contained page that polls the API.
 *
 * What it shows: the setup's state and health score; a health map of the
 * main disk (its blocks cut into {@link HEALTH_MAP_REGIONS} cells, drawn as
 * SVG), each cell filled with the health of the scanner's region it lies in
 * (the worst, when it spans several; grey while the scanner has not read
 * it) and marked when it holds a pending or a remapped block; a bar per
 * spare for its slots in use; the scan's progress; the policies; counters;
 * the newest events. It polls `/api/v1/status`, `/api/v1/scan/health` and
 * `/api/v1/events` every {@link DASHBOARD_POLL_INTERVAL_MS}, and re-reads
 * the remap list (paged, at most {@link HEALTH_MAP_REMAPS_MAX} blocks) when
 * the remap count changed. Each cell carries what it shows as attributes
 * (`data-region`, `data-score`, `data-label`, `data-scanned`, `data-mark`),
 * so a test or a tool can read the map without its pixels.
 *
 * The page is self-contained (inline CSS and script, no fonts, images or
 * CDN), because the appliance may have no network beyond this socket; its
 * Content-Security-Policy enforces that. Every value from the API goes in
 * through `textContent` or attributes, never as HTML, so a setup or device
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
 * The map's colours, as `#rrggbb`: a cell's fill is its region's health
 * label (the scanner's score: EXCELLENT ≥ 95, GOOD ≥ 80, FAIR ≥ 60, POOR ≥
 * 40, else CRITICAL), or `unscanned`; a mark in its middle shows a remapped
 * block, or a pending one (which wins).
 */
export const HEALTH_MAP_COLOURS = {
  EXCELLENT: "#a5d6a7",
  GOOD: "#d4e157",
  FAIR: "#ffca28",
  POOR: "#ff7043",
  CRITICAL: "#6a1b9a",
  unscanned: "#cfd8dc",
  remapped: "#1565c0",
  pending: "#c62828",
} as const;

/** The side of a cell's mark in CSS pixels, centred in the cell. */
export const HEALTH_MAP_MARK_PX = 4;

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
  .badge { display: inline-block; padding: .1rem .5rem; border-radius: .6rem; color: #fff; background: #888; font-size: .85em; }
  .badge.clean, .badge.active, .badge.EXCELLENT { background: #2e7d32; }
  .badge.GOOD { background: #827717; }
  .badge.FAIR { background: #ef6c00; }
  .badge.degraded, .badge.failed, .badge.POOR, .badge.holds { background: #c62828; }
  .badge.CRITICAL { background: #6a1b9a; }
  .columns { display: flex; flex-wrap: wrap; gap: 2rem; }
  table { border-collapse: collapse; }
  td, th { padding: .15rem .8rem .15rem 0; text-align: left; vertical-align: top; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  .spare { margin: .4rem 0; padding: .5rem; background: #fff; border: 1px solid #ddd; border-radius: .3rem; min-width: 22rem; }
  .bar { height: .6rem; background: #e0e0e0; border-radius: .3rem; overflow: hidden; margin: .3rem 0; min-width: 22rem; }
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
<h1><span id="name">dm-remap</span> <span id="state" class="badge">…</span> <span id="health-score" class="badge"></span></h1>
<div class="muted" id="identity"></div>
<div id="error"></div>
<h2>Main disk <span class="muted" id="main"></span></h2>
<svg id="health-map" width="${MAP_WIDTH_PX}" height="${MAP_HEIGHT_PX}" role="img" aria-label="health map of the main disk"></svg>
<div class="legend muted">
${
  (["EXCELLENT", "GOOD", "FAIR", "POOR", "CRITICAL", "unscanned"] as const).map((label) =>
    `<span class="swatch" style="background:${HEALTH_MAP_COLOURS[label]}"></span>${
      label === "unscanned" ? "not scanned yet" : label.toLowerCase()
    }`
  ).join("\n")
}
</div>
<div class="legend muted">
<span class="swatch" style="background:${HEALTH_MAP_COLOURS.remapped}"></span>remapped blocks: <strong id="remap-count">…</strong>
<span class="swatch" style="background:${HEALTH_MAP_COLOURS.pending}"></span>pending blocks: <strong id="pending-count">…</strong>
<span id="map-scale"></span>
</div>
<div class="columns">
<div>
<h2>Spares</h2>
<div id="spares"></div>
<h2>Scan <span id="scan-state" class="badge"></span></h2>
<div class="bar"><div id="scan-progress" style="width:0%"></div></div>
<div id="scan" class="muted"></div>
</div>
<div>
<h2>Policies</h2>
<table><tbody id="policies"></tbody></table>
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
const MARK_PX = ${HEALTH_MAP_MARK_PX};
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

function time(ms) {
  return ms === undefined ? "never" : new Date(ms).toLocaleString();
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(url + ": HTTP " + response.status);
  return await response.json();
}

/** The health report, or null when this server runs no scanner (404). */
async function getHealth() {
  const response = await fetch("/api/v1/scan/health", { cache: "no-store" });
  if (response.status === 404) return null;
  if (!response.ok) throw new Error("/api/v1/scan/health: HTTP " + response.status);
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

/** The map's cells, made once in the SVG the page holds (whose namespace they take). */
const cells = (() => {
  const svg = $("health-map");
  const make = (tag, attributes) => {
    const node = document.createElementNS(svg.namespaceURI, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    return node;
  };
  const made = [];
  for (let cell = 0; cell < REGIONS; cell++) {
    const x = (cell % COLUMNS) * (CELL_PX + 1);
    const y = Math.floor(cell / COLUMNS) * (CELL_PX + 1);
    const group = make("g", { "data-cell": cell });
    const box = make("rect", { class: "cell", x, y, width: CELL_PX, height: CELL_PX });
    const inset = (CELL_PX - MARK_PX) / 2;
    const mark = make("rect", { class: "mark", x: x + inset, y: y + inset, width: MARK_PX, height: MARK_PX });
    const title = make("title", {});
    group.append(title, box, mark);
    svg.append(group);
    made.push({ group, box, mark, title });
  }
  return made;
})();

/** The worst region of the scanner's report over a byte range, or undefined. */
function worstRegion(health, byIndex, range) {
  const regionBytes = health.scan.settings.regionBytes;
  let worst;
  const last = Math.floor((range.endBytes - 1) / regionBytes);
  for (let index = Math.floor(range.startBytes / regionBytes); index <= last; index++) {
    const region = byIndex.get(index);
    if (region !== undefined && (worst === undefined || region.score < worst.score)) worst = region;
  }
  return worst;
}

function drawMap(s, health) {
  const blockBytes = s.setup.blockBytes;
  const blockCount = Math.ceil(s.setup.sizeBytes / blockBytes);
  const cellOf = (block) => Math.min(REGIONS - 1, Math.floor(block * REGIONS / blockCount));
  const marks = new Array(REGIONS).fill("");
  for (const block of remapBlocks) marks[cellOf(block)] = "remapped";
  for (const block of s.pendingBlocks) marks[cellOf(block)] = "pending";
  const byIndex = new Map(health === null ? [] : health.regions.map((r) => [r.regionIndex, r]));
  cells.forEach(({ group, box, mark, title }, cell) => {
    const firstBlock = Math.ceil(cell * blockCount / REGIONS);
    const endBlock = Math.ceil((cell + 1) * blockCount / REGIONS);
    if (firstBlock >= endBlock) {
      group.setAttribute("visibility", "hidden");
      return;
    }
    const range = { startBytes: firstBlock * blockBytes, endBytes: Math.min(endBlock * blockBytes, s.setup.sizeBytes) };
    const region = health === null ? undefined : worstRegion(health, byIndex, range);
    const scanned = region !== undefined && region.inputs.lastScannedMs !== undefined;
    box.setAttribute("fill", scanned ? COLOURS[region.label] : COLOURS.unscanned);
    group.setAttribute("data-scanned", String(scanned));
    for (const name of ["data-region", "data-score", "data-label"]) group.removeAttribute(name);
    if (region !== undefined) {
      group.setAttribute("data-region", String(region.regionIndex));
      group.setAttribute("data-score", String(region.score));
      group.setAttribute("data-label", region.label);
    }
    group.setAttribute("data-mark", marks[cell]);
    mark.setAttribute("fill", marks[cell] === "" ? "none" : COLOURS[marks[cell]]);
    title.textContent = bytes(range.startBytes) + " to " + bytes(range.endBytes) +
      (region === undefined ? "" : " · region " + region.regionIndex + ": score " + region.score +
        " " + region.label + (scanned ? ", risk " + region.risk : ", not scanned yet") +
        (region.riskReasons.length > 0 ? " (" + region.riskReasons.join("; ") + ")" : "")) +
      (marks[cell] === "" ? "" : " · holds a " + marks[cell] + " block");
  });
  $("map-scale").textContent = "· one cell is " + bytes(s.setup.sizeBytes / REGIONS) +
    (health === null ? "" : ", one scan region " + bytes(health.scan.settings.regionBytes)) +
    (s.counters.remaps > remapBlocks.length ? " · map shows the first " + remapBlocks.length + " remaps" : "");
}

function renderStatus(s, health) {
  $("name").textContent = s.setup.name;
  $("state").textContent = s.setup.state;
  $("state").className = "badge " + s.setup.state;
  $("health-score").textContent = health === null ? "" :
    "health " + health.setup.score + " " + health.setup.label;
  $("health-score").className = "badge " + (health === null ? "" : health.setup.label);
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
  $("policies").replaceChildren(...s.policies.map(renderPolicy));
  if (s.policies.length === 0) $("policies").append(el("tr", "none configured", "muted"));
  renderScan(health === null ? null : health.scan);
  drawMap(s, health);
}

function renderScan(scan) {
  if (scan === null) {
    $("scan-state").textContent = "";
    $("scan").textContent = "No scan data: this server runs no scanner";
    return;
  }
  $("scan-state").textContent = scan.state;
  $("scan-progress").style.width = (100 * scan.progressRatio).toFixed(1) + "%";
  $("scan-progress").setAttribute("data-ratio", String(scan.progressRatio));
  const lines = [
    scan.state === "scanning"
      ? "pass at " + (100 * scan.progressRatio).toFixed(1) + "% (" + bytes(scan.positionBytes) +
        " of " + bytes(scan.sizeBytes) + "), " + bytes(scan.rateBytesPerS) + "/s" +
        (scan.etaSeconds === undefined ? "" : ", " + scan.etaSeconds + " s to go")
      : scan.nextPassDueMs !== undefined ? "next pass " + time(scan.nextPassDueMs)
      : "passes start on request (dm-remap scan NAME start) or by a policy",
    scan.passesCompleted + " passes completed, the last ended " + time(scan.lastPassCompletedMs),
    "bad blocks found: " + scan.findingsThisPass + " in this pass, " + scan.findingsLastPass +
      " in the last · " + scan.relocations + " relocated since start",
  ];
  $("scan").replaceChildren(...lines.map((line) => el("div", line)));
}

function renderSpare(spare) {
  const box = el("div", undefined, "spare");
  const head = el("div");
  head.append(el("strong", "spare " + spare.index + " "), el("code", spare.path), " ",
    el("span", spare.state, "badge " + spare.state));
  if (spare.allocationStopped) head.append(" ", el("span", "no new slots (policy)", "badge holds"));
  const bar = el("div", undefined, "bar");
  const fill = el("div");
  fill.style.width = (spare.slotCount === 0 ? 0 : 100 * spare.slotsUsed / spare.slotCount) + "%";
  bar.append(fill);
  const valid = spare.validCopies + "/" + spare.copies.length + " copies valid";
  box.append(head, bar, el("div", spare.slotsUsed + " of " + spare.slotCount + " slots used · " + valid +
    " · " + spare.errors + " I/O errors · " + bytes(spare.sizeBytes), "muted"));
  return box;
}

function renderPolicy(policy) {
  const tr = el("tr");
  tr.append(el("th", policy.name), el("td", undefined),
    el("td", policy.reasons.join("; ") + (policy.actions.length === 0 ? "" :
      " → " + policy.actions.join(", ") + " at " + time(policy.actedMs)), "muted"));
  tr.children[1].append(el("span", policy.holds ? "holds" : "idle", "badge" + (policy.holds ? " holds" : "")));
  return tr;
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
    const [status, health, events] = await Promise.all([
      getJson("/api/v1/status"), getHealth(), getJson("/api/v1/events?limit=" + EVENTS_SHOWN),
    ]);
    if (status.counters.remaps !== remapBlocksCount) {
      remapBlocks = await readRemapBlocks(status.counters.remaps);
      remapBlocksCount = status.counters.remaps;
    }
    renderStatus(status, health);
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

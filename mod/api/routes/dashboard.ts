/**
 * `GET /`: a one-page dashboard that polls `/api/v1/status` every 2 s.
 *
 * The page is self-contained (inline CSS and script, no fonts, images or
 * CDN), because the appliance may have no network beyond this socket; its
 * Content-Security-Policy enforces that. Every value from the status goes in
 * through `textContent`, never as HTML, so a setup or device name cannot
 * inject markup.
 *
 * @module
 */

import type { Context } from "hono";
import type { ApiEnv } from "../_env.ts";

/** How often the dashboard asks for a new status. */
export const DASHBOARD_POLL_INTERVAL_MS = 2_000;

/** Allows only the page's own inline style and script, and fetches from its own origin. */
const DASHBOARD_CSP =
  "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

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
  .badge.clean { background: #2e7d32; }
  .badge.degraded, .badge.failed { background: #c62828; }
  .badge.active { background: #2e7d32; }
  table { border-collapse: collapse; }
  td, th { padding: .15rem .8rem .15rem 0; text-align: left; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  .spare { margin: .4rem 0; padding: .5rem; background: #fff; border: 1px solid #ddd; border-radius: .3rem; }
  .bar { height: .6rem; background: #e0e0e0; border-radius: .3rem; overflow: hidden; margin: .3rem 0; }
  .bar > div { height: 100%; background: #1565c0; }
  #error { color: #c62828; }
  code { font-size: .9em; }
</style>
</head>
<body>
<h1><span id="name">dm-remap</span> <span id="state" class="badge">…</span></h1>
<div class="muted" id="identity"></div>
<div id="error"></div>
<h2>Main disk</h2>
<div id="main"></div>
<h2>Counters</h2>
<table><tbody id="counters"></tbody></table>
<h2>Spares</h2>
<div id="spares"></div>
<h2>Pending blocks</h2>
<div id="pending"></div>
<div class="muted" id="updated"></div>
<script>
"use strict";
const POLL_INTERVAL_MS = ${DASHBOARD_POLL_INTERVAL_MS};
const $ = (id) => document.getElementById(id);

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

function render(s) {
  $("name").textContent = s.setup.name;
  $("state").textContent = s.setup.state;
  $("state").className = "badge " + s.setup.state;
  $("identity").textContent = "setup " + s.setup.uuid + " · " + bytes(s.setup.sizeBytes) +
    " · block " + s.setup.blockBytes + " B · format v" + s.setup.formatVersion +
    " · NBD export " + JSON.stringify(s.nbd.exportName) + ", " + s.nbd.connections + " connected" +
    " · up " + s.uptimeSeconds + " s";
  $("main").textContent = s.main.path + " (" + s.main.kind + ", " + bytes(s.main.sizeBytes) + ")";
  const c = s.counters;
  const rows = [
    ["reads", c.reads], ["writes", c.writes], ["bytes read", bytes(c.bytesRead)],
    ["bytes written", bytes(c.bytesWritten)], ["flushes", c.flushes], ["read errors", c.readErrors],
    ["write errors", c.writeErrors], ["remaps", c.remaps], ["remaps created", c.remapsCreated],
  ];
  $("counters").replaceChildren(...rows.map(([label, value]) => {
    const tr = el("tr");
    tr.append(el("th", label), el("td", value, "n"));
    return tr;
  }));
  $("spares").replaceChildren(...s.spares.map(renderSpare));
  $("pending").textContent = s.pendingBlocks.length === 0 ? "none" :
    s.pendingBlocks.length + ": " + s.pendingBlocks.slice(0, 50).join(", ") +
    (s.pendingBlocks.length > 50 ? ", …" : "");
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

async function poll() {
  try {
    const response = await fetch("/api/v1/status", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
    $("error").textContent = "";
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    $("error").textContent = "Cannot read /api/v1/status: " + error.message;
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

/**
 * The dashboard page as the app serves it: self-contained, polling the API
 * every 2 s, writing values as text. What it renders is tested in a real
 * browser in `dashboard_browser_test.ts`.
 *
 * Method: request `GET /` from the app and read the HTML and headers.
 */

import assert from "node:assert/strict";
import { createApp } from "../../mod/api/app.ts";
import { DASHBOARD_HTML, DASHBOARD_POLL_INTERVAL_MS } from "../../mod/api/routes/dashboard.ts";
import { fakeSource } from "./fixtures.ts";

async function dashboard(): Promise<Response> {
  return await createApp(fakeSource()).request("/");
}

Deno.test("GET / answers a UTF-8 HTML page that polls the API every 2 s", async () => {
  const response = await dashboard();
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/html; charset=UTF-8");
  const html = await response.text();
  assert.equal(html, DASHBOARD_HTML);
  assert.ok(html.startsWith("<!doctype html>"));
  assert.match(html, /fetch\(url, \{ cache: "no-store" \}\)/);
  for (
    const route of [
      "/api/v1/status",
      "/api/v1/events?limit=",
      "/api/v1/remaps?offset=",
    ]
  ) {
    assert.ok(html.includes(`getJson("${route}`), route);
  }
  assert.equal(DASHBOARD_POLL_INTERVAL_MS, 2_000);
  assert.match(html, /const POLL_INTERVAL_MS = 2000;/);
  assert.match(html, /setTimeout\(poll, POLL_INTERVAL_MS\)/);
});

Deno.test("GET / loads nothing from elsewhere, and its Content-Security-Policy forbids it", async () => {
  const response = await dashboard();
  const html = await response.text();
  assert.doesNotMatch(html, /<link\b|<img\b|<iframe\b|\bsrc=|@import|url\(/i);
  assert.doesNotMatch(html, /https?:\/\//);
  const csp = response.headers.get("content-security-policy")!;
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /connect-src 'self'/);
});

Deno.test("GET / writes status values as text, never as HTML", async () => {
  const html = await (await dashboard()).text();
  assert.doesNotMatch(html, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
  assert.match(html, /textContent/);
});

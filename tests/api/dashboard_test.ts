/**
 * The dashboard page: self-contained, polling `/api/v1/status` every 2 s, and
 * showing what an operator needs at a glance.
 *
 * Method: request `GET /` from the app and read the HTML; then run the page's
 * own script against a minimal fake DOM and a fake `fetch`, and read what it
 * rendered.
 */

import assert from "node:assert/strict";
import { createApp } from "../../mod/api/app.ts";
import { DASHBOARD_HTML, DASHBOARD_POLL_INTERVAL_MS } from "../../mod/api/routes/dashboard.ts";
import { fakeSource, spareFixture, statusFixture } from "./fixtures.ts";

async function dashboard(): Promise<Response> {
  return await createApp(fakeSource()).request("/");
}

function inlineScript(html: string): string {
  const match = /<script>([\s\S]*)<\/script>/.exec(html);
  assert.ok(match, "the page has one inline script");
  return match[1]!;
}

Deno.test("GET / answers a UTF-8 HTML page that fetches /api/v1/status every 2 s", async () => {
  const response = await dashboard();
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/html; charset=UTF-8");
  const html = await response.text();
  assert.equal(html, DASHBOARD_HTML);
  assert.ok(html.startsWith("<!doctype html>"));
  assert.match(html, /fetch\("\/api\/v1\/status", \{ cache: "no-store" \}\)/);
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

/**
 * Just enough DOM for the dashboard script: elements by id, `textContent`,
 * `className`, `style`, `append` and `replaceChildren`.
 */
class FakeElement {
  readonly children: (FakeElement | string)[] = [];
  className = "";
  style: Record<string, string> = {};
  #text = "";
  constructor(readonly tag: string) {}
  set textContent(text: string) {
    this.#text = text;
    this.children.length = 0;
  }
  get textContent(): string {
    return this.#text +
      this.children.map((child) => typeof child === "string" ? child : child.textContent).join("");
  }
  append(...nodes: (FakeElement | string)[]): void {
    this.children.push(...nodes);
  }
  replaceChildren(...nodes: (FakeElement | string)[]): void {
    this.#text = "";
    this.children.splice(0, this.children.length, ...nodes);
  }
}

/** Runs the page's script once against `answer`, and returns the elements by id. */
async function renderDashboard(answer: () => Promise<Response>): Promise<Map<string, FakeElement>> {
  const html = await (await dashboard()).text();
  const byId = new Map(
    [...html.matchAll(/ id="([^"]+)"/g)].map(([, id]) => [id!, new FakeElement("div")]),
  );
  const document = {
    getElementById: (id: string) => byId.get(id) ?? null,
    createElement: (tag: string) => new FakeElement(tag),
  };
  const requested: string[] = [];
  const { promise: scheduled, resolve } = Promise.withResolvers<number>();
  function fakeFetch(url: string): Promise<Response> {
    requested.push(url);
    return answer();
  }
  new Function("document", "fetch", "setTimeout", inlineScript(html))(
    document,
    fakeFetch,
    (_: unknown, ms: number) => resolve(ms),
  );
  assert.equal(await scheduled, DASHBOARD_POLL_INTERVAL_MS, "the next poll is scheduled in 2 s");
  assert.deepEqual(requested, ["/api/v1/status"]);
  return byId;
}

Deno.test("The dashboard script renders a status: name, state, counters, spare bar, copies valid, pending blocks", async () => {
  const status = statusFixture({
    spares: [
      spareFixture(0, { slotsUsed: 25 }),
      spareFixture(1, { state: "failed", validCopies: 4 }),
    ],
    pendingBlocks: [5, 9],
  });
  const page = await renderDashboard(() => Promise.resolve(Response.json(status)));
  const text = (id: string) => page.get(id)!.textContent;
  assert.equal(text("name"), "vault");
  assert.equal(text("state"), "clean");
  assert.equal(page.get("state")!.className, "badge clean");
  assert.match(
    text("identity"),
    /^setup 0b5e7c2a-1d3f-4e6a-9b8c-7d6e5f4a3b2c · 1\.0 GiB · block 4096 B/,
  );
  assert.equal(text("main"), "/dev/sda (block, 1.0 GiB)");
  assert.match(text("counters"), /reads1200writes340bytes read4\.7 MiB/);
  const [first, second] = page.get("spares")!.children as FakeElement[];
  assert.equal(
    first!.textContent,
    "spare 0 /dev/spare0 active25 of 100 slots used · 5/5 copies valid · 64.0 MiB",
  );
  assert.equal(
    second!.textContent,
    "spare 1 /dev/spare1 failed3 of 100 slots used · 4/5 copies valid · 64.0 MiB",
  );
  const bar = first!.children[1] as FakeElement;
  assert.equal((bar.children[0] as FakeElement).style.width, "25%");
  assert.equal(text("pending"), "2: 5, 9");
  assert.equal(text("error"), "");
});

Deno.test("The dashboard script shows why it cannot read the status, and keeps polling", async () => {
  const page = await renderDashboard(() =>
    Promise.resolve(Response.json({ error: "boom" }, { status: 500 }))
  );
  assert.equal(page.get("error")!.textContent, "Cannot read /api/v1/status: HTTP 500");
  const offline = await renderDashboard(() => Promise.reject(new TypeError("Failed to fetch")));
  assert.equal(offline.get("error")!.textContent, "Cannot read /api/v1/status: Failed to fetch");
});

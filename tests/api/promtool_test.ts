/**
 * Fleet monitoring, checked with Prometheus's own tool: the live `/metrics`
 * of a served setup passes `promtool check metrics` (names, units, suffixes,
 * HELP and TYPE); the example alert rules in docs/prometheus/ pass `promtool
 * check rules` and their unit tests (`promtool test rules`); and every query
 * of the example rules and of the Grafana dashboard in docs/grafana/ names
 * only metrics the server exports, and parses as PromQL.
 *
 * Method: Debian's `prometheus` package provides promtool (scripts/setup.sh
 * installs it); each check runs it as a process and requires exit 0. A
 * deliberately broken exposition shows the metrics check can fail.
 */

import assert from "node:assert/strict";
import { parse } from "yaml";
import { serveSetup } from "../service/served_setup.ts";

const DOCS = new URL("../../docs/", import.meta.url).pathname;
const RULES = `${DOCS}prometheus/dm_remap_alerts.yml`;
const RULES_TEST = `${DOCS}prometheus/dm_remap_alerts_test.yml`;
const GRAFANA = `${DOCS}grafana/dm_remap_dashboard.json`;

async function promtool(
  args: string[],
  stdin?: string,
): Promise<{ code: number; output: string }> {
  const child = new Deno.Command("promtool", {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, output: decoder.decode(stdout) + decoder.decode(stderr) };
}

/** The live metrics of a served setup with remaps, a pending block and events. */
async function liveMetrics(): Promise<string> {
  const served = await serveSetup({
    remapBlocks: [1, 2, 3],
    pendingBlocks: [7],
    api: { tcp: { hostname: "127.0.0.1", port: 0 } },
  });
  try {
    const response = await fetch(`${served.service.apiAddresses[1]}/metrics`);
    assert.equal(response.status, 200);
    return await response.text();
  } finally {
    await served.close();
  }
}

/** The metric families named in an exposition's TYPE lines. */
function familiesOf(exposition: string): Set<string> {
  return new Set([...exposition.matchAll(/^# TYPE (\S+) /gm)].map((match) => match[1]!));
}

/** The dm-remap metric names a PromQL expression uses. */
function metricsIn(expression: string): string[] {
  return [...expression.matchAll(/\bdm_remap_[a-z0-9_]+/g)].map((match) => match[0]);
}

/** Every `expr` of the Grafana dashboard, with `$setup` as Grafana would expand "All". */
async function grafanaQueries(): Promise<string[]> {
  const dashboard = JSON.parse(await Deno.readTextFile(GRAFANA));
  const queries: string[] = [];
  for (const panel of dashboard.panels) {
    assert.ok(panel.targets.length > 0, `panel "${panel.title}" has a query`);
    for (const target of panel.targets) queries.push(target.expr.replaceAll("$setup", ".*"));
  }
  for (const variable of dashboard.templating.list) {
    if (variable.type === "query") queries.push(variable.definition);
  }
  return queries;
}

Deno.test("promtool check metrics accepts the live /metrics of a served setup", async () => {
  const exposition = await liveMetrics();
  assert.ok(familiesOf(exposition).has("dm_remap_remaps"));
  const checked = await promtool(["check", "metrics"], exposition);
  assert.equal(checked.output, "");
  assert.equal(checked.code, 0);
  // The check is real: a counter without its _total suffix and a unit-less name are reported.
  const broken = "# HELP dm_remap_reads Reads.\n# TYPE dm_remap_reads counter\n" +
    'dm_remap_reads{setup="x"} 1\n';
  const refused = await promtool(["check", "metrics"], broken);
  assert.notEqual(refused.code, 0);
  assert.match(refused.output, /counter metrics should have "_total" suffix/);
});

Deno.test("The example alert rules pass promtool check rules and their unit tests", async () => {
  const checked = await promtool(["check", "rules", RULES]);
  assert.equal(checked.code, 0, checked.output);
  assert.match(checked.output, /SUCCESS: 6 rules found/);
  const tested = await promtool(["test", "rules", RULES_TEST]);
  assert.equal(tested.code, 0, tested.output);
  assert.match(tested.output, /SUCCESS/);
});

Deno.test("The alert rules and the Grafana dashboard query only metrics the server exports", async () => {
  const exported = familiesOf(await liveMetrics());
  const rules = parse(await Deno.readTextFile(RULES)) as {
    groups: { rules: { alert: string; expr: string }[] }[];
  };
  const expressions = [
    ...rules.groups.flatMap((group) => group.rules.map((rule) => rule.expr)),
    ...await grafanaQueries(),
  ];
  const named = new Set(expressions.flatMap(metricsIn));
  assert.ok(named.size >= 10, `the queries cover the metrics: ${[...named].join(", ")}`);
  assert.deepEqual([...named].filter((name) => !exported.has(name)), []);
  // Every Grafana query parses as PromQL: promtool checks them as recording rules.
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-grafana-" });
  try {
    const queries = (await grafanaQueries()).filter((query) => !query.startsWith("label_values("));
    const recording = {
      groups: [{
        name: "grafana",
        rules: queries.map((expr, index) => ({ record: `grafana:query_${index}`, expr })),
      }],
    };
    await Deno.writeTextFile(`${dir}/grafana.yml`, JSON.stringify(recording));
    const checked = await promtool(["check", "rules", `${dir}/grafana.yml`]);
    assert.equal(checked.code, 0, checked.output);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

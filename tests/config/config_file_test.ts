/**
 * Goal: every broken configuration is refused with the file, line, column,
 * key path and what was expected, and a valid one yields its values and
 * positions. Method: a table of files (bad YAML, wrong types, unknown keys,
 * out-of-range values, unknown setups, cross-section mistakes), each with
 * the exact problem lines `parseConfig()` must report; then one file read
 * from disk through `loadConfig()`.
 */

import assert from "node:assert/strict";
import { ConfigError, loadConfig, parseConfig } from "../../mod/config/config_file.ts";

const FILE = "/etc/dm-remap/dm-remap.yaml";
const KNOWN = new Set(["big", "0b5c3a8e-5f0c-4a53-9d1e-2f3c4d5e6f70"]);

/** A broken file and the exact problems it must produce. */
const BROKEN: readonly { scenario: string; text: string; problems: string[] }[] = [
  {
    scenario: "bad YAML: an unclosed flow list",
    text: "serve:\n  scan-dir: [/srv\n",
    problems: [
      `${FILE}:3:1: Flow sequence in block collection must be sufficiently indented and end with a ]`,
    ],
  },
  {
    scenario: "bad YAML: a key given twice",
    text: "serve:\n  read-retries: 1\n  read-retries: 2\n",
    problems: [`${FILE}:3:3: Map keys must be unique`],
  },
  {
    scenario: "bad YAML: two documents",
    text: "serve: {}\n---\nlog: {}\n",
    problems: [`${FILE}:2:1: expected one YAML document, got several (remove the ---)`],
  },
  {
    scenario: "wrong type: a word for a number",
    text: "serve:\n  read-retries: many\n",
    problems: [
      `${FILE}:2:17: serve.read-retries: expected a whole number from 0 to 16, got "many"`,
    ],
  },
  {
    scenario: "wrong type: a list for a section",
    text: "serve:\n  nbd: [socket]\n",
    problems: [`${FILE}:2:8: serve.nbd: expected a map of keys, got a list`],
  },
  {
    scenario: "wrong type: a string for a boolean",
    text: 'serve:\n  buffered: "yes"\n',
    problems: [`${FILE}:2:13: serve.buffered: expected true or false, got "yes"`],
  },
  {
    scenario: "wrong type: a relative path",
    text: "setups:\n  big:\n    events-db: events.sqlite\n",
    problems: [
      `${FILE}:3:16: setups.big.events-db: expected an absolute path, got "events.sqlite"`,
    ],
  },
  {
    scenario: "unknown key at the top",
    text: "server:\n  read-retries: 1\n",
    problems: [
      `${FILE}:1:1: unknown key "server": expected one of log, serve, setups, alerts, policies`,
    ],
  },
  {
    scenario: "unknown key in a nested section",
    text: "serve:\n  api:\n    port: 8080\n",
    problems: [
      `${FILE}:3:5: serve.api: unknown key "port": expected one of socket, tcp, token, group`,
    ],
  },
  {
    scenario: "an unknown key in the scanner's section",
    text: "serve:\n  scan:\n    every: 1h\n",
    problems: [
      `${FILE}:3:5: serve.scan: unknown key "every": expected one of schedule, interval, rate-max, region-size`,
    ],
  },
  {
    scenario: "a scan interval and an allocation policy that are not",
    text: "setups:\n  big:\n    scan: { interval: 1 day }\n    allocation: fastest\n",
    problems: [
      `${FILE}:3:23: setups.big.scan.interval: expected a duration like 90s, 15m, 24h or 7d, got "1 day"`,
      `${FILE}:4:17: setups.big.allocation: expected one of fill-first, round-robin, most-free, health-weighted, got "fastest"`,
    ],
  },
  {
    scenario: "out of range: too many retries",
    text: "serve:\n  read-retries: 17\n",
    problems: [`${FILE}:2:17: serve.read-retries: expected a whole number from 0 to 16, got 17`],
  },
  {
    scenario: "out of range: a port above 65535",
    text: "serve:\n  nbd:\n    tcp: 127.0.0.1:70000\n",
    problems: [
      `${FILE}:3:10: serve.nbd.tcp: expected [host:]port, e.g. 127.0.0.1:8080, got "127.0.0.1:70000"`,
    ],
  },
  {
    scenario: "out of range: a threshold above 100 percent",
    text: "alerts:\n  spare-nearly-full-percent: 120\n",
    problems: [
      `${FILE}:2:30: alerts.spare-nearly-full-percent: expected a whole number from 1 to 100, got 120`,
    ],
  },
  {
    scenario: "an unknown alert kind",
    text:
      "alerts:\n  targets:\n    pager:\n      webhook: http://127.0.0.1:9093/\n      events: [remap, fire]\n",
    problems: [
      `${FILE}:5:23: alerts.targets.pager.events.1: expected one of remap, pending, read-error, remap-failed, spare-failed, spare-nearly-full, degraded, main-failed, metadata-repaired, started, stopped, health-threshold, policy, test, got "fire"`,
    ],
  },
  {
    scenario: "a target with no destination, and one with two",
    text:
      'alerts:\n  targets:\n    a: { events: [remap] }\n    b: { exec: /bin/true, webhook: "http://x/" }\n',
    problems: [
      `${FILE}:3:5: alerts.targets.a: expected exactly one of exec or webhook, got none`,
      `${FILE}:4:5: alerts.targets.b: expected exactly one of exec or webhook, got both`,
    ],
  },
  {
    scenario: "a setup naming a target and a policy that do not exist",
    text: "setups:\n  big:\n    alerts: [pager]\n    policies: [full]\n",
    problems: [
      `${FILE}:3:14: setups.big.alerts.0: unknown alert target "pager": define it under alerts.targets`,
      `${FILE}:4:16: setups.big.policies.0: unknown policy "full": define it under policies`,
    ],
  },
  {
    scenario: "a policy without conditions or actions",
    text: "policies:\n  empty:\n    then: []\n",
    problems: [
      `${FILE}:2:3: policies.empty: expected a when: section with at least one condition`,
      `${FILE}:2:3: policies.empty: expected a then: list with at least one action`,
    ],
  },
  {
    scenario: "an unknown setup",
    text: "setups:\n  big:\n    read-retries: 1\n  small:\n    read-retries: 1\n",
    problems: [
      `${FILE}:4:3: setups.small: unknown setup "small": no setup has this name or UUID; create it, or fix or remove the section`,
    ],
  },
  {
    scenario: "several problems at once, all reported",
    text: "log:\n  level: loud\nserve:\n  read-retries: -1\n  colour: red\n",
    problems: [
      `${FILE}:2:10: log.level: expected one of err, warning, notice, info, debug, got "loud"`,
      `${FILE}:4:17: serve.read-retries: expected a whole number from 0 to 16, got -1`,
      `${FILE}:5:3: serve: unknown key "colour": expected one of nbd, api, export, read-retries, events-db, backup-dir, buffered, scan-dir, alerts, policies, policy-interval-s, scan, allocation`,
    ],
  },
];

for (const { scenario, text, problems } of BROKEN) {
  Deno.test(`parseConfig() refuses ${scenario}, saying where and what was expected`, () => {
    let caught: unknown;
    try {
      parseConfig(text, { path: FILE, knownSetup: (key) => KNOWN.has(key) });
    } catch (error) {
      caught = error;
    }
    assert.ok(caught instanceof ConfigError, `refused: ${scenario}`);
    assert.deepEqual(caught.problems.map((problem) => problem.text), problems);
    for (const problem of problems) assert.ok(caught.message.includes(problem));
  });
}

const VALID = `# every section once
log:
  level: notice
serve:
  read-retries: 4
  nbd: { tcp: 10809 }
  api:
    socket: /run/dm-remap/api.sock
    token: 0123456789abcdef0123
  scan: { schedule: true, interval: 12h, rate-max: 100M }
  allocation: most-free
setups:
  big:
    read-retries: 1
    alerts: [hook]
  0b5c3a8e-5f0c-4a53-9d1e-2f3c4d5e6f70:
    buffered: true
alerts:
  spare-nearly-full-percent: 80
  targets:
    hook: { exec: /usr/local/bin/alert, events: [remap, degraded] }
    pager: { webhook: "https://pager.example/hook", retries: 2 }
policies:
  pending:
    when: { pending-blocks: 1 }
    then: [alert]
`;

Deno.test("parseConfig() returns a valid file's values and where each was written", () => {
  const config = parseConfig(VALID, { path: FILE, knownSetup: (key) => KNOWN.has(key) });
  assert.equal(config.values.log?.level, "notice");
  assert.equal(config.values.serve?.["read-retries"], 4);
  // A bare port is an address, kept as text for the flag parser.
  assert.equal(config.values.serve?.nbd?.tcp, "10809");
  assert.deepEqual(config.values.serve?.scan, {
    "schedule": true,
    "interval": "12h",
    "rate-max": "100M",
  });
  assert.equal(config.values.serve?.allocation, "most-free");
  assert.deepEqual(config.values.setups?.big, { "read-retries": 1, "alerts": ["hook"] });
  assert.equal(config.values.alerts?.targets?.pager?.retries, 2);
  assert.deepEqual(config.positions.get("setups.big.read-retries"), {
    file: FILE,
    line: 14,
    column: 19,
  });
  assert.deepEqual(config.positions.get("alerts.targets.hook"), {
    file: FILE,
    line: 21,
    column: 5,
  });
});

Deno.test("parseConfig() takes an empty file as every default", () => {
  assert.deepEqual(parseConfig("# nothing yet\n", { path: FILE }).values, {});
});

Deno.test("loadConfig() reads a file from disk and names it in its problems", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-config-" });
  try {
    await Deno.writeTextFile(`${dir}/ok.yaml`, VALID);
    assert.equal((await loadConfig(`${dir}/ok.yaml`)).values.serve?.["read-retries"], 4);
    await Deno.writeTextFile(`${dir}/bad.yaml`, "serve:\n  read-retries: x\n");
    await assert.rejects(loadConfig(`${dir}/bad.yaml`), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.problems[0]!.file, `${dir}/bad.yaml`);
      assert.equal(error.problems[0]!.line, 2);
      assert.equal(error.problems[0]!.column, 17);
      return true;
    });
    await assert.rejects(loadConfig(`${dir}/missing.yaml`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

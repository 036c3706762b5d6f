/**
 * The exposition encoder: escaping, number spelling, and documents that a
 * strict reader of the 0.0.4 grammar accepts and reads back unchanged.
 *
 * Method: table rows of input → expected text, and round trips through
 * `parseExposition()` (tests/api/exposition.ts), written from the grammar.
 */

import assert from "node:assert/strict";
import { AssertionError } from "../../mod/assert.ts";
import {
  encodePrometheus,
  escapeHelp,
  escapeLabelValue,
  formatSampleValue,
  type MetricFamily,
  PROMETHEUS_CONTENT_TYPE,
} from "../../mod/api/prometheus.ts";
import { parseExposition } from "./exposition.ts";

Deno.test("PROMETHEUS_CONTENT_TYPE names text format 0.0.4 in UTF-8", () => {
  assert.equal(PROMETHEUS_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
});

Deno.test("escapeLabelValue() escapes backslash, double quote and line feed, and nothing else", () => {
  const rows: [input: string, expected: string][] = [
    ["vault", "vault"],
    ['say "hi"', 'say \\"hi\\"'],
    ["C:\\disk", "C:\\\\disk"],
    ["two\nlines", "two\\nlines"],
    ['\\"', '\\\\\\"'],
    ["tab\tand 'single' and ünïcode ✓", "tab\tand 'single' and ünïcode ✓"],
    ["", ""],
  ];
  for (const [input, expected] of rows) {
    assert.equal(escapeLabelValue(input), expected, JSON.stringify(input));
  }
});

Deno.test("escapeHelp() escapes backslash and line feed but leaves quotes", () => {
  assert.equal(escapeHelp('a "quoted" \\ path\nnext'), 'a "quoted" \\\\ path\\nnext');
});

Deno.test("formatSampleValue() spells numbers as Prometheus parses them", () => {
  const rows: [input: number, expected: string][] = [
    [0, "0"],
    [42, "42"],
    [-3, "-3"],
    [0.25, "0.25"],
    [Number.MAX_SAFE_INTEGER, "9007199254740991"],
    [1e21, "1e+21"],
    [NaN, "NaN"],
    [Infinity, "+Inf"],
    [-Infinity, "-Inf"],
  ];
  for (const [input, expected] of rows) {
    assert.equal(formatSampleValue(input), expected, String(input));
  }
});

Deno.test("encodePrometheus() writes HELP, TYPE, then samples, each line ending in a line feed", () => {
  const text = encodePrometheus([
    {
      name: "dm_remap_reads_total",
      help: "Read requests served.",
      type: "counter",
      samples: [{ labels: { setup: "vault" }, value: 42 }],
    },
    {
      name: "dm_remap_spare_slots",
      help: "Data slots on the spare.",
      type: "gauge",
      samples: [{ labels: { setup: "vault", spare: "0" }, value: 100 }, {
        labels: { setup: "vault", spare: "1" },
        value: 7,
      }],
    },
    {
      name: "no_labels",
      help: "A sample without labels.",
      type: "gauge",
      samples: [{ labels: {}, value: 1 }],
    },
  ]);
  assert.equal(
    text,
    [
      "# HELP dm_remap_reads_total Read requests served.",
      "# TYPE dm_remap_reads_total counter",
      'dm_remap_reads_total{setup="vault"} 42',
      "# HELP dm_remap_spare_slots Data slots on the spare.",
      "# TYPE dm_remap_spare_slots gauge",
      'dm_remap_spare_slots{setup="vault",spare="0"} 100',
      'dm_remap_spare_slots{setup="vault",spare="1"} 7',
      "# HELP no_labels A sample without labels.",
      "# TYPE no_labels gauge",
      "no_labels 1",
      "",
    ].join("\n"),
  );
});

Deno.test("encodePrometheus() output reads back unchanged, hostile label values included", () => {
  const hostile = 'a"b\\c\nd} 1\n# TYPE x counter';
  const families: MetricFamily[] = [
    {
      name: "m_total",
      help: 'Help with "quotes", \\ and\nnewline.',
      type: "counter",
      samples: [{ labels: { setup: hostile }, value: 3 }],
    },
    {
      name: "m_gauge",
      help: "Gauge.",
      type: "gauge",
      samples: [{ labels: { setup: hostile, spare: "0" }, value: 0.5 }],
    },
    { name: "m_empty", help: "A family with no samples yet.", type: "gauge", samples: [] },
  ];
  const text = encodePrometheus(families);
  assert.equal(text.split("\n").length, 8 + 1, "escaping keeps one line per sample");
  const parsed = parseExposition(text);
  assert.deepEqual([...parsed.keys()], ["m_total", "m_gauge", "m_empty"]);
  assert.equal(parsed.get("m_total")!.help, 'Help with "quotes", \\ and\nnewline.');
  assert.deepEqual(parsed.get("m_total")!.samples, [{ labels: { setup: hostile }, value: 3 }]);
  assert.deepEqual(parsed.get("m_gauge")!.samples, [{
    labels: { setup: hostile, spare: "0" },
    value: 0.5,
  }]);
  assert.deepEqual(parsed.get("m_empty")!.samples, []);
});

Deno.test("encodePrometheus() of no families is the empty document", () => {
  assert.equal(encodePrometheus([]), "");
});

Deno.test("encodePrometheus() refuses what our own code must never produce", () => {
  const family = (overrides: Partial<MetricFamily>): MetricFamily => ({
    name: "ok_total",
    help: "Fine.",
    type: "counter",
    samples: [{ labels: { setup: "vault" }, value: 1 }],
    ...overrides,
  });
  const rows: [scenario: string, families: MetricFamily[]][] = [
    ["metric name with a dash", [family({ name: "dm-remap_total" })]],
    ["metric name starting with a digit", [family({ name: "9lives" })]],
    ["label name with a dot", [family({ samples: [{ labels: { "setup.name": "x" }, value: 1 }] })]],
    ["reserved label name", [family({ samples: [{ labels: { __name__: "x" }, value: 1 }] })]],
    ["family given twice", [family({}), family({})]],
    ["negative counter", [family({ samples: [{ labels: {}, value: -1 }] })]],
  ];
  for (const [scenario, families] of rows) {
    assert.throws(() => encodePrometheus(families), AssertionError, scenario);
  }
});

Deno.test("encodePrometheus() allows a negative gauge", () => {
  const text = encodePrometheus([{
    name: "g",
    help: "G.",
    type: "gauge",
    samples: [{ labels: {}, value: -1 }],
  }]);
  assert.equal(parseExposition(text).get("g")!.samples[0]!.value, -1);
});

Deno.test("parseExposition(), the oracle of these tests, rejects documents that break the grammar", () => {
  const rows: [scenario: string, text: string][] = [
    ["no final line feed", "# HELP a A.\n# TYPE a gauge\na 1"],
    ["unescaped quote in a label value", '# HELP a A.\n# TYPE a gauge\na{l="x"y"} 1\n'],
    ["raw backslash escape it does not know", '# HELP a A.\n# TYPE a gauge\na{l="\\t"} 1\n'],
    ["TYPE without HELP", "# TYPE a gauge\na 1\n"],
    ["HELP twice", "# HELP a A.\n# HELP a A.\n# TYPE a gauge\n"],
    ["sample before its TYPE", "a 1\n# HELP a A.\n# TYPE a gauge\n"],
    ["family interrupted", "# HELP a A.\n# TYPE a gauge\n# HELP b B.\n# TYPE b gauge\na 1\n"],
    ["sample repeated", "# HELP a A.\n# TYPE a gauge\na 1\na 2\n"],
    ["value not a number", "# HELP a A.\n# TYPE a gauge\na one\n"],
    ["unknown type", "# HELP a A.\n# TYPE a meter\n"],
  ];
  for (const [scenario, text] of rows) assert.throws(() => parseExposition(text), Error, scenario);
});

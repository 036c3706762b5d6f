/**
 * Encodes metric families in the Prometheus text exposition format 0.0.4.
 *
 * Its single job is the wire format: names, `# HELP` and `# TYPE` lines,
 * label escaping and number spelling. Which metrics exist lives in
 * `routes/metrics.ts`.
 *
 * Invariants (asserted, since metric names and labels come from our own code,
 * never from a client):
 * - metric and label names match the exposition grammar; label names do not
 *   start with the reserved `__`;
 * - each family appears once, so `# HELP` and `# TYPE` appear once per family,
 *   and a family's samples follow its `# TYPE` line without interruption;
 * - counters are never negative.
 *
 * Only label values and help text are free text; they are escaped here.
 *
 * @module
 */

import { assert } from "../assert.ts";

/** The `Content-Type` of a text exposition format 0.0.4 response. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** The metric types dm-remap exports. */
export type MetricType = "counter" | "gauge";

/** One sample of a family: its labels and its value. */
export interface MetricSample {
  /** Label names to values, written in insertion order. */
  labels: Readonly<Record<string, string>>;
  value: number;
}

/** A metric family: one name, one help text, one type, any number of samples. */
export interface MetricFamily {
  /** The sample name; counters end in `_total` by convention. */
  name: string;
  /** One line of help; backslashes and newlines are escaped. */
  help: string;
  type: MetricType;
  samples: readonly MetricSample[];
}

/**
 * Escapes a label value: backslash, double quote and line feed.
 *
 * @param value Any string.
 * @returns The value, ready to sit between double quotes.
 *
 * @example Escaping a setup name
 * ```ts
 * import { escapeLabelValue } from "./prometheus.ts";
 * console.log(escapeLabelValue('a "b"\\c')); // a \"b\"\\c
 * ```
 */
export function escapeLabelValue(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

/**
 * Escapes help text: backslash and line feed (quotes stay as they are).
 *
 * @param text Any string.
 * @returns The text, ready to follow `# HELP name `.
 */
export function escapeHelp(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

/**
 * Spells a sample value as Prometheus parses it: `NaN`, `+Inf`, `-Inf` or a
 * decimal number.
 *
 * @param value Any number.
 * @returns The value as text.
 */
export function formatSampleValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/**
 * Encodes metric families as one exposition-format document.
 *
 * @param families The families, in the order to write them.
 * @returns The document; every line, the last included, ends in `\n`.
 * @throws {AssertionError} When a name is invalid, a family repeats, or a counter is negative.
 *
 * @example One counter with a label
 * ```ts
 * import { encodePrometheus } from "./prometheus.ts";
 * const text = encodePrometheus([{
 *   name: "dm_remap_reads_total",
 *   help: "Read requests served.",
 *   type: "counter",
 *   samples: [{ labels: { setup: "vault" }, value: 42 }],
 * }]);
 * console.log(text);
 * // # HELP dm_remap_reads_total Read requests served.
 * // # TYPE dm_remap_reads_total counter
 * // dm_remap_reads_total{setup="vault"} 42
 * ```
 */
export function encodePrometheus(families: readonly MetricFamily[]): string {
  const names = new Set<string>();
  const lines: string[] = [];
  for (const family of families) {
    assert(METRIC_NAME.test(family.name), `metric name "${family.name}" matches the grammar`);
    assert(!names.has(family.name), `metric family "${family.name}" appears once`);
    names.add(family.name);
    lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`);
    lines.push(`# TYPE ${family.name} ${family.type}`);
    for (const sample of family.samples) {
      if (family.type === "counter") {
        assert(!(sample.value < 0), `counter "${family.name}" is not negative`);
      }
      lines.push(`${family.name}${encodeLabels(sample.labels)} ${formatSampleValue(sample.value)}`);
    }
  }
  return lines.map((line) => `${line}\n`).join("");
}

/** Writes `{a="x",b="y"}`, or nothing for no labels. */
function encodeLabels(labels: Readonly<Record<string, string>>): string {
  const pairs = Object.entries(labels).map(([name, value]) => {
    assert(LABEL_NAME.test(name), `label name "${name}" matches the grammar`);
    assert(!name.startsWith("__"), `label name "${name}" is not reserved`);
    return `${name}="${escapeLabelValue(value)}"`;
  });
  return pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
}

/**
 * A strict reader of the Prometheus text exposition format 0.0.4, for tests.
 *
 * It is written from the format's grammar, independently of the encoder, and
 * throws on the first line that breaks a rule: every line is a HELP, a TYPE
 * or a sample; HELP and TYPE appear once per family and before its samples; a
 * family's samples are contiguous; no sample repeats; the text ends in "\n".
 *
 * @module
 */

const NAME = String.raw`[a-zA-Z_:][a-zA-Z0-9_:]*`;
const LABEL_NAME = String.raw`[a-zA-Z_][a-zA-Z0-9_]*`;
const LABEL_VALUE = String.raw`(?:[^"\\\n]|\\[\\"n])*`;
const LABEL = `${LABEL_NAME}="${LABEL_VALUE}"`;
const VALUE = String.raw`[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|NaN|[+-]Inf`;

/** `name{labels} value [timestamp]`. */
export const SAMPLE_LINE = new RegExp(
  `^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*,?)?\\})? (${VALUE})(?: -?[0-9]+)?$`,
);
const HELP_LINE = new RegExp(`^# HELP (${NAME}) (.*)$`);
const TYPE_LINE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const LABEL_PAIR = new RegExp(`(${LABEL_NAME})="(${LABEL_VALUE})"`, "g");

/** One sample as read back. */
export interface ParsedSample {
  labels: Record<string, string>;
  value: number;
}

/** One family as read back. */
export interface ParsedFamily {
  help: string;
  type: string;
  samples: ParsedSample[];
}

/**
 * Reads an exposition document back into families, checking the grammar.
 *
 * @throws {Error} Naming the line number and the rule it breaks.
 */
export function parseExposition(text: string): Map<string, ParsedFamily> {
  if (!text.endsWith("\n")) throw new Error("the document does not end in a line feed");
  const families = new Map<string, ParsedFamily>();
  const helps = new Map<string, string>();
  const seen = new Set<string>();
  let current: string | undefined;
  text.slice(0, -1).split("\n").forEach((line, i) => {
    const fail = (rule: string) => new Error(`line ${i + 1} ${JSON.stringify(line)}: ${rule}`);
    const help = HELP_LINE.exec(line);
    const type = TYPE_LINE.exec(line);
    const sample = SAMPLE_LINE.exec(line);
    if (help) {
      if (helps.has(help[1]!) || families.has(help[1]!)) throw fail("HELP repeats or follows TYPE");
      helps.set(help[1]!, unescapeHelp(help[2]!));
    } else if (type) {
      if (families.has(type[1]!)) throw fail("TYPE repeats");
      if (!helps.has(type[1]!)) throw fail("TYPE without a HELP before it");
      families.set(type[1]!, { help: helps.get(type[1]!)!, type: type[2]!, samples: [] });
      current = type[1]!;
    } else if (sample) {
      if (sample[1] !== current) {
        throw fail(`sample outside its family (current family ${current})`);
      }
      if (seen.has(`${sample[1]}{${sample[2] ?? ""}}`)) throw fail("sample repeats");
      seen.add(`${sample[1]}{${sample[2] ?? ""}}`);
      families.get(sample[1]!)!.samples.push({
        labels: parseLabels(sample[2] ?? ""),
        value: parseValue(sample[3]!),
      });
    } else {
      throw fail("neither HELP, TYPE nor a sample");
    }
  });
  return families;
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const [, name, value] of text.matchAll(LABEL_PAIR)) {
    labels[name!] = unescapeLabelValue(value!);
  }
  return labels;
}

function parseValue(text: string): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  return Number(text);
}

function unescapeLabelValue(text: string): string {
  return text.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
}

function unescapeHelp(text: string): string {
  return text.replace(
    /\\(.)/g,
    (_, c: string) => (c === "n" ? "\n" : c === "\\" ? "\\" : `\\${c}`),
  );
}

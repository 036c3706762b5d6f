/**
 * Reads and checks the configuration file with the npm `yaml` package's
 * document API, so every problem names the file, the line and the column,
 * the key's path, and what was expected. Unknown keys are problems, never
 * ignored. The walk is driven by the one schema table (`config_schema.ts`);
 * the checks that span sections (a setup naming a target that does not
 * exist, a target with two destinations) follow it here.
 *
 * @example A wrong type, with its position
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError, parseConfig } from "./config_file.ts";
 *
 * try {
 *   parseConfig("serve:\n  read-retries: many\n", { path: "/etc/dm-remap/dm-remap.yaml" });
 *   assert.fail("a word is not a number");
 * } catch (error) {
 *   assert.ok(error instanceof ConfigError);
 *   assert.equal(
 *     error.problems[0]!.text,
 *     '/etc/dm-remap/dm-remap.yaml:2:17: serve.read-retries: expected a whole number from 0 to 16, got "many"',
 *   );
 * }
 * ```
 *
 * @module
 */

import {
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
} from "yaml";
import { CONFIG_BYTES_MAX, CONFIG_PROBLEMS_MAX } from "../constants.ts";
import { UsageError } from "../errors.ts";
import { parseTcpListener } from "../service/settings.ts";
import { CONFIG_SCHEMA, type Field, type FieldType } from "./config_schema.ts";
import type { ConfigValues } from "./config_values.ts";

/** Where a value was written. */
export interface SourcePosition {
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
}

/** One thing wrong with the file. */
export interface ConfigProblem extends SourcePosition {
  /** The key's path, dotted (`setups.big.read-retries`); empty for the file as a whole. */
  path: string;
  message: string;
  /** `file:line:column: path: message`, as printed. */
  text: string;
}

/** The file is not a valid configuration; every problem found is listed. */
export class ConfigError extends UsageError {
  override name = "ConfigError";
  readonly file: string;
  readonly problems: readonly ConfigProblem[];
  constructor(file: string, problems: readonly ConfigProblem[]) {
    const shown = problems.slice(0, CONFIG_PROBLEMS_MAX).map((problem) => problem.text);
    const more = problems.length - shown.length;
    super(
      `Invalid configuration "${file}": fix ${problems.length} problem(s):\n  ` +
        shown.join("\n  ") + (more > 0 ? `\n  ... and ${more} more` : ""),
    );
    this.file = file;
    this.problems = problems;
  }
}

/** A checked configuration and where each value was written. */
export interface ConfigFile {
  path: string;
  values: ConfigValues;
  /** The dotted path of every value given, to its position. */
  positions: ReadonlyMap<string, SourcePosition>;
}

/** Options of {@link parseConfig}. */
export interface ParseConfigOptions {
  /** The file's name, for messages. */
  path: string;
  /**
   * Whether a `setups` key names a known setup (by name or UUID); an unknown
   * one is a problem. @default every key is accepted
   */
  knownSetup?: (key: string) => boolean;
}

/**
 * Checks a configuration's text.
 *
 * @throws {ConfigError} With every problem found, each with its position.
 */
export function parseConfig(text: string, options: ParseConfigOptions): ConfigFile {
  const lines = new LineCounter();
  const document = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const walk = new ConfigWalk(options.path, lines, document);
  for (const error of document.errors) {
    const message = error.code === "MULTIPLE_DOCS"
      ? "expected one YAML document, got several (remove the ---)"
      : error.message.replace(/ at line \d+, column \d+.*$/s, "");
    walk.problemAt(error.pos[0], [], message);
  }
  let values: Record<string, unknown> = {};
  if (document.errors.length === 0 && document.contents !== null) {
    values = walk.section(document.contents, { fields: CONFIG_SCHEMA }, []) ?? {};
    walk.crossCheck(values as ConfigValues, options.knownSetup);
  }
  if (walk.problems.length > 0) throw new ConfigError(options.path, walk.problems);
  return { path: options.path, values: values as ConfigValues, positions: walk.positions };
}

/**
 * Reads and checks a configuration file.
 *
 * @throws {ConfigError} When the file is invalid.
 * @throws {Deno.errors.NotFound} When it does not exist.
 */
export async function loadConfig(
  path: string,
  options: Omit<ParseConfigOptions, "path"> = {},
): Promise<ConfigFile> {
  using file = await Deno.open(path, { read: true });
  const { size } = await file.stat();
  if (size > CONFIG_BYTES_MAX) {
    throw new ConfigError(path, [
      problemText(path, 1, 1, "", `the file has ${size} bytes, more than ${CONFIG_BYTES_MAX}`),
    ]);
  }
  const text = await new Response(file.readable).text();
  return parseConfig(text, { ...options, path });
}

function problemText(
  file: string,
  line: number,
  column: number,
  path: string,
  message: string,
): ConfigProblem {
  const where = `${file}:${line}:${column}`;
  return {
    file,
    line,
    column,
    path,
    message,
    text: `${where}: ${path ? `${path}: ` : ""}${message}`,
  };
}

/** One walk over a parsed document, collecting values, positions and problems. */
class ConfigWalk {
  readonly problems: ConfigProblem[] = [];
  readonly positions = new Map<string, SourcePosition>();
  readonly #file: string;
  readonly #lines: LineCounter;
  readonly #document: Document;

  constructor(file: string, lines: LineCounter, document: Document) {
    this.#file = file;
    this.#lines = lines;
    this.#document = document;
  }

  problemAt(offset: number, path: readonly string[], message: string): void {
    const { line, col } = this.#lines.linePos(offset);
    this.problems.push(problemText(this.#file, line, col, path.join("."), message));
  }

  #problem(node: unknown, path: readonly string[], message: string): void {
    this.problemAt(offsetOf(node), path, message);
  }

  /** A value of any type; undefined when it is wrong (the problem is recorded). */
  value(node: unknown, type: FieldType, path: readonly string[]): unknown {
    const resolved = isAlias(node) ? node.resolve(this.#document) : node;
    const { line, col } = this.#lines.linePos(offsetOf(resolved));
    this.positions.set(path.join("."), { file: this.#file, line, column: col });
    switch (type.kind) {
      case "section":
        return this.section(resolved, type, path);
      case "named":
        return this.#named(resolved, type, path);
      case "list":
        return this.#list(resolved, type, path);
      default:
        return this.#scalar(resolved, type, path);
    }
  }

  section(
    node: unknown,
    type: { fields: Readonly<Record<string, Field>>; reservedFor?: string },
    path: readonly string[],
  ): Record<string, unknown> | undefined {
    // `scan:` with nothing after it is an empty section, as YAML writes one.
    if (isScalar(node) && node.value === null) return {};
    if (!isMap(node)) {
      this.#problem(node, path, `expected a map of keys, got ${describeNode(node)}`);
      return undefined;
    }
    const out: Record<string, unknown> = {};
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
      const field = key === undefined ? undefined : type.fields[key];
      if (key === undefined || field === undefined) {
        this.#problem(pair.key, path, unknownKeyMessage(key, type));
        continue;
      }
      const value = this.value(pair.value ?? pair.key, field.type, [...path, key]);
      if (value !== undefined) out[key] = value;
    }
    return out;
  }

  #named(
    node: unknown,
    type: Extract<FieldType, { kind: "named" }>,
    path: readonly string[],
  ): Record<string, unknown> | undefined {
    if (isScalar(node) && node.value === null) return {};
    if (!isMap(node)) {
      this.#problem(node, path, `expected a map of names, got ${describeNode(node)}`);
      return undefined;
    }
    if (node.items.length > type.entriesMax) {
      this.#problem(
        node,
        path,
        `expected at most ${type.entriesMax} entries, got ${node.items.length}`,
      );
      return undefined;
    }
    const out: Record<string, unknown> = {};
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? pair.key.value : undefined;
      if (typeof key !== "string" || key === "") {
        this.#problem(
          pair.key,
          path,
          `expected ${type.keyExpected} as the key, got ${describeNode(pair.key)}`,
        );
        continue;
      }
      const value = this.value(pair.value ?? pair.key, type.of, [...path, key]);
      if (value !== undefined) out[key] = value;
      // A named entry is found by its key: point there, not at its first value.
      const { line, col } = this.#lines.linePos(offsetOf(pair.key));
      this.positions.set([...path, key].join("."), { file: this.#file, line, column: col });
    }
    return out;
  }

  #list(
    node: unknown,
    type: Extract<FieldType, { kind: "list" }>,
    path: readonly string[],
  ): unknown[] | undefined {
    if (!isSeq(node)) {
      this.#problem(node, path, `expected a list, got ${describeNode(node)}`);
      return undefined;
    }
    if (node.items.length > type.itemsMax) {
      this.#problem(
        node,
        path,
        `expected at most ${type.itemsMax} items, got ${node.items.length}`,
      );
      return undefined;
    }
    const items = node.items.map((item, i) => this.value(item, type.of, [...path, String(i)]));
    return items.every((item) => item !== undefined) ? items : undefined;
  }

  #scalar(node: unknown, type: FieldType, path: readonly string[]): unknown {
    const value = isScalar(node) ? node.value : undefined;
    const expected = scalarProblem(value, type);
    if (!isScalar(node) || expected !== undefined) {
      this.#problem(
        node,
        path,
        `expected ${expected ?? expectedOf(type)}, got ${describeNode(node)}`,
      );
      return undefined;
    }
    return type.kind === "address" ? String(value) : value;
  }

  /** The checks that span sections. */
  crossCheck(values: ConfigValues, knownSetup: ((key: string) => boolean) | undefined): void {
    const targets = values.alerts?.targets ?? {};
    for (const [name, target] of Object.entries(targets)) {
      const given = ["exec", "webhook"].filter((key) => key in target);
      if (given.length !== 1) {
        this.#problemAtPath(
          ["alerts", "targets", name],
          `expected exactly one of exec or webhook, got ${given.length === 0 ? "none" : "both"}`,
        );
      }
    }
    for (const [name, policy] of Object.entries(values.policies ?? {})) {
      if (Object.keys(policy.when ?? {}).length === 0) {
        this.#problemAtPath(
          ["policies", name],
          "expected a when: section with at least one condition",
        );
      }
      if ((policy.then ?? []).length === 0) {
        this.#problemAtPath(["policies", name], "expected a then: list with at least one action");
      }
    }
    const sections = [["serve"], ...Object.keys(values.setups ?? {}).map((key) => ["setups", key])];
    for (const path of sections) {
      const section = path[0] === "serve" ? values.serve : values.setups?.[path[1]!];
      this.#namesExist(
        [...path, "alerts"],
        section?.alerts,
        targets,
        "alert target",
        "alerts.targets",
      );
      this.#namesExist(
        [...path, "policies"],
        section?.policies,
        values.policies ?? {},
        "policy",
        "policies",
      );
    }
    if (knownSetup === undefined) return;
    for (const key of Object.keys(values.setups ?? {})) {
      if (!knownSetup(key)) {
        this.#problemAtPath(
          ["setups", key],
          `unknown setup "${key}": no setup has this name or UUID; create it, or fix or remove the section`,
        );
      }
    }
  }

  #namesExist(
    path: readonly string[],
    names: readonly string[] | undefined,
    defined: Readonly<Record<string, unknown>>,
    what: string,
    where: string,
  ): void {
    (names ?? []).forEach((name, i) => {
      if (!(name in defined)) {
        this.#problemAtPath(
          [...path, String(i)],
          `unknown ${what} "${name}": define it under ${where}`,
        );
      }
    });
  }

  #problemAtPath(path: readonly string[], message: string): void {
    const position = this.positions.get(path.join("."));
    this.problems.push(
      problemText(this.#file, position?.line ?? 1, position?.column ?? 1, path.join("."), message),
    );
  }
}

/** Why a scalar does not fit its type, in "expected ..." words; undefined when it fits. */
function scalarProblem(value: unknown, type: FieldType): string | undefined {
  switch (type.kind) {
    case "integer":
      return typeof value === "number" && Number.isSafeInteger(value) && value >= type.min &&
          value <= type.max
        ? undefined
        : expectedOf(type);
    case "boolean":
      return typeof value === "boolean" ? undefined : expectedOf(type);
    case "string":
      return typeof value === "string" && value !== "" &&
          (type.pattern === undefined || type.pattern.test(value))
        ? undefined
        : expectedOf(type);
    case "enum":
      return typeof value === "string" && type.values.includes(value)
        ? undefined
        : expectedOf(type);
    case "address":
      return (typeof value === "string" || typeof value === "number") &&
          parseTcpListener(String(value)) !== undefined
        ? undefined
        : expectedOf(type);
    case "url":
      return typeof value === "string" && /^https?:\/\/[^/\s]+/.test(value) && URL.canParse(value)
        ? undefined
        : expectedOf(type);
    default:
      return expectedOf(type);
  }
}

/** What a type takes, in words. */
export function expectedOf(type: FieldType): string {
  switch (type.kind) {
    case "integer":
      return `a whole number from ${type.min} to ${type.max}`;
    case "boolean":
      return "true or false";
    case "string":
      return type.expected ?? "a non-empty string";
    case "enum":
      return `one of ${type.values.join(", ")}`;
    case "address":
      return "[host:]port, e.g. 127.0.0.1:8080";
    case "url":
      return "an http:// or https:// URL";
    case "list":
      return `a list of ${expectedOf(type.of)}`;
    case "section":
      return "a map of keys";
    case "named":
      return `a map of ${type.keyExpected}`;
  }
}

function unknownKeyMessage(
  key: string | undefined,
  type: { fields: Readonly<Record<string, Field>>; reservedFor?: string },
): string {
  if (key === undefined) return "expected a plain key";
  if (type.reservedFor !== undefined) {
    return `unknown key "${key}": this section is reserved for ${type.reservedFor} and takes no keys yet`;
  }
  return `unknown key "${key}": expected one of ${Object.keys(type.fields).join(", ")}`;
}

/** A node in words, for "got ...". */
function describeNode(node: unknown): string {
  if (isMap(node)) return "a map";
  if (isSeq(node)) return "a list";
  if (isScalar(node)) {
    if (node.value === null) return "nothing";
    return JSON.stringify(node.value);
  }
  return "nothing";
}

function offsetOf(node: unknown): number {
  return (node as Node | undefined)?.range?.[0] ?? 0;
}

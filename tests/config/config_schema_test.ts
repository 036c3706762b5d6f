/**
 * Goal: the documentation of the configuration stays true to the schema.
 * Method: every key of the schema (with `<name>` for named entries) appears
 * in docs/CONFIG.md's tables, and the example file of docs/ checks.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../../mod/config/config_file.ts";
import { CONFIG_SCHEMA, type Field } from "../../mod/config/config_schema.ts";

const DOCS = new URL("../../docs/", import.meta.url);

function documentedKeys(fields: Readonly<Record<string, Field>>, prefix: string): string[] {
  const keys: string[] = [];
  for (const [key, field] of Object.entries(fields)) {
    const type = field.type;
    if (type.kind === "section" && Object.keys(type.fields).length > 0) {
      keys.push(...documentedKeys(type.fields, `${prefix}${key}.`));
    } else if (type.kind === "named" && type.of.kind === "section") {
      const placeholder = prefix === "" && key === "setups" ? undefined : `${prefix}${key}.<name>.`;
      if (placeholder !== undefined) keys.push(...documentedKeys(type.of.fields, placeholder));
    } else keys.push(`${prefix}${key}`);
  }
  return keys;
}

Deno.test("docs/CONFIG.md documents every key of the schema", async () => {
  const text = await Deno.readTextFile(new URL("CONFIG.md", DOCS));
  // serve's keys are documented once for serve and setups alike, without a prefix.
  const { serve, ...rest } = CONFIG_SCHEMA;
  const keys = [
    ...documentedKeys((serve!.type as { fields: Record<string, Field> }).fields, ""),
    ...documentedKeys(rest, ""),
  ];
  const missing = keys.filter((key) => !text.includes(`| \`${key}\``));
  assert.deepEqual(missing, []);
  assert.ok(keys.length >= 40, `the walk found every key, not ${keys.length}`);
});

Deno.test("docs/dm-remap.example.yaml is a valid configuration", async () => {
  const path = new URL("dm-remap.example.yaml", DOCS).pathname;
  const config = parseConfig(await Deno.readTextFile(path), { path });
  assert.deepEqual(Object.keys(config.values.alerts?.targets ?? {}), ["ops-hook", "pager"]);
});

/**
 * `dm-remap config check [FILE]` and `dm-remap config show [NAME] [--json]`:
 * the configuration file checked as `serve` would read it (plus whether
 * every per-setup section names a known setup), and the effective settings
 * of a setup with where each value came from.
 *
 * @module
 */

import { EXIT_OK } from "../exit_codes.ts";
import type { CommandInput } from "../command.ts";
import { configLocation, readConfig } from "../config_source.ts";
import { onePositional, stringOption } from "../options.ts";
import { listRegistryEntries, readRegistryEntry } from "../setup_registry.ts";
import { serveConfiguration } from "../service_settings.ts";
import { UsageError } from "../../errors.ts";

/** Runs `config check` or `config show`. */
export async function configCommand(input: CommandInput): Promise<number> {
  const [action, ...rest] = input.positionals;
  if (action === "check") return await checkConfig({ ...input, positionals: rest });
  if (action === "show") return await showConfig({ ...input, positionals: rest });
  throw new UsageError(
    `Name what to do with the configuration: check or show, not "${action ?? ""}"`,
  );
}

async function checkConfig({ values, positionals, output }: CommandInput): Promise<number> {
  const file = onePositional(positionals, "configuration file", false);
  const location = file === undefined
    ? configLocation(stringOption(values.config))
    : { path: file, explicit: true };
  const registered = await listRegistryEntries();
  const known = new Set(registered.flatMap((entry) => [entry.name, entry.uuid]));
  const config = await readConfig(location, { knownSetup: (key) => known.has(key) });
  if (config === undefined) {
    output.out(`${location.path}: no such file; every setting has its default`);
    return EXIT_OK;
  }
  const { values: checked } = config;
  output.out(
    `${location.path}: valid: ${Object.keys(checked.setups ?? {}).length} setup section(s), ` +
      `${Object.keys(checked.alerts?.targets ?? {}).length} alert target(s), ` +
      `${Object.keys(checked.policies ?? {}).length} policy(ies)`,
  );
  return EXIT_OK;
}

async function showConfig({ values, positionals, output }: CommandInput): Promise<number> {
  const name = onePositional(positionals, "setup name", false);
  const location = configLocation(stringOption(values.config));
  const config = await readConfig(location);
  const uuid = name === undefined ? undefined : (await readRegistryEntry(name))?.uuid;
  const { effective } = serveConfiguration({}, { name, uuid }, config);
  if (values.json === true) {
    output.out(
      JSON.stringify({ file: config?.path ?? null, setup: name ?? null, effective }, null, 2),
    );
    return EXIT_OK;
  }
  output.out(
    `Configuration ${config === undefined ? `${location.path} (absent)` : config.path}` +
      (name === undefined ? ", defaults of every setup" : `, setup ${name}`),
  );
  const width = Math.max(...effective.map((setting) => setting.key.length));
  for (const setting of effective) {
    const value = typeof setting.value === "string" ? setting.value : JSON.stringify(setting.value);
    const live = setting.live ? "" : ", restart";
    output.out(`  ${setting.key.padEnd(width)}  ${value}  (${setting.source}${live})`);
  }
  return EXIT_OK;
}

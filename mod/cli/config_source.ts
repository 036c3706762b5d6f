/**
 * Which configuration file a command reads: `--config`, else
 * `DM_REMAP_CONFIG`, else `/etc/dm-remap/dm-remap.yaml`. The default file
 * may be absent (everything then has its built-in default); a file named
 * explicitly must exist.
 *
 * @module
 */

import { type ConfigFile, loadConfig, type ParseConfigOptions } from "../config/config_file.ts";
import { CONFIG_PATH_DEFAULT } from "../constants.ts";
import { UsageError } from "../errors.ts";

/** Where the configuration is, and whether someone named it. */
export interface ConfigLocation {
  path: string;
  /** Named by `--config` or `DM_REMAP_CONFIG`: it must exist. */
  explicit: boolean;
}

/** The configuration file's location from `--config` and the environment. */
export function configLocation(flag: string | undefined): ConfigLocation {
  if (flag !== undefined) return { path: flag, explicit: true };
  const fromEnvironment = Deno.env.get("DM_REMAP_CONFIG");
  if (fromEnvironment) return { path: fromEnvironment, explicit: true };
  return { path: CONFIG_PATH_DEFAULT, explicit: false };
}

/**
 * Reads and checks the configuration.
 *
 * @returns The file, or undefined when the default file does not exist.
 * @throws {ConfigError} When the file is invalid.
 * @throws {UsageError} When an explicitly named file does not exist.
 */
export async function readConfig(
  location: ConfigLocation,
  options: Omit<ParseConfigOptions, "path"> = {},
): Promise<ConfigFile | undefined> {
  try {
    return await loadConfig(location.path, options);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    if (!location.explicit) return undefined;
    throw new UsageError(
      `Cannot read the configuration "${location.path}": no such file; create it, or name ` +
        `another with --config or DM_REMAP_CONFIG`,
    );
  }
}

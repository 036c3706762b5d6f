/**
 * The version of dm-remap, from `deno.json`: `dm-remap --version` prints it
 * and the status API reports it.
 *
 * @example
 * ```ts
 * import { VERSION } from "./version.ts";
 * console.log(/^\d+\.\d+\.\d+/.test(VERSION)); // true
 * ```
 *
 * @module
 */

import manifest from "../deno.json" with { type: "json" };

/** The release version, e.g. `0.1.0`. */
export const VERSION: string = manifest.version;

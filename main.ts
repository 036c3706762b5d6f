/**
 * dm-remap: keeps disks with failing sectors in service by remapping failed
 * blocks to spare disks, and exports the result over NBD.
 *
 * @module
 */

import { runCli } from "./mod/cli/mod.ts";

if (import.meta.main) Deno.exit(await runCli(Deno.args));

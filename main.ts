/**
 * dm-remap: keeps disks with failing sectors in service by remapping failed
 * blocks to spare disks, and exports the result over NBD.
 *
 * @module
 */

import { runCli } from "./mod/cli/mod.ts";
import { inWorker, runConnectionWorker } from "./mod/dataplane/worker_main.ts";

// The NBD data plane starts its connection workers from this same module, so
// the single-file bundle needs no second file.
if (inWorker()) runConnectionWorker();
else if (import.meta.main) Deno.exit(await runCli(Deno.args));

/**
 * dm-remap: keeps disks with failing sectors in service by remapping failed
 * blocks to spare disks, and exports the result over NBD.
 *
 * @module
 */

import { inWorker } from "./mod/datapath/worker_main.ts";
import { runNbdConnectionWorker } from "./mod/export/nbd/connection_worker.ts";

// The NBD data plane starts its connection workers from this same module, so
// the single-file bundle needs no second file. The CLI is imported only
// outside workers: a worker then loads just the data plane, and starts in a
// fraction of the time.
if (inWorker()) runNbdConnectionWorker();
else if (import.meta.main) {
  const { runCli } = await import("./mod/cli/mod.ts");
  Deno.exit(await runCli(Deno.args));
}

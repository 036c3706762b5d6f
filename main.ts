/**
 * dm-remap: keeps disks with failing sectors in service by remapping failed
 * blocks to spare disks, and exports the result over NBD.
 *
 * @module
 */

import { inWorker } from "./mod/datapath/worker_main.ts";
import { runNbdConnectionWorker } from "./mod/export/nbd/connection_worker.ts";
import { PROBE_WORKER_NAME } from "./mod/assembly/probe_worker_name.ts";
import { UBLK_QUEUE_WORKER_NAME } from "./mod/export/ublk/worker_name.ts";

// The NBD data plane starts its connection workers from this same module, so
// the single-file bundle needs no second file; so does discovery, whose probe
// workers carry their own name, and so do ublk's queue workers. The CLI is imported only outside workers: a
// worker then loads just what it runs, and starts in a fraction of the time.
if (inWorker() && (globalThis as { name?: string }).name === PROBE_WORKER_NAME) {
  const { runProbeWorker } = await import("./mod/assembly/probe_pool.ts");
  runProbeWorker();
} else if (inWorker() && (globalThis as { name?: string }).name === UBLK_QUEUE_WORKER_NAME) {
  const { runUblkQueueWorker } = await import("./mod/export/ublk/queue_worker.ts");
  runUblkQueueWorker();
} else if (inWorker()) runNbdConnectionWorker();
else if (import.meta.main) {
  const { runCli } = await import("./mod/cli/mod.ts");
  Deno.exit(await runCli(Deno.args));
}

/**
 * The name a discovery probe worker is started with: the main module reads
 * it to know which worker body to run. A module of its own, so `main.ts`
 * decides without loading the probe code into every NBD connection worker.
 *
 * @module
 */

/** The worker name that makes the main module run `runProbeWorker()` (`probe_pool.ts`). */
export const PROBE_WORKER_NAME = "dm-remap-probe";

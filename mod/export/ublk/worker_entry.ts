/**
 * Entry module of a ublk queue worker when running from source (tests;
 * `deno run main.ts` starts its workers from itself, telling them apart by
 * name).
 *
 * @module
 */

import { runUblkQueueWorker } from "./queue_worker.ts";

runUblkQueueWorker();

/**
 * Entry module of an NBD connection worker when running from source (tests;
 * `deno run main.ts` passes its own URL instead, so the bundle needs no
 * second file).
 *
 * @module
 */

import { runNbdConnectionWorker } from "./connection_worker.ts";

runNbdConnectionWorker();

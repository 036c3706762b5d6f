/**
 * Entry module of a connection worker when running from source (tests, `deno
 * run main.ts` passes its own URL instead, so the bundle needs no second file).
 *
 * @module
 */

import { runConnectionWorker } from "./worker_main.ts";

runConnectionWorker();

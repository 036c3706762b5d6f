/**
 * The probe worker's body as a module of its own: `deno test` type-checks a
 * worker's module with the worker's globals, which the CLI behind `main.ts`
 * does not fit (it prompts). The program starts its workers from `main.ts`.
 *
 * @module
 */

import { runProbeWorker } from "../../mod/assembly/probe_pool.ts";

runProbeWorker();

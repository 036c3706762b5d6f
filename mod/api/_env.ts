/**
 * The Hono environment shared by the app and its routes.
 *
 * @module
 */

import type { ScanControl, StatusSource } from "./status.ts";

/**
 * What every handler can read from `c.var`: the injected status source, and
 * the scanner's controls when the server runs a scanner.
 */
export type ApiEnv = { Variables: { status: StatusSource; scanControl: ScanControl | undefined } };

/**
 * The Hono environment shared by the app and its routes.
 *
 * @module
 */

import type { PeerCredentials } from "../sys/syscalls.ts";
import type { SetupControl } from "./control.ts";
import type { ScanControl, StatusSource } from "./status.ts";

/**
 * What every handler can read: the injected status source, control and (when
 * the server runs a scanner) scanner controls in `c.var`, and in `c.env` what
 * the server knows of the connection: the peer's credentials over the Unix
 * socket (`unix_http_server.ts`), the remote address over TCP (`Deno.serve`),
 * nothing from `app.request()`.
 */
export type ApiEnv = {
  Bindings: { peer?: PeerCredentials; remoteAddr?: Deno.Addr } | undefined;
  Variables: {
    status: StatusSource;
    control: SetupControl | undefined;
    scanControl: ScanControl | undefined;
  };
};

/**
 * The guard on every request that changes something: any method but GET,
 * HEAD and OPTIONS, on any route, including routes added later, since it is
 * middleware that runs before every route.
 *
 * A mutation is let through when either:
 * - it carries `Authorization: Bearer <token>` and the token is the
 *   configured one (compared in constant time: both sides are hashed to
 *   SHA-256 first, so neither the content nor the length leaks through
 *   timing); or
 * - it came over the API's Unix socket (`unix_http_server.ts`) from a
 *   process whose credentials, as the kernel recorded them, are root's or
 *   hold the configured group (primary or supplementary).
 *
 * Otherwise it is refused: 401 with `WWW-Authenticate: Bearer` when no valid
 * token came (over TCP, or from `app.request()`), 403 when a Unix-socket peer
 * is neither root nor in the group. Reads are never refused here: who may
 * read is decided by who may connect (the socket's file mode, the TCP address).
 *
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";
import type { Context, MiddlewareHandler, Next } from "hono";
import type { ApiEnv } from "./_env.ts";
import type { ApiErrorBody } from "./error_body.ts";

/** The methods that only read, and so pass the guard. */
export const READ_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);

/** Who may change the setup through the API. */
export interface MutationGuardSettings {
  /** The bearer token that allows a mutation from anywhere. @default none (Unix socket only) */
  token?: string;
  /** The group whose members may change the setup over the Unix socket, besides root. @default none (root only) */
  socketGid?: number;
}

/**
 * The middleware; register it before every route.
 *
 * @param settings The token and the group.
 * @returns A middleware that answers 401 or 403 for a refused mutation and calls `next` otherwise.
 */
export function guardMutations(settings: MutationGuardSettings): MiddlewareHandler<ApiEnv> {
  const tokenDigest = settings.token === undefined ? undefined : digestOf(settings.token);
  return async function guard(c: Context<ApiEnv>, next: Next): Promise<Response | void> {
    if (READ_METHODS.has(c.req.method)) return await next();
    const authorization = c.req.header("authorization");
    if (authorization !== undefined) {
      const presented = /^Bearer (.{1,4096})$/.exec(authorization)?.[1];
      if (
        tokenDigest !== undefined && presented !== undefined &&
        timingSafeEqual(digestOf(presented), tokenDigest)
      ) {
        return await next();
      }
      return refuse(c, 401, "Cannot change the setup: the bearer token is not the configured one");
    }
    const peer = c.env?.peer;
    if (peer === undefined) {
      return refuse(
        c,
        401,
        "Cannot change the setup: send Authorization: Bearer <token> (the API's token), " +
          "or use the API's Unix socket as root or as a member of its group",
      );
    }
    const gid = settings.socketGid;
    const member = gid !== undefined && (peer.gid === gid || peer.groups.includes(gid));
    if (peer.uid === 0 || member) return await next();
    return refuse(
      c,
      403,
      `Cannot change the setup: process ${peer.pid} (uid ${peer.uid}) is not root` +
        (gid === undefined ? "" : ` and not in group ${gid}`) +
        "; run it as root" + (gid === undefined ? "" : " or in that group") +
        ", or send the API's bearer token",
    );
  };
}

function refuse(c: Context<ApiEnv>, status: 401 | 403, error: string): Response {
  if (status === 401) c.header("WWW-Authenticate", 'Bearer realm="dm-remap"');
  const body: ApiErrorBody = { error };
  return c.json(body, status);
}

function digestOf(text: string): Uint8Array {
  return createHash("sha256").update(text).digest();
}

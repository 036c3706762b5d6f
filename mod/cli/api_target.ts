/**
 * Which status API a command asks: `--api-url`, `--api-socket`, the named
 * setup's socket under the runtime directory, or the only one that answers.
 *
 * @module
 */

import { StatusRequestError } from "../api/client.ts";
import { UsageError } from "../errors.ts";
import { socketAnswers } from "../sys/unix_socket.ts";
import type { OptionValue } from "./command.ts";
import { RUN_DIR, stringOption } from "./options.ts";

/** The socket path or URL to ask for setup `name` (any running one when undefined). */
export async function apiTargetOf(
  values: Record<string, OptionValue>,
  name: string | undefined,
): Promise<string> {
  const url = stringOption(values["api-url"]);
  return url ?? stringOption(values["api-socket"]) ?? await defaultApiSocket(name);
}

async function defaultApiSocket(name: string | undefined): Promise<string> {
  if (name) return `${RUN_DIR}/${name}.api.sock`;
  const sockets: string[] = [];
  try {
    for await (const entry of Deno.readDir(RUN_DIR)) {
      const path = `${RUN_DIR}/${entry.name}`;
      // A socket left by a server that was killed answers nobody: it is not a running setup.
      if (entry.name.endsWith(".api.sock") && await socketAnswers(path).catch(() => false)) {
        sockets.push(path);
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (sockets.length === 1) return sockets[0]!;
  if (sockets.length === 0) {
    throw new StatusRequestError(
      RUN_DIR,
      `no dm-remap serve answers on a socket there: start one with "dm-remap serve <name>", ` +
        `or pass --api-socket or --api-url`,
    );
  }
  throw new UsageError(`${sockets.length} setups are running (${sockets.join(", ")}): name one`);
}

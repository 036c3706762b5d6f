/**
 * Real alert receivers for tests: an HTTP server on 127.0.0.1 that records
 * every JSON body POSTed to it, a "dead" webhook (a port that accepts and
 * never answers), and an exec hook script that appends its argv to a file.
 *
 * @module
 */

import type { AlertBody } from "../../mod/alerts/alert_delivery.ts";

/** A webhook receiver; `status` is what it answers (500 to test retries). */
export interface WebhookReceiver extends AsyncDisposable {
  url: string;
  bodies: AlertBody[];
  status: number;
  /** Resolves once `count` bodies have arrived (or rejects after `timeoutMs`). */
  received(count: number, timeoutMs?: number): Promise<AlertBody[]>;
}

/** Starts an HTTP receiver on 127.0.0.1 with a free port. */
export function startWebhookReceiver(): WebhookReceiver {
  const bodies: AlertBody[] = [];
  const receiver = {
    url: "",
    bodies,
    status: 200,
    async received(count: number, timeoutMs = 20_000): Promise<AlertBody[]> {
      const deadline = Date.now() + timeoutMs;
      while (bodies.length < count) {
        if (Date.now() > deadline) {
          throw new Error(
            `expected ${count} alerts, received ${bodies.length}: ${JSON.stringify(bodies)}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return bodies;
    },
    [Symbol.asyncDispose]: async () => await server.shutdown(),
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    bodies.push(await request.json());
    return new Response("ok", { status: receiver.status });
  });
  receiver.url = `http://127.0.0.1:${server.addr.port}/alerts`;
  return receiver;
}

/** A port that accepts connections and never answers: the dead webhook. */
export interface DeadWebhook extends Disposable {
  url: string;
  /** Connections it accepted. */
  accepted: number;
}

export function startDeadWebhook(): DeadWebhook {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const dead = {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/alerts`,
    accepted: 0,
    [Symbol.dispose]() {
      listener.close();
      for (const conn of held) conn.close();
    },
  };
  (async () => {
    try {
      for await (const conn of listener) {
        dead.accepted++;
        held.push(conn);
      }
    } catch {
      // Closed.
    }
  })();
  return dead;
}

/** Writes an exec hook that appends its four arguments, tab-separated, to `logPath`. */
export async function writeHookScript(dir: string, logPath: string): Promise<string> {
  const path = `${dir}/hook.sh`;
  await Deno.writeTextFile(
    path,
    `#!/bin/sh\nprintf '%s\\t%s\\t%s\\t%s\\t%s\\n' "$1" "$2" "$3" "$4" "$DM_REMAP_SUPPRESSED" >> '${logPath}'\n`,
  );
  await Deno.chmod(path, 0o755);
  return path;
}

/** The hook's recorded calls: [event, setup, device, details, suppressed]. */
export async function hookCalls(logPath: string): Promise<string[][]> {
  try {
    const text = await Deno.readTextFile(logPath);
    return text.split("\n").filter((line) => line !== "").map((line) => line.split("\t"));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

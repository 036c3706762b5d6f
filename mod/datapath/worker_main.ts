/**
 * The body of a connection worker, for any export: waits for its setup,
 * serves the connection with the export's own function, reports the end. A
 * programmer error is reported as "crashed", so the engine's thread fails
 * the whole process, as it would for its own.
 *
 * @module
 */

import { MessageQueue } from "./data_path.ts";
import type { FromWorker, ToWorker, WorkerSetup } from "./messages.ts";

/** How an export serves one connection on its worker (NBD: `serveWorkerConnection`). */
export type ServeConnection = (
  setup: WorkerSetup,
  messages: MessageQueue,
  post: (message: FromWorker) => void,
) => Promise<void>;

/** Whether this code runs inside a worker (not on the main thread). */
export function inWorker(): boolean {
  return "WorkerGlobalScope" in globalThis;
}

/** Starts the worker: the first message is its setup, the rest go to the connection. */
export function runConnectionWorker(serve: ServeConnection): void {
  const scope = globalThis as unknown as {
    onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
    postMessage(message: FromWorker): void;
  };
  const post = (message: FromWorker) => scope.postMessage(message);
  const messages = new MessageQueue();
  let started = false;
  scope.onmessage = (event) => {
    const message = event.data;
    if (started) return messages.push(message);
    if (message.type !== "setup") throw new Error("A connection worker starts with its setup");
    started = true;
    serve(message.setup, messages, post).catch((error: unknown) => {
      const failure = error instanceof Error ? error : new Error(String(error));
      post({ type: "crashed", message: failure.message, stack: failure.stack ?? "" });
    });
  };
  post({ type: "started" });
}

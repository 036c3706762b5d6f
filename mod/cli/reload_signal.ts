/**
 * The reload request of a running `serve`: SIGHUP, as daemons take it
 * (`systemctl reload` sends it, see the unit's ExecReload).
 *
 * @module
 */

/**
 * Calls `handler` on every SIGHUP, one at a time: a SIGHUP that arrives
 * during a reload runs another reload after it.
 *
 * @returns A function that stops listening.
 */
export function onReloadSignal(handler: () => Promise<void>): () => void {
  let tail = Promise.resolve();
  const listener = () => {
    tail = tail.then(handler);
  };
  Deno.addSignalListener("SIGHUP", listener);
  return () => Deno.removeSignalListener("SIGHUP", listener);
}

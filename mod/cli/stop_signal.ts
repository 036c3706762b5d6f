/**
 * The stop request of a foreground command: systemd's SIGTERM, or Ctrl-C.
 *
 * @module
 */

/** Resolves on the first SIGINT or SIGTERM. */
export function untilSignal(): Promise<Deno.Signal> {
  return new Promise((resolve) => {
    const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
    const handlers = signals.map((signal) => {
      const handler = () => {
        signals.forEach((each, i) => Deno.removeSignalListener(each, handlers[i]!));
        resolve(signal);
      };
      Deno.addSignalListener(signal, handler);
      return handler;
    });
  });
}

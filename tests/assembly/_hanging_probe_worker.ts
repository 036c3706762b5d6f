/**
 * A probe worker whose probes of `/hang/...` never answer, as a read blocked
 * on a dead disk: it spins on its thread, which only termination ends.
 *
 * @module
 */

const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<{ path: string }>) => void) | null;
  postMessage(message: unknown): void;
};
scope.onmessage = (event) => {
  const path = event.data.path;
  if (path.startsWith("/hang/")) {
    for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
  }
  scope.postMessage({ type: "probe", probe: { path, validCopies: 0, invalidReasons: [] } });
};
scope.postMessage({ type: "ready" });

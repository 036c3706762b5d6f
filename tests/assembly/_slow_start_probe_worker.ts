/**
 * A probe worker that takes longer to start than PROBE_WORKER_START_MS_MAX, as a worker loading
 * the program on a loaded machine under emulation does (seen in the boot tests: 30 s was not
 * enough), then answers every probe with "no metadata".
 *
 * @module
 */

import { PROBE_WORKER_START_MS_MAX } from "../../mod/constants.ts";

const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<{ path: string }>) => void) | null;
  postMessage(message: unknown): void;
};
scope.onmessage = (event) => {
  const path = event.data.path;
  scope.postMessage({ type: "probe", probe: { path, validCopies: 0, invalidReasons: [] } });
};
setTimeout(() => scope.postMessage({ type: "ready" }), PROBE_WORKER_START_MS_MAX + 1_000);

/**
 * `runClient` (tests/clients/run_client.ts), which every client suite relies on:
 * it must capture output and exit codes, feed stdin, kill hung clients, and
 * turn a missing tool into a failure rather than a skip.
 *
 * Method: run small, always-present programs (sh, cat) and a missing one.
 */

import assert from "node:assert/strict";
import { assertClientOk, runClient } from "../../clients/run_client.ts";

Deno.test("runClient captures stdout, stderr and the exit code", async () => {
  const result = await runClient("sh", ["-c", "echo out; echo err >&2; exit 3"]);
  assert.equal(result.code, 3);
  assert.equal(result.stdout, "out\n");
  assert.equal(result.stderr, "err\n");
  assert.throws(() => assertClientOk(result), /exited with 3[\s\S]*out[\s\S]*err/);
});

Deno.test("runClient feeds stdin and closes it", async () => {
  const result = await runClient("cat", [], { stdin: "hello\n" });
  assertClientOk(result);
  assert.equal(result.stdout, "hello\n");
});

Deno.test("runClient kills a client that outlives its timeout", async () => {
  const startedMs = performance.now();
  const result = await runClient("sleep", ["30"], { timeoutMs: 100 });
  assert.equal(result.timedOut, true);
  assert.equal(result.signal, "SIGKILL");
  assert.ok(performance.now() - startedMs < 5000);
  assert.throws(() => assertClientOk(result), /timed out/);
});

Deno.test("runClient fails, never skips, when the client is not installed", async () => {
  await assert.rejects(
    runClient("dm-remap-no-such-client", []),
    /not installed; run scripts\/setup.sh/,
  );
});

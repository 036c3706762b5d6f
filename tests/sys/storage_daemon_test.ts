/**
 * The root storage daemon's calls (`mod/sys/storage_daemon.ts`).
 *
 * Goal: a process whose argv[0] starts with '@' knows it; becomeRootStorageDaemon() sets PR_SET_IO_FLUSHER (read back with PR_GET_IO_FLUSHER) and
 * oom_score_adj -1000; a process started normally is not taken for one.
 * Method: a child Deno process started with argv[0] "@dm-remap-test" (node:child_process), which
 * reports what /proc and prctl say after the call. Both calls need CAP_SYS_RESOURCE: where this
 * process lacks it (a container), the test checks that each refusal is reported (EPERM) instead;
 * the boot tests check the daemon's oom_score_adj in a guest, as root with every capability.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";

const MODULE = new URL("../../mod/sys/storage_daemon.ts", import.meta.url).href;
const CHILD = `
import { becomeRootStorageDaemon, hasRootStorageDaemonName, isIoFlusher } from "${MODULE}";
const named = hasRootStorageDaemonName();
const flusherBefore = isIoFlusher();
const report = named ? becomeRootStorageDaemon() : undefined;
console.log(JSON.stringify({
  named, flusherBefore, report, flusher: isIoFlusher(),
  oomScoreAdj: Deno.readTextFileSync("/proc/self/oom_score_adj").trim(),
}));
`;

const CAP_SYS_RESOURCE = 24;

/** Whether this process has a capability in its effective set (/proc/self/status CapEff). */
function hasCapability(bit: number): boolean {
  const status = Deno.readTextFileSync("/proc/self/status");
  const effective = BigInt(`0x${status.match(/CapEff:\s+([0-9a-f]+)/)![1]}`);
  return ((effective >> BigInt(bit)) & 1n) === 1n;
}

function runChild(argv0: string) {
  const result = spawnSync(Deno.execPath(), ["eval", CHILD], { argv0, encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  return JSON.parse(result.stdout);
}

Deno.test("becomeRootStorageDaemon() sets PR_SET_IO_FLUSHER and oom_score_adj -1000 for an '@' process", () => {
  const daemon = runChild("@dm-remap-test");
  assert.equal(daemon.named, true);
  assert.equal(daemon.flusherBefore, false);
  if (hasCapability(CAP_SYS_RESOURCE)) {
    assert.deepEqual(daemon.report, { ioFlusher: "ok", oomScoreAdj: "ok" });
    assert.equal(daemon.flusher, true);
    assert.equal(daemon.oomScoreAdj, "-1000");
  } else {
    assert.equal(daemon.report.ioFlusher, "errno 1");
    assert.match(daemon.report.oomScoreAdj, /Permission denied/);
    assert.equal(daemon.flusher, false);
  }

  const plain = runChild(Deno.execPath());
  assert.equal(plain.named, false);
  assert.equal(plain.flusher, false);
  assert.equal(plain.report, undefined);
});

/**
 * The root storage daemon's calls (`mod/sys/storage_daemon.ts`).
 *
 * Goal: a process whose argv[0] starts with '@' knows it; becomeRootStorageDaemon() sets PR_SET_IO_FLUSHER (read back with PR_GET_IO_FLUSHER) and
 * oom_score_adj -1000, and locks its mapped files (the runtime's binary among them) into memory,
 * after which the runtime still collects garbage and starts a Worker (mlockall would make V8
 * abort there); a process started normally is not taken for one.
 * Method: a child Deno process started with argv[0] "@dm-remap-test" (node:child_process), which
 * reports what /proc and prctl say after the call. The first two calls need CAP_SYS_RESOURCE:
 * where this process lacks it (a container), the test checks that each refusal is reported
 * (EPERM) instead; the boot tests check the daemon's oom_score_adj and locked memory in a guest,
 * as root with every capability.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileMappings } from "../../mod/sys/storage_daemon.ts";

const MODULE = new URL("../../mod/sys/storage_daemon.ts", import.meta.url).href;
const CHILD = `
import { becomeRootStorageDaemon, fileMappings, hasRootStorageDaemonName, isIoFlusher } from "${MODULE}";
const named = hasRootStorageDaemonName();
const flusherBefore = isIoFlusher();
const report = named ? becomeRootStorageDaemon() : undefined;
// Garbage for V8 to collect and give back, in this isolate and a Worker's.
const worker = new Worker("data:text/javascript,self.onmessage = () => { " +
  "for (let round = 0; round < 20; round++) Array.from({ length: 200000 }, (_, i) => ({ i })); " +
  "self.postMessage('done'); };", { type: "module" });
const workerDone = new Promise((resolve) => worker.onmessage = resolve);
worker.postMessage("go");
for (let round = 0; round < 100; round++) {
  Array.from({ length: 20000 }, (_, i) => ({ bytes: new Uint8Array(256), text: "x".repeat(i & 63) }));
  await new Promise((resolve) => setTimeout(resolve, 1));
}
await workerDone;
worker.terminate();
const exe = Deno.realPathSync("/proc/self/exe");
const exeMappedBytes = fileMappings(Deno.readTextFileSync("/proc/self/maps"))
  .filter((mapping) => mapping.path === exe)
  .reduce((sum, mapping) => sum + Number(mapping.end - mapping.start), 0);
const lockedKiB = Number(Deno.readTextFileSync("/proc/self/status").match(/VmLck:\\s+(\\d+)/)[1]);
console.log(JSON.stringify({
  named, flusherBefore, report, flusher: isIoFlusher(),
  oomScoreAdj: Deno.readTextFileSync("/proc/self/oom_score_adj").trim(),
  exeMappedBytes, lockedBytes: lockedKiB * 1024,
}));
`;

const CAP_IPC_LOCK = 14;
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

Deno.test("becomeRootStorageDaemon() sets PR_SET_IO_FLUSHER, oom_score_adj -1000 and locks its files for an '@' process", () => {
  const daemon = runChild("@dm-remap-test");
  assert.equal(daemon.named, true);
  assert.equal(daemon.flusherBefore, false);
  if (hasCapability(CAP_SYS_RESOURCE)) {
    assert.equal(daemon.report.ioFlusher, "ok");
    assert.equal(daemon.report.oomScoreAdj, "ok");
    assert.equal(daemon.flusher, true);
    assert.equal(daemon.oomScoreAdj, "-1000");
  } else {
    assert.equal(daemon.report.ioFlusher, "errno 1");
    assert.match(daemon.report.oomScoreAdj, /Permission denied/);
    assert.equal(daemon.flusher, false);
  }
  assert.ok(hasCapability(CAP_IPC_LOCK), "the test runs as root with CAP_IPC_LOCK");
  assert.equal(daemon.report.mappedFilesLocked, "ok");
  assert.ok(
    daemon.exeMappedBytes > 16 * 2 ** 20,
    `the runtime maps ${daemon.exeMappedBytes} bytes`,
  );
  assert.ok(
    daemon.lockedBytes >= daemon.exeMappedBytes,
    `locked ${daemon.lockedBytes} bytes, the runtime's binary maps ${daemon.exeMappedBytes}`,
  );

  const plain = runChild(Deno.execPath());
  assert.equal(plain.named, false);
  assert.equal(plain.flusher, false);
  assert.equal(plain.report, undefined);
  assert.equal(plain.lockedBytes, 0);
});

Deno.test("fileMappings() keeps the ranges of files, not anonymous memory, special areas or devices", () => {
  const maps = [
    "55d0c0000000-55d0c4000000 r--p 00000000 fd:01 1234   /usr/lib/dm-remap/deno",
    "7f00000000-7f00100000 rw-p 00000000 00:00 0 ",
    "7f00100000-7f00200000 rw-p 00000000 00:00 0                          [heap]",
    "7f00200000-7f00201000 rw-s 00000000 00:05 77                         /dev/ublkc0",
    "7f00300000-7f00302000 r-xp 00001000 fd:01 99   /run/a dir/old file (deleted)",
    "7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                      [stack]",
  ].join("\n");
  assert.deepEqual(fileMappings(maps), [
    { start: 0x55d0c0000000n, end: 0x55d0c4000000n, path: "/usr/lib/dm-remap/deno" },
    { start: 0x7f00300000n, end: 0x7f00302000n, path: "/run/a dir/old file (deleted)" },
  ]);
});

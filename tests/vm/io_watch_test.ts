/**
 * The guest's I/O watch (`io_watch` in tests/vm/guest/lib.sh), run on the
 * host against a made-up /sys/block/nbd0: which stalls it fails, and which it
 * allows as the 6.1 kernel's rescuer case. Each case runs in its own mount
 * namespace (a tmpfs on /tmp, the made-up directory over /sys/block), with
 * the count of the kernel's connection readers (`nbd_receivers`) read from a
 * file the case's timeline writes.
 */
import assert from "node:assert/strict";

const LIB = new URL("./guest/lib.sh", import.meta.url).pathname;

interface WatchCase {
  /** Connections the scenario attached with (/tmp/io_watch.connections). @default 2 */
  connections?: number;
  /** Readers the kernel runs at the start. @default 1 */
  receivers?: number;
  /** @default 6 */
  rescuerStallSeconds?: number;
  /**
   * Shell commands run while the watch runs, with one request in flight and none completing;
   * `complete 0` completes it, `kernel_log LINE` logs a kernel line.
   */
  timeline: string;
}

interface WatchResult {
  check: string;
  ok: boolean;
  detail: string;
}

/** Every case judges a stall after 1 s (IO_STALL_SECONDS). */
async function watch(
  { connections = 2, receivers = 1, rescuerStallSeconds = 6, timeline }: WatchCase,
): Promise<WatchResult[]> {
  const script = `
set -e
mount -t tmpfs none /tmp
mkdir -p /tmp/sys/nbd0
mount --bind /tmp/sys /sys/block
. "${LIB}"
set +e
IO_STALL_SECONDS=1
RESCUER_STALL_SECONDS=${rescuerStallSeconds}
nbd_receivers() { cat /tmp/receivers; }
nbd_receiver_stacks() { echo "receiver stacks"; }
stall_report() { echo "stall report"; }
# The kernel log: a file, with the marks and the kernel's lines each case writes.
mark() { echo "dmremap-mark $1" >>/tmp/kmsg; }
dmesg() { cat /tmp/kmsg; }
kernel_log() { echo "$1" >>/tmp/kmsg; }
: >/tmp/kmsg
completed=5
complete() {
  completed=$((completed + 1))
  echo "$completed 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0" >/sys/block/nbd0/stat
  echo "$1 0" >/sys/block/nbd0/inflight
}
echo ${receivers} >/tmp/receivers
complete 1
io_watch_start
echo ${connections} >/tmp/io_watch.connections
${timeline}
io_watch_end
`;
  const output = await new Deno.Command("unshare", { args: ["-m", "sh", "-c", script] }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  assert.ok(output.success, `the watch's shell failed: ${new TextDecoder().decode(output.stderr)}`);
  return stdout.split("\n").filter((line) => line.startsWith("DMREMAP-RESULT "))
    .map((line) => JSON.parse(line.slice("DMREMAP-RESULT ".length)));
}

/** Each result as [check, ok]. */
const outcomes = (results: WatchResult[]) => results.map(({ check, ok }) => [check, ok]);

Deno.test("io_watch: a stall that began with a connection unread is allowed to its end, though the readers change", async () => {
  // The 6.1 rescuer case: 1 of 2 connections read; then a second reader starts before the
  // stalled request completes.
  const results = await watch({
    timeline: "sleep 2.5; echo 2 >/tmp/receivers; sleep 1.5; complete 0; sleep 1",
  });
  assert.deepEqual(outcomes(results), [
    ["observe:io_watch_unread_connection", true],
    ["io_watch", true],
  ]);
});

Deno.test("io_watch: a stall with a connection unread fails after RESCUER_STALL_SECONDS", async () => {
  const results = await watch({
    rescuerStallSeconds: 3,
    timeline: "sleep 4.5",
  });
  assert.deepEqual(outcomes(results), [
    ["observe:io_watch_unread_connection", true],
    ["io_stall", false],
    ["io_watch", false],
  ]);
  assert.match(results[1]!.detail, /none completed for 3 s: stall report/);
});

Deno.test("io_watch: a stall with every connection read fails after IO_STALL_SECONDS", async () => {
  const results = await watch({
    receivers: 2,
    // The readers drop after the stall is judged: it stays a failure, reported once.
    timeline: "sleep 2; echo 1 >/tmp/receivers; sleep 1",
  });
  assert.deepEqual(outcomes(results), [["io_stall", false], ["io_watch", false]]);
  assert.match(results[0]!.detail, /none completed for 1 s/);
});

const TIMEOUT_LINE = "block nbd0: Connection timed out, retrying (0/2 alive)";

Deno.test("io_watch: a request timeout the kernel logs while the watch is paused is left out", async () => {
  // A scenario stops the server on purpose: held requests time out until the device is detached.
  const results = await watch({
    connections: 1,
    timeline:
      `io_watch_pause; sleep 1.5; kernel_log "${TIMEOUT_LINE}"; complete 0; io_watch_resume`,
  });
  assert.deepEqual(outcomes(results), [["io_watch", true]]);
});

Deno.test("io_watch: a request timeout the kernel logs after the watch resumes fails it", async () => {
  const results = await watch({
    connections: 1,
    timeline: `io_watch_pause; complete 0; io_watch_resume; kernel_log "${TIMEOUT_LINE}"`,
  });
  assert.deepEqual(outcomes(results), [["io_watch", false]]);
  assert.match(results[0]!.detail, /kernel: block nbd0: Connection timed out/);
});

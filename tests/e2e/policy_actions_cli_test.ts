/**
 * Policies that act on the scanner and the spare pool, in a real `serve`.
 *
 * Goal: a block turning pending drops the scanner's health score below a
 * policy's threshold, and the policy starts a scan pass on a server whose
 * schedule is off; the pass finds another dead block, and a second policy
 * (scan findings, and a spare at least 1% full) stops allocating on that
 * spare: the next remap lands on the other spare although fill-first would
 * have chosen the first, which has free slots, while the server keeps
 * serving. Both policies are
 * listed in `GET /api/v1/policies` with their last evaluation.
 * Method: `dm-remap create` and `serve --config` as processes over a main
 * disk that fails in the kernel (nbdkit behind nbdfuse) and two spares
 * (image files); qemu-io as the NBD client; the status API
 * over its Unix socket.
 */

import assert from "node:assert/strict";
import { startFailingDisk } from "../clients/failing_disk.ts";
import { assertClientOk, runClient } from "../clients/run_client.ts";
import type { SetupStatus } from "../../mod/api/status.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import type { PolicyEvaluation } from "../../mod/policy/policy.ts";
import type { ScanStatus } from "../../mod/scan/mod.ts";
import { apiRequest } from "./api_request.ts";
import { imageDirectory, runCli, startServe } from "./cli_process.ts";

const MIB = 1024 * 1024;
const BLOCK = 4096;
/** A block no client reads, early on the disk so the scanner's first chunk finds it. */
const DEAD_BYTES = 512 * 1024;

const CONFIG = `# written by policy_actions_cli_test.ts
policies:
  rescan:
    when: { health-score-below: 60 }
    then: [start-scan]
  avoid:
    when: { scan-findings: 1, spare-used-percent: 1 }
    then: [stop-allocating]
`;

async function qemuIo(uri: string, command: string): Promise<string> {
  const result = await runClient("qemu-io", ["-f", "raw", uri, "-c", command]);
  assertClientOk(result);
  return result.stdout + result.stderr;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

Deno.test("serve evaluates health-score and scan-findings policies: a scan starts, and allocation stops on the full spare", async () => {
  const files = await imageDirectory({
    // Small, and with room for the record of spare 1's slots (format 2).
    "spare0.img": minimumSpareBytes(BLOCK) + 8306688 + 64 * BLOCK,
    // Sparse: so large that relocations of the whole main disk fill under 1% of it.
    "spare1.img": 2048 * MIB,
  });
  const main = await startFailingDisk({ sizeBytes: 4 * MIB });
  try {
    const configPath = files.file("dm-remap.yaml");
    await Deno.writeTextFile(configPath, CONFIG);
    const spares = ["--spare", files.file("spare0.img"), "--spare", files.file("spare1.img")];
    const created = await runCli(["create", "acting", "--main", main.path, ...spares]);
    assert.equal(created.code, 0, created.stderr);
    const socket = files.file("nbd.sock");
    const api = files.file("api.sock");
    const uri = `nbd+unix:///acting?socket=${socket}`;
    // The schedule is off (--no-scan): only the policy starts a pass.
    const serve = await startServe([
      "--config",
      configPath,
      "--main",
      main.path,
      ...spares,
      "--socket",
      socket,
      "--api-socket",
      api,
      "--events-db",
      files.file("events.sqlite"),
      "--no-smart",
    ]);
    const policies = async () =>
      ((await apiRequest(api, "/api/v1/policies")).json as { policies: PolicyEvaluation[] })
        .policies;
    const scan = async () => (await apiRequest(api, "/api/v1/scan")).json as ScanStatus;
    const spare0SlotCount = async () =>
      ((await apiRequest(api, "/api/v1/status")).json as SetupStatus).spares[0]!.slotCount;
    let finished;
    try {
      const before = await scan();
      assert.deepEqual([before.state, before.passesCompleted], ["waiting", 0]);
      assert.deepEqual((await policies()).map((policy) => [policy.name, policy.holds]), [
        ["rescan", false],
        ["avoid", false],
      ]);

      // 1. Failing writes: the blocks go to spare 0 (fill-first), over 1% of its slots.
      const usedBlocks = Math.ceil((await spare0SlotCount()) / 100) + 1;
      await main.setBadRanges([
        { offsetBytes: 1 * MIB, lengthBytes: usedBlocks * BLOCK, fail: "write" },
      ]);
      assert.doesNotMatch(
        await qemuIo(uri, `write -P 0x11 ${1 * MIB} ${usedBlocks * BLOCK}`),
        /error/i,
      );
      // 2. A block a client wrote turns unreadable, and so does one no client reads.
      assert.doesNotMatch(await qemuIo(uri, `write -P 0x22 ${2 * MIB} ${BLOCK}`), /error/i);
      await main.setBadRanges([
        { offsetBytes: 1 * MIB, lengthBytes: usedBlocks * BLOCK, fail: "write" },
        { offsetBytes: 2 * MIB, lengthBytes: BLOCK, fail: "read" },
        { offsetBytes: DEAD_BYTES, lengthBytes: BLOCK, fail: "read" },
      ]);
      const unreadable = await runClient("qemu-io", [
        "-f",
        "raw",
        uri,
        "-c",
        `read ${2 * MIB} ${BLOCK}`,
      ]);
      assert.match(unreadable.stdout + unreadable.stderr, /Input\/output error/);

      // 3. The block is pending, the score falls to 59: the policy starts a pass.
      const rescan = await until("the rescan policy's action", async () => {
        const found = (await policies()).find((policy) => policy.name === "rescan");
        return found?.holds === true ? found : undefined;
      });
      assert.deepEqual(rescan.reasons, ["health score 59 (below 60)"]);
      assert.deepEqual(rescan.actions, ["start-scan"]);
      const scanning = await scan();
      assert.ok(
        scanning.state === "scanning" || scanning.passesCompleted > 0,
        JSON.stringify(scanning),
      );
      // 4. The pass finds the dead block; the second policy stops allocating on spare 0.
      const avoid = await until("the avoid policy's action", async () => {
        const found = (await policies()).find((policy) => policy.name === "avoid");
        return found?.holds === true ? found : undefined;
      });
      assert.deepEqual(avoid.actions, ["stop-allocating on spares 0"]);
      assert.match(avoid.reasons[0]!, /^fullest active spare [\d.]+% used \(at least 1%\)$/);
      assert.match(
        avoid.reasons[1]!,
        /^\d+ bad blocks found by the last scan pass \(at least 1\)$/,
      );
      // The first finding may be the dead block or a neighbour that reads slowly alone through
      // FUSE (a fork per request); either is a finding, and the dead block guarantees one.
      const status = (await apiRequest(api, "/api/v1/status")).json as SetupStatus;
      assert.deepEqual(status.spares.map((spare) => spare.allocationStopped), [true, false]);
      const spare0 = status.spares[0]!;
      assert.ok(spare0.slotsUsed < spare0.slotCount, JSON.stringify(spare0));

      // 5. The next remap avoids spare 0, which has free slots, and lands on spare 1.
      await main.setBadRanges([{ offsetBytes: 3 * MIB, lengthBytes: BLOCK, fail: "write" }]);
      assert.doesNotMatch(await qemuIo(uri, `write -P 0x33 ${3 * MIB} ${BLOCK}`), /error/i);
      assert.match(await qemuIo(uri, `read -P 0x33 ${3 * MIB} ${BLOCK}`), /read 4096\/4096/);
      const remaps = (await apiRequest(api, "/api/v1/remaps?limit=1000")).json as {
        entries: { blockIndex: number; spareIndex: number }[];
      };
      const spareOf = new Map(remaps.entries.map((entry) => [entry.blockIndex, entry.spareIndex]));
      assert.equal(spareOf.get(1 * MIB / BLOCK), 0);
      assert.equal(spareOf.get(3 * MIB / BLOCK), 1, "fill-first alone would choose spare 0");
    } finally {
      serve.kill("SIGTERM");
      finished = await serve.finished();
    }
    assert.equal(finished.code, 0, finished.stderr);
    assert.match(finished.stderr, /event=policy-action policy=rescan action=start-scan/);
    assert.match(
      finished.stderr,
      /event=policy-action policy=avoid action=stop-allocating spares=0/,
    );
  } finally {
    await main.stop();
    await files.cleanup();
  }
});

/**
 * `serve --ublk` where the kernel has no ublk driver (this host): one line
 * that names the missing driver and the fix, exit 69, the setup's disks
 * unchanged byte for byte.
 * `--queues`/`--depth` are refused without `--ublk`, and `--ublk` with
 * `--attach`. The ublk export itself runs against trixie's 6.12 kernel in
 * tests/vm ("vm ublk 1").
 */

import assert from "node:assert/strict";
import { runCli } from "./cli_process.ts";

const ublkPresent = (() => {
  try {
    Deno.statSync("/dev/ublk-control");
    return true;
  } catch {
    return false;
  }
})();

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

Deno.test({
  name: "serve --ublk without ublk_drv: exit 69, says modprobe ublk_drv, disks unchanged",
  ignore: ublkPresent,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dm-remap-ublk-" });
    try {
      const main = `${dir}/main.img`;
      const spare = `${dir}/spare.img`;
      await Deno.writeFile(main, new Uint8Array(0));
      await Deno.truncate(main, 64 << 20);
      await Deno.writeFile(spare, new Uint8Array(0));
      await Deno.truncate(spare, 16 << 20);
      const created = await runCli(["create", "t", "--main", main, "--spare", spare]);
      assert.equal(created.code, 0, created.stderr);
      const before = [await sha256(main), await sha256(spare)];
      const serveArgs = [
        "serve",
        "--spare",
        spare,
        "--socket",
        `${dir}/nbd.sock`,
        "--api-socket",
        `${dir}/api.sock`,
        "--events-db",
        `${dir}/events.sqlite`,
      ];
      const refused = await runCli([...serveArgs, "--ublk"], { timeoutMs: 60_000 });
      assert.equal(refused.code, 69, refused.stderr);
      const lastLine = refused.stderr.trim().split("\n").at(-1)!;
      assert.match(lastLine, /ublk.*no ublk_drv \(modprobe ublk_drv/);
      assert.deepEqual([await sha256(main), await sha256(spare)], before);
      for (
        const [flags, message] of [
          [["--queues", "2"], /--queues needs --ublk/],
          [["--depth", "8"], /--depth needs --ublk/],
          [["--no-recovery"], /--no-recovery needs --ublk/],
          [["--ublk", "--attach"], /--ublk and --attach/],
        ] as const
      ) {
        const usage = await runCli([...serveArgs, ...flags]);
        assert.equal(usage.code, 2, usage.stderr);
        assert.match(usage.stderr, message);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * `serve --attach` where the kernel cannot give it a device (this host has no
 * nbd module): one line that names the missing piece and the fix, exit 69,
 * the setup left as it was (the spare and main disk unchanged byte for byte,
 * and the next plain `serve` starts without a "not stopped cleanly" note).
 * Flags that shape the attach are refused without `--attach`. The attach
 * itself runs against real kernels in tests/vm (vm 8).
 */

import assert from "node:assert/strict";
import { runCli } from "./cli_process.ts";

const nbdLoaded = (() => {
  try {
    return Deno.statSync("/sys/module/nbd").isDirectory;
  } catch {
    return false;
  }
})();

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

Deno.test({
  name:
    "serve --attach without the kernel's nbd module: exit 69, says modprobe nbd, disks unchanged",
  ignore: nbdLoaded,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dm-remap-attach-" });
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
      const refused = await runCli([...serveArgs, "--attach"], { timeoutMs: 60_000 });
      assert.equal(refused.code, 69, refused.stderr);
      const lastLine = refused.stderr.trim().split("\n").at(-1)!;
      assert.match(lastLine, /^dm-remap serve: cannot attach \/dev\/nbd\*: .*modprobe nbd/);
      assert.deepEqual([await sha256(main), await sha256(spare)], before);
      const usage = await runCli([...serveArgs, "--connections", "2"]);
      assert.equal(usage.code, 2);
      assert.match(usage.stderr, /--connections needs --attach/);
      const check = await runCli(["check", spare]);
      assert.doesNotMatch(check.stdout, /NOT CLEAN/, check.stdout);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

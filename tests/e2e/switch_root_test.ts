/**
 * A root storage daemon survives switch_root (issue 19's boot 1 and boot 4, where root hung):
 * after the switch its root is the emptied initramfs with no /proc, and Deno panics when it starts
 * a worker there ("no /proc/self/exe available"), which every new connection needs.
 *
 * Method: tests/e2e/switch_root.sh, in mount and PID namespaces of its own (unshare, as root),
 * starts `serve` from the bundle chrooted in a tmpfs "initramfs" with argv[0] '@dm-remap', then
 * does to it what switch_root does (moves /proc and /run out, deletes the old root's files, covers
 * it with another mount); each NBD connection (qemu-io, a write and its read-back) before and
 * after must be served, and the server must say it moved into the real root.
 */

import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url).pathname;

Deno.test("a root storage daemon serves new connections after switch_root", async () => {
  const work = await Deno.makeTempDir({ prefix: "dm-remap-switch-root-" });
  try {
    const bundle = `${work}/dm-remap.js`;
    const built = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "--output", bundle, "main.ts"],
      cwd: ROOT,
    }).output();
    assert.ok(built.success, new TextDecoder().decode(built.stderr));
    const run = await new Deno.Command("unshare", {
      args: [
        "-m",
        "-p",
        "-f",
        "--propagation",
        "private",
        `${ROOT}tests/e2e/switch_root.sh`,
        bundle,
        work,
      ],
      env: { DENO: Deno.execPath() },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const output = new TextDecoder().decode(run.stdout) + new TextDecoder().decode(run.stderr);
    for (const connection of [1, 2, 3, 4]) {
      assert.match(output, new RegExp(`CONNECTION ${connection}: 64 KiB, 1 ops`), output);
    }
    assert.match(output, /after switch_root: moved into the real root/, output);
    assert.doesNotMatch(output, /panicked/, output);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

/**
 * A root storage daemon survives switch_root (issue 19's boot 1 and boot 4, where root hung).
 * After the switch its root is the emptied initramfs, and Deno panics when it starts a worker
 * without /proc ("no /proc/self/exe available"), which every new connection needs. The
 * initramfs scripts (initramfs-tools' local-top, dracut's hook) therefore mount a second /proc
 * over the first: switch_root moves the top one, and the one below stays for the server.
 *
 * Method: tests/e2e/switch_root.sh, in mount and PID namespaces of its own (unshare, as root),
 * starts `serve` from the bundle chrooted in a tmpfs "initramfs" with argv[0] '@dm-remap' and
 * /proc mounted as the scripts leave it, then does to it what switch_root does (moves /proc and
 * /run out, deletes the old root's files, covers it with another mount); each NBD connection
 * (qemu-io, a write and its read-back) before and after must be served. The same with one /proc
 * (the negative control): the server panics at the first connection after the switch.
 */

import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url).pathname;

async function switchRoot(procs: "two-proc" | "one-proc"): Promise<string> {
  const work = await Deno.makeTempDir({ prefix: "dm-remap-switch-root-" });
  try {
    const bundle = `${work}/dm-remap.js`;
    const built = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "--output", bundle, "main.ts"],
      cwd: ROOT,
    }).output();
    assert.ok(built.success, new TextDecoder().decode(built.stderr));
    const script = `${ROOT}tests/e2e/switch_root.sh`;
    const run = await new Deno.Command("unshare", {
      args: ["-m", "-p", "-f", "--propagation", "private", script, bundle, work, procs],
      env: { DENO: Deno.execPath() },
      stdout: "piped",
      stderr: "piped",
    }).output();
    return new TextDecoder().decode(run.stdout) + new TextDecoder().decode(run.stderr);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

Deno.test("a root storage daemon serves new connections after switch_root, with the /proc left below", async () => {
  const output = await switchRoot("two-proc");
  for (const connection of [1, 2, 3, 4]) {
    assert.match(output, new RegExp(`CONNECTION ${connection}: 64 KiB, 1 ops`), output);
  }
  assert.doesNotMatch(output, /panicked/, output);

  const control = await switchRoot("one-proc");
  assert.match(control, /CONNECTION 1: 64 KiB, 1 ops/, control);
  assert.doesNotMatch(control, /CONNECTION 2: 64 KiB, 1 ops/, control);
  assert.match(control, /no \/proc\/self\/exe available/, control);
});

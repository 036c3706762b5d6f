/**
 * The install step (scripts/install.sh, scripts/uninstall.sh), into a temporary root.
 *
 * Goal: install places the program, its runtime, the wrapper, the units, the udev rule, the
 * initramfs hook and script and the dracut module where systemd, udev, initramfs-tools and dracut
 * look, each rendered with the
 * installed paths, and lists them in a manifest; the installed program runs; a second install is
 * refused; uninstall removes exactly the manifest's files and leaves anything else in place.
 * Method: both scripts run as processes with --root on a temporary directory.
 */

import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url).pathname;

async function script(name: string, args: string[]) {
  const output = await new Deno.Command(`${ROOT}scripts/${name}`, { args, stdin: "null" }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  return { code: output.code, text };
}

async function filesUnder(directory: string): Promise<string[]> {
  const files: string[] = [];
  const walk = async (path: string) => {
    for await (const entry of Deno.readDir(path)) {
      const child = `${path}/${entry.name}`;
      if (entry.isDirectory) await walk(child);
      else files.push(child.slice(directory.length));
    }
  };
  await walk(directory);
  return files.sort();
}

const INSTALLED = [
  "/usr/lib/dm-remap/MANIFEST",
  "/usr/lib/dm-remap/deno",
  "/usr/lib/dm-remap/dm-remap.js",
  "/usr/lib/dracut/modules.d/90dm-remap/dm-remap-assemble.sh",
  "/usr/lib/dracut/modules.d/90dm-remap/dm-remap-finished.sh",
  "/usr/lib/dracut/modules.d/90dm-remap/module-setup.sh",
  "/usr/lib/systemd/system/dm-remap-assemble.service",
  "/usr/lib/systemd/system/dm-remap-incremental@.service",
  "/usr/lib/systemd/system/dm-remap@.service",
  "/usr/lib/systemd/system-shutdown/dm-remap",
  "/usr/lib/udev/rules.d/69-dm-remap.rules",
  "/usr/sbin/dm-remap",
  "/usr/share/initramfs-tools/hooks/dm-remap",
  "/usr/share/initramfs-tools/scripts/local-top/dm-remap",
].sort();

Deno.test("scripts/install.sh installs every piece with a manifest, and uninstall.sh removes exactly those", async () => {
  const root = await Deno.makeTempDir({ prefix: "dm-remap-install-" });
  const bundle = `${root}.js`;
  try {
    const bundled = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "--output", bundle, `${ROOT}main.ts`],
    }).output();
    assert.ok(bundled.success, new TextDecoder().decode(bundled.stderr));
    // Something of the system's own beside ours: uninstall must leave it.
    await Deno.mkdir(`${root}/usr/lib/systemd/system`, { recursive: true });
    await Deno.writeTextFile(`${root}/usr/lib/systemd/system/other.service`, "[Unit]\n");

    const installed = await script("install.sh", ["--root", root, "--bundle", bundle]);
    assert.equal(installed.code, 0, installed.text);
    assert.deepEqual(
      await filesUnder(root),
      [...INSTALLED, "/usr/lib/systemd/system/other.service"].sort(),
    );
    const manifest = (await Deno.readTextFile(`${root}/usr/lib/dm-remap/MANIFEST`)).trim().split(
      "\n",
    );
    assert.deepEqual(manifest.sort(), INSTALLED);

    // Rendered with the installed paths: nothing of the templates' placeholders is left.
    const unit = await Deno.readTextFile(`${root}/usr/lib/systemd/system/dm-remap@.service`);
    assert.match(unit, /^ExecStart=\/usr\/sbin\/dm-remap serve %i --export --adopt$/m);
    assert.match(unit, /^Type=notify$/m);
    const wrapper = await Deno.readTextFile(`${root}/usr/sbin/dm-remap`);
    assert.match(
      wrapper,
      /exec \/usr\/lib\/dm-remap\/deno run --allow-all \/usr\/lib\/dm-remap\/dm-remap.js "\$@"/,
    );
    // udev runs probe with MemoryDenyWriteExecute=yes, where V8's compilers cannot run.
    assert.match(
      wrapper,
      /probe\) exec \/usr\/lib\/dm-remap\/deno run --allow-all --v8-flags=--jitless \/usr\/lib\/dm-remap\/dm-remap.js "\$@"/,
    );
    for (
      const path of INSTALLED.filter((path) => !path.endsWith("deno") && !path.endsWith(".js"))
    ) {
      assert.doesNotMatch(await Deno.readTextFile(`${root}${path}`), /@(SBIN|LIBDIR)@/, path);
    }
    assert.equal((await Deno.stat(`${root}/usr/sbin/dm-remap`)).mode! & 0o777, 0o755);

    // The installed runtime runs the installed program.
    const version = await new Deno.Command(`${root}/usr/lib/dm-remap/deno`, {
      args: ["run", "--allow-all", `${root}/usr/lib/dm-remap/dm-remap.js`, "--version"],
      env: { DENO_DIR: `${root}.deno` },
    }).output();
    assert.match(new TextDecoder().decode(version.stdout), /^dm-remap \d+\.\d+\.\d+/);

    const again = await script("install.sh", ["--root", root, "--bundle", bundle]);
    assert.equal(again.code, 1);
    assert.match(again.text, /installed .* already .*run scripts\/uninstall\.sh first/);

    const removed = await script("uninstall.sh", ["--root", root]);
    assert.equal(removed.code, 0, removed.text);
    assert.deepEqual(await filesUnder(root), ["/usr/lib/systemd/system/other.service"]);
    await assert.rejects(
      Deno.stat(`${root}/usr/lib/dracut/modules.d/90dm-remap`),
      Deno.errors.NotFound,
    );
    const twice = await script("uninstall.sh", ["--root", root]);
    assert.equal(twice.code, 1);
    assert.match(twice.text, /no dm-remap installed/);
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(bundle).catch(() => {});
    await Deno.remove(`${root}.deno`, { recursive: true }).catch(() => {});
  }
});

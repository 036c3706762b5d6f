/**
 * Which kernel device `assemble` gives a setup: ublk where the kernel has
 * ublk_drv, NBD otherwise, `--export`/`export` overriding `auto`.
 *
 * Goal: `ublkSupportOf()` reads what the kernel shows (the io_uring switch,
 * `/dev/ublk-control`, the running release's modules.dep) and
 * `decideKernelExport()` turns it and the operator's choice into a device,
 * loading an installed module only when ublk is wanted; a setup whose
 * /dev/nbdN is still attached keeps NBD.
 * Method: fake roots (a directory with `dev/`, `proc/sys/kernel/` and
 * `lib/modules/<release>/`) as the two VM kernels show them: trixie's 6.12
 * with ublk_drv loaded, bookworm's 6.1 with neither the control device nor
 * the module; a module loader that records its calls.
 */

import assert from "node:assert/strict";
import { decideKernelExport } from "../../mod/assembly/kernel_export_choice.ts";
import { type UblkSupport, ublkSupportOf } from "../../mod/sys/ublk_support.ts";

const RELEASE = "6.12.57+deb13-amd64";

/** A fake root with the files given (path → content); `dev/ublk-control` as a plain file. */
async function fakeRoot(files: Record<string, string>): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "dm-remap-ublk-root-" });
  for (const [path, content] of Object.entries(files)) {
    await Deno.mkdir(`${root}/${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
    await Deno.writeTextFile(`${root}/${path}`, content);
  }
  return root;
}

const MODULES_DEP_WITH_UBLK = "kernel/drivers/block/nbd.ko.xz:\n" +
  "kernel/drivers/block/ublk_drv.ko.xz:\nkernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz\n";

async function supportOf(files: Record<string, string>): Promise<UblkSupport> {
  const rootDir = await fakeRoot(files);
  try {
    return ublkSupportOf({ rootDir, kernelRelease: RELEASE });
  } finally {
    await Deno.remove(rootDir, { recursive: true });
  }
}

/** A module loader that records its calls and answers `failure`. */
function loader(failure?: string) {
  const calls: string[] = [];
  return {
    calls,
    loadModule: () => {
      calls.push("modprobe ublk_drv");
      return Promise.resolve(failure);
    },
  };
}

Deno.test("ublkSupportOf(): the control device means loaded; modules.dep of the running release means loadable", async () => {
  assert.deepEqual(
    await supportOf({ "dev/ublk-control": "", "proc/sys/kernel/io_uring_disabled": "0\n" }),
    { kind: "loaded" },
  );
  assert.deepEqual(
    await supportOf({ [`lib/modules/${RELEASE}/modules.dep`]: MODULES_DEP_WITH_UBLK }),
    { kind: "loadable", modulePath: "kernel/drivers/block/ublk_drv.ko.xz" },
  );
  // Another release's module does not count: modprobe loads for the running kernel only.
  const other = await supportOf({
    "lib/modules/6.1.0-40-amd64/modules.dep": MODULES_DEP_WITH_UBLK,
  });
  assert.equal(other.kind, "absent");
  // The 6.1 guest: neither the control device nor the module (and no io_uring switch before 6.6).
  const bookworm = await supportOf({
    [`lib/modules/${RELEASE}/modules.dep`]: "kernel/drivers/block/nbd.ko:\n",
  });
  assert.equal(bookworm.kind, "absent");
  assert.match(
    (bookworm as { reason: string }).reason,
    new RegExp(`no ublk_drv \\(modprobe ublk_drv; kernel ${RELEASE.replaceAll("+", "\\+")}`),
  );
});

Deno.test("ublkSupportOf(): io_uring switched off means no ublk, even with ublk_drv loaded", async () => {
  const support = await supportOf({
    "dev/ublk-control": "",
    "proc/sys/kernel/io_uring_disabled": "2\n",
  });
  assert.equal(support.kind, "absent");
  assert.match((support as { reason: string }).reason, /io_uring_disabled=2/);
});

Deno.test("decideKernelExport() auto: ublk where ublk_drv is loaded or loads, NBD otherwise", async () => {
  const loaded = loader();
  assert.deepEqual(
    await decideKernelExport({
      choice: "auto",
      support: { kind: "loaded" },
      loadModule: loaded.loadModule,
    }),
    { kind: "ublk", reason: "auto: ublk_drv is loaded (/dev/ublk-control)" },
  );
  assert.deepEqual(loaded.calls, [], "nothing loaded when ublk_drv is there");

  const installed = loader();
  const support = { kind: "loadable", modulePath: "kernel/drivers/block/ublk_drv.ko.xz" } as const;
  assert.deepEqual(
    await decideKernelExport({ choice: "auto", support, loadModule: installed.loadModule }),
    { kind: "ublk", reason: "auto: ublk_drv loaded from kernel/drivers/block/ublk_drv.ko.xz" },
  );
  assert.deepEqual(installed.calls, ["modprobe ublk_drv"]);

  const refused = loader("modprobe ublk_drv failed: Operation not permitted");
  assert.deepEqual(
    await decideKernelExport({ choice: "auto", support, loadModule: refused.loadModule }),
    { kind: "nbd", reason: "auto: NBD, as modprobe ublk_drv failed: Operation not permitted" },
  );

  const absent = await decideKernelExport({
    choice: "auto",
    support: { kind: "absent", reason: "/dev/ublk-control is missing" },
    loadModule: loader().loadModule,
  });
  assert.deepEqual(absent, { kind: "nbd", reason: "auto: NBD, as /dev/ublk-control is missing" });
});

Deno.test("decideKernelExport(): an explicit nbd or ublk wins over what the kernel offers", async () => {
  const nbd = loader();
  assert.deepEqual(
    await decideKernelExport({
      choice: "nbd",
      support: { kind: "loaded" },
      loadModule: nbd.loadModule,
    }),
    { kind: "nbd", reason: "NBD asked for (export nbd)" },
  );
  assert.deepEqual(nbd.calls, []);
  // ublk asked for where the kernel has none: serve is started with --ublk and refuses, saying why.
  assert.deepEqual(
    await decideKernelExport({
      choice: "ublk",
      support: { kind: "absent", reason: "/dev/ublk-control is missing" },
      loadModule: loader().loadModule,
    }),
    { kind: "ublk", reason: "ublk asked for (export ublk); /dev/ublk-control is missing" },
  );
});

Deno.test("decideKernelExport(): a /dev/nbdN the setup's last server left attached keeps NBD, whatever the choice", async () => {
  for (const choice of ["auto", "ublk", "nbd"] as const) {
    const loading = loader();
    assert.deepEqual(
      await decideKernelExport({
        choice,
        support: { kind: "loadable", modulePath: "kernel/drivers/block/ublk_drv.ko.xz" },
        loadModule: loading.loadModule,
        attachedNbd: "/dev/nbd2",
      }),
      { kind: "nbd", reason: "/dev/nbd2 of this setup is still attached: NBD takes it back" },
    );
    assert.deepEqual(loading.calls, [], "nothing loaded for a device that stays NBD");
  }
});

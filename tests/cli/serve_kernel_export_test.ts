/**
 * `serve --export [auto|ublk|nbd]`, the flag the systemd unit runs
 * (`serve NAME --export --adopt`): the kernel device `assemble` would choose.
 *
 * Goal: a bare `--export` takes the setup's `export` from the configuration
 * (by name, then UUID, then `serve`), else auto; auto is ublk where the
 * kernel has ublk_drv and NBD otherwise; a flag value beats the file; a
 * setup whose /dev/nbdN a previous server left attached keeps NBD; the
 * choice becomes `--ublk` or `--attach auto` with their defaults; `--export`
 * with `--ublk` or `--attach` is a usage error, found through the real
 * command line (which proves the bare flag parses).
 * Method: `resolveServeExport()` with configurations, kernels (`UblkSupport`)
 * and module loaders given as data; `parseServeFlags()` on what it returns;
 * `runCli()` for the usage errors, which come before any disk is opened.
 */

import assert from "node:assert/strict";
import { UBLK_QUEUE_DEPTH_DEFAULT, UBLK_QUEUES_DEFAULT } from "../../mod/constants.ts";
import type { ConfigValues } from "../../mod/config/config_values.ts";
import { runCli } from "../../mod/cli/mod.ts";
import {
  resolveServeExport,
  type ResolveServeExportOptions,
} from "../../mod/cli/serve_kernel_export.ts";
import { EXPORT_AS_CONFIGURED, parseServeFlags } from "../../mod/cli/service_settings.ts";
import type { UblkSupport } from "../../mod/sys/ublk_support.ts";

const UUID = "0f8e4c1a-5b7d-4e2f-9a3c-6d1b2e4f7a90";
const LOADED: UblkSupport = { kind: "loaded" };
const ABSENT: UblkSupport = { kind: "absent", reason: "/dev/ublk-control is missing" };

/** Options for a setup "data" on a kernel, with a loader that must not run unless allowed. */
function options(
  support: UblkSupport,
  more: Partial<ResolveServeExportOptions> = {},
): ResolveServeExportOptions {
  return {
    keys: { name: "data", uuid: UUID },
    config: undefined,
    support,
    loadModule: () => Promise.reject(new Error("modprobe was not expected")),
    ...more,
  };
}

/** The unit's flags: a bare --export (the CLI inserts the implied value) and --adopt. */
const UNIT_FLAGS = { export: EXPORT_AS_CONFIGURED, adopt: true };

Deno.test("resolveServeExport(): without --export the flags stay as they are", async () => {
  const values = { attach: "/dev/nbd3", adopt: true };
  const resolved = await resolveServeExport(values, options(LOADED));
  assert.deepEqual(resolved, { values });
});

Deno.test("resolveServeExport(): the unit's bare --export is auto without a configuration: ublk with ublk_drv, else NBD", async () => {
  const ublk = await resolveServeExport(UNIT_FLAGS, options(LOADED));
  assert.deepEqual(ublk.values, { adopt: true, ublk: true });
  assert.equal(ublk.decision?.kind, "ublk");
  assert.match(ublk.decision!.reason, /^auto: ublk_drv is loaded/);
  const settings = parseServeFlags(ublk.values);
  assert.deepEqual(settings.ublk, {
    queues: UBLK_QUEUES_DEFAULT,
    queueDepth: UBLK_QUEUE_DEPTH_DEFAULT,
    recovery: true,
  });
  assert.equal(settings.attach, undefined);

  const nbd = await resolveServeExport(UNIT_FLAGS, options(ABSENT));
  assert.deepEqual(nbd.values, { adopt: true, attach: "auto" });
  assert.match(nbd.decision!.reason, /^auto: NBD, as \/dev\/ublk-control is missing/);
  const nbdSettings = parseServeFlags(nbd.values);
  assert.equal(nbdSettings.attach?.device, "auto");
  assert.equal(nbdSettings.ublk, undefined);
});

Deno.test("resolveServeExport(): an installed ublk_drv is loaded for auto; a failed modprobe gives NBD", async () => {
  const loadable: UblkSupport = {
    kind: "loadable",
    modulePath: "kernel/drivers/block/ublk_drv.ko.xz",
  };
  const calls: string[] = [];
  const loaded = await resolveServeExport(
    UNIT_FLAGS,
    options(loadable, { loadModule: () => (calls.push("modprobe"), Promise.resolve(undefined)) }),
  );
  assert.equal(loaded.decision?.kind, "ublk");
  assert.deepEqual(calls, ["modprobe"]);
  const refused = await resolveServeExport(
    UNIT_FLAGS,
    options(loadable, { loadModule: () => Promise.resolve("modprobe ublk_drv failed: EPERM") }),
  );
  assert.deepEqual(refused.values, { adopt: true, attach: "auto" });
});

Deno.test("resolveServeExport(): a bare --export follows the configuration's export, by name, UUID, then serve", async () => {
  const byName: ConfigValues = { setups: { data: { export: "nbd" } }, serve: { export: "ublk" } };
  const nbd = await resolveServeExport(UNIT_FLAGS, options(LOADED, { config: byName }));
  assert.deepEqual(nbd.values, { adopt: true, attach: "auto" });
  assert.equal(nbd.decision?.reason, "NBD asked for (export nbd)");

  const byUuid: ConfigValues = { setups: { [UUID]: { export: "nbd" } } };
  const nbdByUuid = await resolveServeExport(UNIT_FLAGS, options(LOADED, { config: byUuid }));
  assert.equal(nbdByUuid.decision?.kind, "nbd");

  const fromServe: ConfigValues = { serve: { export: "ublk" } };
  const ublk = await resolveServeExport(UNIT_FLAGS, options(ABSENT, { config: fromServe }));
  // An explicit ublk is kept where the kernel lacks it: serve then refuses with the reason.
  assert.deepEqual(ublk.values, { adopt: true, ublk: true });
  assert.match(ublk.decision!.reason, /ublk asked for \(export ublk\); \/dev\/ublk-control/);
});

Deno.test("resolveServeExport(): a value on the flag beats the configuration", async () => {
  const config: ConfigValues = { setups: { data: { export: "ublk" } } };
  const resolved = await resolveServeExport({ export: "nbd" }, options(LOADED, { config }));
  assert.deepEqual(resolved.values, { attach: "auto" });
  await assert.rejects(
    () => resolveServeExport({ export: "fast" }, options(LOADED)),
    /--export "fast": give auto, ublk or nbd/,
  );
});

Deno.test("resolveServeExport(): a /dev/nbdN the setup's last server left attached keeps NBD, whatever the choice", async () => {
  const config: ConfigValues = { setups: { data: { export: "ublk" } } };
  const resolved = await resolveServeExport(
    UNIT_FLAGS,
    options(LOADED, { config, attachedNbd: "/dev/nbd0" }),
  );
  assert.deepEqual(resolved.values, { adopt: true, attach: "auto" });
  assert.equal(
    resolved.decision?.reason,
    "/dev/nbd0 of this setup is still attached: NBD takes it back",
  );
});

Deno.test("serve --export=fast is a usage error before any disk is opened", async () => {
  const errors: string[] = [];
  const code = await runCli(["serve", "--export=fast", "--spare", "/nonexistent"], {
    out: () => {},
    err: (line) => errors.push(line),
  });
  assert.equal(code, 2, errors.join("\n"));
  assert.match(errors.join("\n"), /--export "fast": give auto, ublk or nbd/);
});

Deno.test("serve --export with --ublk or --attach is a usage error (the unit's bare --export parses)", async () => {
  for (
    const [extra, other] of [[["--ublk"], "ublk"], [["--attach"], "attach"], [
      ["--attach", "/dev/nbd1"],
      "attach",
    ]] as const
  ) {
    const errors: string[] = [];
    const code = await runCli(["serve", "--export", ...extra, "--spare", "/nonexistent"], {
      out: () => {},
      err: (line) => errors.push(line),
    });
    assert.equal(code, 2, errors.join("\n"));
    assert.match(
      errors.join("\n"),
      new RegExp(`--export and --${other} each make a kernel device: give one of them`),
    );
  }
});

/**
 * Goal: `serve`'s settings come from one merge, in one order: a flag wins
 * over the setup's section (found by name or UUID), which wins over the
 * file's `serve` section, which wins over the built-in default; and each
 * effective value says where it came from. Method: `serveConfiguration()`
 * over a parsed file with and without flags.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../../mod/config/config_file.ts";
import { kernelExportChoiceOf, serveConfiguration } from "../../mod/cli/service_settings.ts";
import { READ_RETRIES_DEFAULT } from "../../mod/constants.ts";

const FILE = "/etc/dm-remap/dm-remap.yaml";
const UUID = "0b5c3a8e-5f0c-4a53-9d1e-2f3c4d5e6f70";
const CONFIG = parseConfig(
  `serve:
  read-retries: 4
  nbd:
    socket: /srv/nbd.sock
  api:
    tcp: 127.0.0.1:8080
    token: 0123456789abcdef0123
setups:
  big:
    read-retries: 1
    alerts: [hook]
  ${UUID}:
    nbd:
      export-name: by-uuid
alerts:
  rate-per-minute: 3
  targets:
    hook: { exec: /usr/local/bin/alert, events: [remap] }
    pager: { webhook: "http://127.0.0.1:9/", repeat-interval-s: 0 }
policies:
  pending:
    when: { pending-blocks: 2 }
    then: [alert]
`,
  { path: FILE },
);

function sourceOf(effective: { key: string; source: string }[], key: string): string {
  return effective.find((setting) => setting.key === key)!.source;
}

Deno.test("serveConfiguration() takes the setup's section over serve, and serve over defaults", () => {
  const { settings, effective } = serveConfiguration({}, { name: "big", uuid: UUID }, CONFIG);
  assert.equal(settings.readRetries, 1);
  assert.equal(sourceOf(effective, "read-retries"), `${FILE}:10:19 (setups.big.read-retries)`);
  assert.equal(settings.nbd.unixPath, "/srv/nbd.sock");
  assert.equal(settings.nbd.exportName, "by-uuid");
  assert.equal(
    sourceOf(effective, "nbd.export-name"),
    `${FILE}:14:20 (setups.${UUID}.nbd.export-name)`,
  );
  assert.deepEqual(settings.api.tcp, { hostname: "127.0.0.1", port: 8080 });
  assert.equal(settings.api.token, "0123456789abcdef0123");
  // The token is never shown.
  assert.equal(effective.find((setting) => setting.key === "api.token")!.value, "(set)");
  assert.equal(sourceOf(effective, "events-db"), "default");
  // The setup lists one target; the file-wide rate applies to it.
  assert.deepEqual(settings.alerts?.targets.map((target) => target.name), ["hook"]);
  assert.equal(settings.alerts!.targets[0]!.ratePerMinute, 3);
  assert.deepEqual(settings.policies?.rules.map((rule) => rule.name), ["pending"]);
});

Deno.test("serveConfiguration() lets flags override the file, and says so", () => {
  const { settings, effective } = serveConfiguration(
    { "read-retries": "7", socket: "/tmp/flag.sock", "api-tcp": "9090" },
    { name: "big" },
    CONFIG,
  );
  assert.equal(settings.readRetries, 7);
  assert.equal(sourceOf(effective, "read-retries"), "flag --read-retries");
  assert.equal(settings.nbd.unixPath, "/tmp/flag.sock");
  assert.deepEqual(settings.api.tcp, { hostname: "127.0.0.1", port: 9090 });
  assert.equal(sourceOf(effective, "api.tcp"), "flag --api-tcp");
});

Deno.test("serveConfiguration() without a file gives the built-in defaults", () => {
  const { settings, effective, logLevel } = serveConfiguration({}, { name: "solo" }, undefined);
  assert.equal(settings.readRetries, undefined);
  assert.equal(
    effective.find((setting) => setting.key === "read-retries")!.value,
    READ_RETRIES_DEFAULT,
  );
  assert.equal(settings.alerts, undefined);
  assert.equal(settings.policies, undefined);
  assert.equal(logLevel, "info");
  assert.ok(effective.every((setting) => setting.source === "default"));
});

Deno.test("serveConfiguration() for a setup without a section uses serve and every target", () => {
  const { settings } = serveConfiguration({}, { name: "other" }, CONFIG);
  assert.equal(settings.readRetries, 4);
  assert.deepEqual(settings.alerts?.targets.map((target) => target.name), ["hook", "pager"]);
  assert.equal(settings.alerts!.targets[1]!.repeatIntervalMs, 0);
});

Deno.test("serveConfiguration() names the file position of a value that does not fit its flag's rules", () => {
  const config = parseConfig("serve:\n  nbd:\n    connections: 4\n", { path: FILE });
  assert.throws(
    () => serveConfiguration({}, { name: "big" }, config),
    (error: Error) => {
      assert.equal(
        error.message,
        `--connections needs --attach (set by ${FILE}:3:18 (serve.nbd.connections))`,
      );
      return true;
    },
  );
});

Deno.test("kernelExportChoiceOf(): the setup's export (by name, then UUID), then serve's; none without", () => {
  const config = parseConfig(
    `serve:\n  export: nbd\nsetups:\n  fast:\n    export: ublk\n  ${UUID}:\n    export: auto\n`,
    { path: FILE },
  ).values;
  assert.equal(kernelExportChoiceOf(config, { name: "fast", uuid: UUID }), "ublk");
  assert.equal(kernelExportChoiceOf(config, { name: "other", uuid: UUID }), "auto");
  assert.equal(kernelExportChoiceOf(config, { name: "other" }), "nbd");
  assert.equal(kernelExportChoiceOf(undefined, { name: "fast" }), undefined);
  assert.throws(
    () => parseConfig("serve:\n  export: iscsi\n", { path: FILE }),
    /serve\.export: expected one of auto, ublk, nbd, got "iscsi"/,
  );
});

Deno.test("serveConfiguration() takes the scanner's schedule and the allocation policy from the file", () => {
  const config = parseConfig(
    `serve:
  scan: { schedule: true, interval: 12h, rate-max: 100M, region-size: 256M }
  allocation: most-free
setups:
  quiet:
    scan: { schedule: false }
    allocation: round-robin
`,
    { path: FILE },
  );
  const fleet = serveConfiguration({}, { name: "fleet" }, config);
  assert.equal(fleet.settings.scan?.enabled, true);
  assert.equal(fleet.settings.scan?.intervalMs, 12 * 3600_000);
  assert.equal(fleet.settings.scan?.rateMaxBytesPerS, 100 * 1024 ** 2);
  assert.equal(fleet.settings.scan?.regionBytes, 256 * 1024 ** 2);
  assert.equal(fleet.settings.allocation, "most-free");
  assert.equal(sourceOf(fleet.effective, "scan.interval"), `${FILE}:2:37 (serve.scan.interval)`);
  const quiet = serveConfiguration({}, { name: "quiet" }, config);
  assert.equal(quiet.settings.scan?.enabled, false, "the setup's schedule: false is --no-scan");
  assert.equal(quiet.settings.allocation, "round-robin");
  // Flags win: --no-scan over the file's schedule, --allocation over its policy.
  const flagged = serveConfiguration(
    { "no-scan": true, allocation: "fill-first" },
    { name: "fleet" },
    config,
  );
  assert.equal(flagged.settings.scan?.enabled, false);
  assert.equal(sourceOf(flagged.effective, "scan.schedule"), "flag --no-scan");
  assert.equal(flagged.settings.allocation, "fill-first");
});

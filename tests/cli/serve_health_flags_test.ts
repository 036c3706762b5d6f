/**
 * `serve`'s health flags: --smart-interval and --scrub-interval in seconds,
 * --no-smart, their limits, and how they reach the service's settings.
 */

import assert from "node:assert/strict";
import { parseServeFlags, serveSettings } from "../../mod/cli/service_settings.ts";
import { UsageError } from "../../mod/errors.ts";

Deno.test("parseServeFlags() takes the SMART and scrub intervals in seconds", () => {
  const flags = parseServeFlags({ "smart-interval": "600", "scrub-interval": "7200" });
  assert.deepEqual(flags.smart, { intervalMs: 600_000 });
  assert.equal(flags.scrubIntervalMs, 7_200_000);
  const settings = serveSettings(flags, "vault");
  assert.deepEqual(settings.smart, { intervalMs: 600_000 });
  assert.deepEqual(settings.scrub, { intervalMs: 7_200_000 });
});

Deno.test("parseServeFlags() leaves the defaults to the service when no flag is given", () => {
  const settings = serveSettings(parseServeFlags({}), "vault");
  assert.equal(settings.smart, undefined);
  assert.deepEqual(settings.scrub, { intervalMs: undefined });
});

Deno.test("parseServeFlags() turns SMART off with --no-smart", () => {
  assert.equal(parseServeFlags({ "no-smart": true }).smart, false);
  assert.throws(
    () => parseServeFlags({ "no-smart": true, "smart-interval": "60" }),
    (error) => error instanceof UsageError && /contradicts --no-smart/.test(error.message),
  );
});

Deno.test("parseServeFlags() refuses intervals out of range", () => {
  for (
    const [flag, value] of [
      ["smart-interval", "0"],
      ["scrub-interval", "0"],
      ["scrub-interval", "604801"],
      ["smart-interval", "1.5"],
    ]
  ) {
    assert.throws(
      () => parseServeFlags({ [flag!]: value }),
      (error) => error instanceof UsageError && error.message.includes(`--${flag} takes`),
      `${flag} ${value}`,
    );
  }
});

/**
 * `dm-remap alert test NAME`: sends one `test` alert through the configured
 * target NAME, as a running server would (same hook argv, same webhook body,
 * timeout and retries), and says whether it arrived.
 *
 * @module
 */

import { deliverAlert } from "../../alerts/alert_delivery.ts";
import { UsageError } from "../../errors.ts";
import type { CommandInput } from "../command.ts";
import { configLocation, readConfig } from "../config_source.ts";
import { EXIT_OK } from "../exit_codes.ts";
import { stringOption } from "../options.ts";
import { alertSettingsOf } from "../service_settings.ts";

/** Runs `alert test NAME`. */
export async function alertCommand({ values, positionals, output }: CommandInput): Promise<number> {
  const [action, name, ...extra] = positionals;
  if (action !== "test" || name === undefined || extra.length > 0) {
    throw new UsageError("Usage: dm-remap alert test NAME [--config FILE] [--setup NAME]");
  }
  const location = configLocation(stringOption(values.config));
  const config = await readConfig(location);
  const targets = alertSettingsOf(config?.values, undefined)?.targets ?? [];
  const target = targets.find((each) => each.name === name);
  if (target === undefined) {
    throw new UsageError(
      `Cannot find alert target "${name}" in "${location.path}": ` +
        (targets.length === 0
          ? "it defines none; add one under alerts.targets"
          : `it defines ${targets.map((each) => each.name).join(", ")}`),
    );
  }
  const setup = stringOption(values.setup) ?? "test";
  await deliverAlert({
    kind: "test",
    setup,
    device: "none",
    details: `test alert from dm-remap alert test ${name}`,
    timeMs: Date.now(),
    suppressedCount: 0,
  }, target);
  const where = "exec" in target.destination ? target.destination.exec : target.destination.webhook;
  output.out(`sent a test alert to target "${name}" (${where})`);
  return EXIT_OK;
}

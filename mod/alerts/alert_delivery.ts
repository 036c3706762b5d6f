/**
 * Sends one alert to one target, and nothing else: an exec hook runs once
 * with the alert as argv (`PROGRAM EVENT SETUP DEVICE DETAILS`, as mdadm's
 * PROGRAM and smartd's `-M exec`) and in `DM_REMAP_*` variables; a webhook
 * gets a JSON POST, retried with a doubling backoff until it answers 2xx.
 * Every attempt has the target's timeout. Queueing, limits and counting are
 * the dispatcher's (`alert_dispatcher.ts`).
 *
 * @module
 */

import { ALERT_OUTPUT_BYTES_MAX } from "../constants.ts";
import { AlertDeliveryError } from "../errors.ts";
import type { Alert, AlertTargetSettings } from "./alert.ts";

/** The JSON body a webhook receives. */
export interface AlertBody {
  kind: string;
  setup: string;
  device: string;
  details: string;
  /** ISO 8601. */
  time: string;
  suppressedCount: number;
  host: string;
}

/** The webhook body of an alert. */
export function alertBodyOf(alert: Alert): AlertBody {
  return {
    kind: alert.kind,
    setup: alert.setup,
    device: alert.device,
    details: alert.details,
    time: new Date(alert.timeMs).toISOString(),
    suppressedCount: alert.suppressedCount,
    host: Deno.hostname(),
  };
}

/**
 * Delivers an alert.
 *
 * @param options `signal` ends waiting for a retry (a stopping service).
 * @throws {AlertDeliveryError} When the target did not take it.
 */
export async function deliverAlert(
  alert: Alert,
  target: AlertTargetSettings,
  options: { signal?: AbortSignal } = {},
): Promise<void> {
  const { destination } = target;
  if ("exec" in destination) return await runHook(alert, target, destination.exec);
  let delayMs = target.backoffMs;
  for (let attempt = 0;; attempt++) {
    try {
      return await postWebhook(alert, target, destination.webhook);
    } catch (error) {
      if (attempt >= target.retries || options.signal?.aborted) throw error;
    }
    await sleep(delayMs, options.signal);
    delayMs *= 2;
  }
}

async function runHook(alert: Alert, target: AlertTargetSettings, program: string): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(program, {
      args: [alert.kind, alert.setup, alert.device, alert.details],
      env: {
        DM_REMAP_EVENT: alert.kind,
        DM_REMAP_SETUP: alert.setup,
        DM_REMAP_DEVICE: alert.device,
        DM_REMAP_DETAILS: alert.details,
        DM_REMAP_TIME: new Date(alert.timeMs).toISOString(),
        DM_REMAP_SUPPRESSED: String(alert.suppressedCount),
      },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      signal: AbortSignal.timeout(target.timeoutMs),
    }).output();
  } catch (error) {
    throw new AlertDeliveryError(
      target.name,
      `Cannot run the alert hook "${program}" of target "${target.name}": ${
        (error as Error).message
      }; check that it exists and is executable`,
      { cause: error },
    );
  }
  if (output.success) return;
  const stderr = new TextDecoder().decode(output.stderr.subarray(0, ALERT_OUTPUT_BYTES_MAX)).trim();
  const how = output.signal !== null
    ? `was killed by ${output.signal} (timeout ${target.timeoutMs} ms?)`
    : `exited with ${output.code}`;
  throw new AlertDeliveryError(
    target.name,
    `Alert hook "${program}" of target "${target.name}" ${how}${stderr ? `: ${stderr}` : ""}`,
  );
}

async function postWebhook(alert: Alert, target: AlertTargetSettings, url: string): Promise<void> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(alertBodyOf(alert)),
      signal: AbortSignal.timeout(target.timeoutMs),
    });
  } catch (error) {
    throw new AlertDeliveryError(
      target.name,
      `Cannot POST the alert to "${url}" (target "${target.name}"): ${
        (error as Error).message
      }; check the URL and that the receiver answers within ${target.timeoutMs} ms`,
      { cause: error },
    );
  }
  // The body is read (and dropped) so the connection is released.
  await response.body?.cancel();
  if (!response.ok) {
    throw new AlertDeliveryError(
      target.name,
      `Webhook "${url}" (target "${target.name}") answered ${response.status} ${response.statusText}`,
    );
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

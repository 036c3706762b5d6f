/**
 * Which events of a setup's bus are alerts, and what they say: the device
 * each concerns (the main disk, or the spare named by its index) and the
 * event's words. Events that are not alerts (a configuration reload) map to undefined.
 *
 * @module
 */

import { describeEvent, type SetupEvent } from "../events/setup_event.ts";
import type { AlertKind } from "./alert.ts";
import type { RaisedAlert } from "./alert_dispatcher.ts";

/** The names an alert needs besides the event. */
export interface AlertNames {
  setup: string;
  mainPath: string;
  /** A spare's path by its index. */
  sparePath: (spareIndex: number) => string;
}

/**
 * The alert an event raises. Health events map to the kinds an operator
 * configures: a SMART risk that rose is a `health-threshold`, metadata the
 * scrub gave up on is `degraded`; a scrub that failed once is retried and
 * alerts only when it is given up.
 */
export function alertOfEvent(event: SetupEvent, names: AlertNames): RaisedAlert | undefined {
  const alert = (kind: AlertKind, device: string): RaisedAlert => ({
    kind,
    setup: names.setup,
    device,
    details: describeEvent(event),
  });
  switch (event.type) {
    case "config-reloaded":
    case "metadata-scrub-failed":
    // A relocation is also a `remap` event of the engine, and one that fails a `pending` or
    // `remap-failed` event: those alert; a finished pass is routine.
    case "relocated":
    case "relocation-failed":
    case "scan-pass-completed":
    // Asked for by the operator, who sees the outcome.
    case "spare-added":
    case "spare-draining":
    case "spare-removed":
      return undefined;
    case "spare-failed":
    case "metadata-repaired":
      return alert(event.type, names.sparePath(event.spareIndex));
    case "metadata-degraded":
      return alert("degraded", names.sparePath(event.spareIndex));
    case "smart-risk-raised":
      return alert("health-threshold", event.device);
    case "remap":
    case "pending":
    case "read-error":
    case "remap-failed":
    case "degraded":
    case "main-failed":
    case "started":
    case "stopped":
      return alert(event.type, names.mainPath);
  }
}

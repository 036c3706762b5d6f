/**
 * Which events of a setup's bus are alerts, and what they say: the device
 * each concerns (the main disk, or the spare named by its index) and the
 * event's words. Events that are not alerts (a configuration reload) map to undefined.
 *
 * @module
 */

import { describeEvent, type SetupEvent } from "../events/setup_event.ts";
import type { RaisedAlert } from "./alert_dispatcher.ts";

/** The names an alert needs besides the event. */
export interface AlertNames {
  setup: string;
  mainPath: string;
  /** A spare's path by its index. */
  sparePath: (spareIndex: number) => string;
}

/** The alert an event raises. */
export function alertOfEvent(event: SetupEvent, names: AlertNames): RaisedAlert | undefined {
  if (event.type === "config-reloaded") return undefined;
  const kind = event.type;
  const alert = (device: string): RaisedAlert => ({
    kind,
    setup: names.setup,
    device,
    details: describeEvent(event),
  });
  switch (event.type) {
    case "spare-failed":
      return alert(names.sparePath(event.spareIndex));
    case "remap":
    case "pending":
    case "read-error":
    case "remap-failed":
    case "degraded":
    case "main-failed":
    case "started":
    case "stopped":
      return alert(names.mainPath);
  }
}

/**
 * The status API's own subscriber to the setup's event bus: it counts the
 * events of each kind since the service started, for `/metrics`
 * (`dm_remap_events_total`) and `/api/v1/status` (`events`). The history
 * keeps the events themselves.
 *
 * @example Counting what the bus delivers
 * ```ts
 * import assert from "node:assert/strict";
 * import { EventBus } from "../events/event_bus.ts";
 * import { EventCounts } from "./event_counts.ts";
 *
 * const bus = new EventBus();
 * const counts = new EventCounts();
 * counts.subscribeTo(bus);
 * bus.publish({ type: "pending", blockIndex: 9 });
 * assert.equal(counts.current()["pending"], 1);
 * assert.equal(counts.current()["remap"], 0);
 * ```
 *
 * @module
 */

import type { EventBus } from "../events/event_bus.ts";
import { type SetupEventType, zeroEventCounts } from "../events/setup_event.ts";

/** Events of each kind seen on one bus. */
export class EventCounts {
  readonly #counts = zeroEventCounts();

  /**
   * Counts every event `bus` delivers from now on.
   *
   * @returns A function that stops counting.
   */
  subscribeTo(bus: EventBus): () => void {
    return bus.subscribe((event) => this.#counts[event.type]++);
  }

  /** A copy of the counts now, every kind included. */
  current(): Record<SetupEventType, number> {
    return { ...this.#counts };
  }
}

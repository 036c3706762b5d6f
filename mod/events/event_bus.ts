/**
 * The running setup's event bus: the engine and the service publish typed
 * {@link SetupEvent}s, and whoever needs them (the history, the log, later
 * alerts) subscribes. Publishing is synchronous, in subscription order, so
 * the history holds an event before the request that caused it is answered.
 *
 * @example Subscribing and unsubscribing
 * ```ts
 * import assert from "node:assert/strict";
 * import { EventBus } from "./event_bus.ts";
 * import type { SetupEvent } from "./setup_event.ts";
 *
 * const bus = new EventBus();
 * const seen: SetupEvent[] = [];
 * const unsubscribe = bus.subscribe((event) => seen.push(event));
 * bus.publish({ type: "pending", blockIndex: 9 });
 * unsubscribe();
 * bus.publish({ type: "pending", blockIndex: 10 });
 * assert.deepEqual(seen, [{ type: "pending", blockIndex: 9 }]);
 * ```
 *
 * @module
 */

import type { SetupEvent } from "./setup_event.ts";

/** Receives every event published after it subscribed. */
export type EventListener = (event: SetupEvent) => void;

/** Delivers each published event to every subscriber. */
export class EventBus {
  readonly #listeners = new Set<EventListener>();

  /**
   * Adds a listener.
   *
   * @returns A function that removes it; calling it again does nothing.
   */
  subscribe(listener: EventListener): () => void {
    // A wrapper per subscription, so the same function subscribed twice is two subscriptions.
    const subscription: EventListener = (event) => listener(event);
    this.#listeners.add(subscription);
    return () => this.#listeners.delete(subscription);
  }

  /**
   * Calls every listener with `event`, synchronously. A listener that
   * throws stops the delivery and the error reaches the publisher, as a
   * failed history write reached the engine before there was a bus.
   */
  publish(event: SetupEvent): void {
    // A copy, so a listener that unsubscribes (or subscribes) does not change this delivery.
    for (const listener of [...this.#listeners]) listener(event);
  }
}

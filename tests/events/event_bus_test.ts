/**
 * EventBus and the history's subscription: typed events reach every
 * subscriber in order, the history stores them as it always has (type,
 * words, indexes), and an unsubscribed listener hears nothing more.
 */

import assert from "node:assert/strict";
import { EventBus } from "../../mod/events/event_bus.ts";
import { EventHistory } from "../../mod/events/event_history.ts";
import type { SetupEvent } from "../../mod/events/setup_event.ts";

Deno.test("EventBus.publish() delivers each event to every subscriber, in subscription order", () => {
  const bus = new EventBus();
  const heard: string[] = [];
  bus.subscribe((event) => heard.push(`first ${event.type}`));
  bus.subscribe((event) => heard.push(`second ${event.type}`));
  bus.publish({ type: "degraded", reason: "no spare takes remaps" });
  assert.deepEqual(heard, ["first degraded", "second degraded"]);
});

Deno.test("EventBus.subscribe() returns an unsubscribe that stops delivery, once or twice", () => {
  const bus = new EventBus();
  const seen: SetupEvent[] = [];
  const unsubscribe = bus.subscribe((event) => seen.push(event));
  bus.publish({ type: "pending", blockIndex: 1 });
  unsubscribe();
  unsubscribe();
  bus.publish({ type: "pending", blockIndex: 2 });
  assert.deepEqual(seen, [{ type: "pending", blockIndex: 1 }]);
});

Deno.test("EventBus delivers an event to every listener even when one unsubscribes while hearing it", () => {
  const bus = new EventBus();
  const heard: string[] = [];
  const unsubscribeFirst = bus.subscribe(() => {
    heard.push("first");
    unsubscribeFirst();
  });
  bus.subscribe(() => heard.push("second"));
  bus.publish({ type: "pending", blockIndex: 1 });
  bus.publish({ type: "pending", blockIndex: 2 });
  assert.deepEqual(heard, ["first", "second", "second"]);
});

Deno.test("EventHistory.subscribeTo() stores every kind of event with its words and indexes", () => {
  const bus = new EventBus();
  const history = EventHistory.open(":memory:");
  const unsubscribe = history.subscribeTo(bus);
  const rows: [SetupEvent, Record<string, unknown>][] = [
    [
      { type: "started", sizeBytes: 4096, remapCount: 2, pendingCount: 1 },
      { type: "started", message: "serving 4096 bytes with 2 remaps, 1 pending" },
    ],
    [
      { type: "remap", blockIndex: 7, spareIndex: 1, slotIndex: 3 },
      {
        type: "remap",
        message: "remapped block 7 to spare 1 slot 3",
        blockIndex: 7,
        spareIndex: 1,
        slotIndex: 3,
      },
    ],
    [
      { type: "pending", blockIndex: 9 },
      {
        type: "pending",
        message: "block 9 is unreadable: pending until it is rewritten",
        blockIndex: 9,
      },
    ],
    [
      { type: "read-error", offsetBytes: 512, lengthBytes: 4096 },
      { type: "read-error", message: "read error on the main disk: offset 512, length 4096" },
    ],
    [
      { type: "remap-failed", blockIndex: 4, reason: "spares full" },
      { type: "remap-failed", message: "could not remap block 4: spares full", blockIndex: 4 },
    ],
    [
      { type: "spare-failed", spareIndex: 0, reason: "EIO" },
      {
        type: "spare-failed",
        message: "spare 0 failed and takes no new remaps: EIO",
        spareIndex: 0,
      },
    ],
    [
      { type: "degraded", reason: "no spare left" },
      { type: "degraded", message: "setup degraded: no spare left" },
    ],
    [
      { type: "stopped", remapCount: 3 },
      { type: "stopped", message: "stopped cleanly with 3 remaps" },
    ],
  ];
  for (const [event] of rows) bus.publish(event);
  unsubscribe();
  bus.publish({ type: "pending", blockIndex: 10 });
  const stored = history.recent(20).reverse().map(({ id: _, timeMs: __, ...event }) => event);
  history.close();
  assert.deepEqual(stored, rows.map(([, row]) => row));
});

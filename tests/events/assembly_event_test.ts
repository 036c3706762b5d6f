/**
 * Discovery and assembly decisions in the event history.
 *
 * Goal: each decision is kept with its kind, its reasons and the devices
 * involved, in words `dm-remap events` can print. Method: the events
 * recorded in an in-memory history, read back.
 */

import assert from "node:assert/strict";
import { EventHistory, historyEventOf } from "../../mod/events/event_history.ts";
import type { RecordedEvent } from "../../mod/events/setup_event.ts";

Deno.test("EventHistory keeps discovery and assembly decisions with reasons and devices", () => {
  const history = EventHistory.open(":memory:");
  const events: RecordedEvent[] = [
    {
      type: "discovered",
      setupUuid: "u-1",
      state: "conflict",
      confidence: 35,
      reasons: ["spare 0 is on 2 devices"],
      devices: ["/dev/sdb", "/dev/sdc"],
    },
    {
      type: "assembly-decision",
      setupUuid: "u-1",
      decision: "refuse",
      reasons: ["the setup is conflict"],
      devices: ["/dev/sdb"],
    },
    {
      type: "incremental-seen",
      setupUuid: "u-1",
      spareIndex: 1,
      device: "/dev/sdd",
      seenCount: 1,
      expectedCount: 2,
    },
  ];
  for (const event of events) history.record(historyEventOf(event));
  const stored = history.recent(10).reverse();
  history.close();
  assert.deepEqual(stored.map((event) => [event.type, event.message, event.spareIndex]), [
    [
      "discovered",
      "discovered setup u-1: conflict, confidence 35 [/dev/sdb, /dev/sdc]: spare 0 is on 2 devices",
      undefined,
    ],
    ["assembly-decision", "assemble u-1: refuse [/dev/sdb]: the setup is conflict", undefined],
    [
      "incremental-seen",
      'incremental: spare 1 of u-1 seen on "/dev/sdd" (1 of 2 spares seen)',
      1,
    ],
  ]);
});

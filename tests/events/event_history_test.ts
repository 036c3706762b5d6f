/**
 * EventHistory: events outlive the process, newest first, bounded.
 */

import assert from "node:assert/strict";
import { EventHistory } from "../../mod/events/event_history.ts";
import { EVENTS_MAX } from "../../mod/constants.ts";

Deno.test("EventHistory.recent() returns recorded events newest first, with their fields", () => {
  const history = EventHistory.open(":memory:");
  history.record({ type: "started", message: "serving" });
  history.record({
    type: "remap",
    message: "remapped block 7",
    blockIndex: 7,
    spareIndex: 1,
    slotIndex: 3,
  });
  const [newest, oldest] = history.recent(10);
  assert.deepEqual(
    { ...newest, timeMs: 0 },
    {
      id: 2,
      timeMs: 0,
      type: "remap",
      message: "remapped block 7",
      blockIndex: 7,
      spareIndex: 1,
      slotIndex: 3,
    },
  );
  assert.equal(oldest!.type, "started");
  assert.equal(oldest!.blockIndex, undefined);
  assert.deepEqual(history.recent(10, 1).map((event) => event.id), [2]);
  history.close();
});

Deno.test("EventHistory keeps its events across reopening the database file", async () => {
  const directory = await Deno.makeTempDir();
  try {
    const path = `${directory}/events.sqlite`;
    const first = EventHistory.open(path);
    first.record({ type: "pending", message: "block 9 is unreadable", blockIndex: 9 });
    first.close();
    const second = EventHistory.open(path);
    assert.deepEqual(second.recent(5).map((event) => event.blockIndex), [9]);
    second.close();
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("EventHistory drops the oldest events beyond EVENTS_MAX", () => {
  const history = EventHistory.open(":memory:");
  const total = EVENTS_MAX + 3000;
  for (let i = 0; i < total; i++) history.record({ type: "remap", message: `event ${i}` });
  const kept = history.recent(EVENTS_MAX + 5000);
  assert.ok(kept.length <= EVENTS_MAX + 1024, `${kept.length} events kept`);
  assert.ok(kept.length >= EVENTS_MAX, `${kept.length} events kept`);
  assert.equal(kept[0]!.message, `event ${total - 1}`);
  history.close();
});

Deno.test("EventHistory.since() returns the events from a time on, oldest first, the newest when capped", async () => {
  const history = EventHistory.open(":memory:");
  history.record({ type: "started", message: "serving" });
  await new Promise((resolve) => setTimeout(resolve, 5));
  const cutMs = Date.now();
  for (const blockIndex of [1, 2, 3]) {
    history.record({ type: "remap", message: `remapped block ${blockIndex}`, blockIndex });
  }
  assert.deepEqual(history.since(0, 10).map((event) => event.id), [1, 2, 3, 4]);
  assert.deepEqual(history.since(cutMs, 10).map((event) => event.blockIndex), [1, 2, 3]);
  assert.deepEqual(history.since(cutMs, 2).map((event) => event.blockIndex), [2, 3]);
  assert.deepEqual(history.since(Date.now() + 60_000, 10), []);
  history.close();
});

Deno.test("EventHistory.open() waits for another process's write instead of failing", async () => {
  // In vm 9, `serve` died with "database is locked": the `assemble` that lost the race to
  // start it was recording its decision in the same file.
  const directory = await Deno.makeTempDir();
  const path = `${directory}/events.sqlite`;
  EventHistory.open(path).close();
  const holder = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { DatabaseSync } from "node:sqlite";
       const database = new DatabaseSync(${JSON.stringify(path)});
       database.exec("BEGIN EXCLUSIVE");
       console.log("locked");
       setTimeout(() => database.exec("COMMIT"), 1500);`,
    ],
    stdout: "piped",
  }).spawn();
  try {
    const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
    assert.equal((await reader.read()).value?.trim(), "locked");
    reader.releaseLock();
    const history = EventHistory.open(path);
    history.record({ type: "started", message: "serving" });
    assert.equal(history.recent(1)[0]?.message, "serving");
    history.close();
  } finally {
    await holder.status;
    await Deno.remove(directory, { recursive: true });
  }
});

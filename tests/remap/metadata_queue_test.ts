/**
 * The metadata queue: one change at a time, client changes before waiting
 * background ones, a running change never interrupted.
 */

import assert from "node:assert/strict";
import { MetadataQueue } from "../../mod/remap/metadata_queue.ts";

/** A change that runs until released, and logs when it starts. */
function gatedChange(log: string[], name: string) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => release = resolve);
  return {
    release,
    work: async () => {
      log.push(name);
      await released;
      return name;
    },
  };
}

Deno.test("MetadataQueue runs one change at a time, and waiting client changes before background ones", async () => {
  const queue = new MetadataQueue();
  const log: string[] = [];
  const running = gatedChange(log, "background-running");
  const first = queue.run("background", running.work);
  const backgrounds = [1, 2, 3].map((i) =>
    queue.run("background", () => {
      log.push(`background-${i}`);
      return Promise.resolve();
    })
  );
  const client = queue.run("client", () => {
    log.push("client");
    return Promise.resolve();
  });
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(log, ["background-running"], "a running change is not interrupted");
  assert.equal(queue.waiting("background"), 3);
  assert.equal(queue.waiting("client"), 1);
  running.release();
  await Promise.all([first, client, ...backgrounds]);
  assert.deepEqual(log, [
    "background-running",
    "client",
    "background-1",
    "background-2",
    "background-3",
  ]);
});

Deno.test("MetadataQueue keeps the order within a lane and goes on after a change fails", async () => {
  const queue = new MetadataQueue();
  const log: string[] = [];
  const running = gatedChange(log, "client-0");
  const results = [
    queue.run("client", running.work),
    queue.run("client", () => Promise.reject(new Error("client-1 failed"))),
    queue.run("client", () => {
      log.push("client-2");
      throw new Error("client-2 threw");
    }),
    queue.run("client", () => {
      log.push("client-3");
      return Promise.resolve("client-3");
    }),
  ];
  running.release();
  const settled = await Promise.allSettled(results);
  assert.deepEqual(settled.map((result) => result.status), [
    "fulfilled",
    "rejected",
    "rejected",
    "fulfilled",
  ]);
  assert.deepEqual(log, ["client-0", "client-2", "client-3"]);
  assert.equal(queue.waiting("client") + queue.waiting("background"), 0);
});

/**
 * `dm-remap events`: the setups' SQLite histories as the CLI lists them.
 *
 * Goal: events of any kind (the engine's, the service's, and kinds this
 * command has never heard of) are listed oldest first with their time,
 * setup, kind and words, for one setup, for all, or from one file, and
 * `--since` filters by ISO time or duration. Method: histories written with
 * `EventHistory` in the CLI's state directory, their times set in SQL, read
 * by the CLI as a separate process.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { EventHistory } from "../../mod/events/event_history.ts";
import { sinceOption } from "../../mod/cli/commands/events.ts";
import { CLI_ENV, runCli } from "./cli_process.ts";

const STATE_DIR = CLI_ENV.DM_REMAP_STATE_DIR!;
const HOUR_MS = 3_600_000;
const NOW_MS = Date.now();

/** Writes a history for `setup` with events at the given ages. */
function writeHistory(
  path: string,
  events: { type: string; message: string; ageMs: number; blockIndex?: number }[],
): void {
  const history = EventHistory.open(path);
  for (const event of events) history.record(event);
  history.close();
  const database = new DatabaseSync(path);
  const update = database.prepare("UPDATE events SET time_ms = ? WHERE id = ?");
  events.forEach((event, i) => update.run(NOW_MS - event.ageMs, i + 1));
  database.close();
}

Deno.test("events lists every kind of event of one setup or all, oldest first, filtered by --since", async () => {
  await Deno.mkdir(STATE_DIR, { recursive: true });
  writeHistory(`${STATE_DIR}/vault.events.sqlite`, [
    { type: "started", message: "serving 100 bytes", ageMs: 48 * HOUR_MS },
    {
      type: "remap",
      message: "remapped block 7 to spare 0 slot 0",
      ageMs: 3 * HOUR_MS,
      blockIndex: 7,
    },
    { type: "main-failed", message: "setup failed: the main disk is gone", ageMs: HOUR_MS / 2 },
  ]);
  writeHistory(`${STATE_DIR}/photos.events.sqlite`, [
    { type: "assembled", message: "assembled from 2 of 2 spares", ageMs: 2 * HOUR_MS },
  ]);

  const all = await runCli(["events", "--json"]);
  assert.equal(all.code, 0, all.stderr);
  assert.deepEqual(
    JSON.parse(all.stdout).map((event: { setup: string; type: string }) =>
      `${event.setup} ${event.type}`
    ),
    ["vault started", "vault remap", "photos assembled", "vault main-failed"],
  );

  const recent = await runCli(["events", "vault", "--since", "4h"]);
  assert.equal(recent.code, 0, recent.stderr);
  const lines = recent.stdout.trim().split("\n");
  assert.equal(lines.length, 2);
  assert.match(
    lines[0]!,
    /^\d{4}-\d\d-\d\dT\S+Z {2}vault {2}remap {2}remapped block 7 .* \[block 7\]$/,
  );
  assert.match(lines[1]!, /vault {2}main-failed {2}setup failed: the main disk is gone$/);

  const since = new Date(NOW_MS - HOUR_MS).toISOString();
  const fromFile = await runCli([
    "events",
    "--db",
    `${STATE_DIR}/photos.events.sqlite`,
    "--since",
    since,
  ]);
  assert.equal(fromFile.code, 0, fromFile.stderr);
  assert.equal(
    fromFile.stdout.trim(),
    `No events since ${since} in ${STATE_DIR}/photos.events.sqlite`,
  );

  const unknown = await runCli(["events", "nosuch"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /No event history at ".*nosuch\.events\.sqlite"/);
  const malformed = await runCli(["events", "--since", "yesterday"]);
  assert.equal(malformed.code, 2);
  assert.match(malformed.stderr, /--since takes an ISO time .* not "yesterday"/);
});

Deno.test("sinceOption() reads durations before now and ISO times", () => {
  const rows: [text: string, expectedMs: number][] = [
    ["90s", NOW_MS - 90_000],
    ["15m", NOW_MS - 15 * 60_000],
    ["2h", NOW_MS - 2 * HOUR_MS],
    ["7d", NOW_MS - 7 * 24 * HOUR_MS],
    ["1w", NOW_MS - 7 * 24 * HOUR_MS],
    ["2026-01-31T12:00:00Z", Date.UTC(2026, 0, 31, 12)],
  ];
  for (const [text, expectedMs] of rows) assert.equal(sinceOption(text, NOW_MS), expectedMs, text);
  for (const text of ["", "2x", "-5m", "tomorrow", "2026-13-45"]) {
    assert.throws(() => sinceOption(text, NOW_MS), /--since takes/, text);
  }
});

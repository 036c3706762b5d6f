/**
 * The metadata backup document: what it records, its layout for people, and
 * the checks that refuse a damaged, edited or newer one.
 *
 * Method: a backup built from formatted memory spares; encode, change one
 * thing in the text, decode.
 */

import assert from "node:assert/strict";
import { MemoryDevice } from "../../mod/device/memory_device.ts";
import { RefusedError } from "../../mod/errors.ts";
import {
  decodeBackup,
  encodeBackup,
  payloadFromBackup,
  type SetupBackup,
  setupBackupOf,
} from "../../mod/metadata/setup_backup.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import { SpareStore } from "../../mod/metadata/spare_store.ts";
import { payloadFor, SETUP_UUID } from "./fixtures.ts";

async function twoSpareBackup(): Promise<{ backup: SetupBackup; stores: SpareStore[] }> {
  const bytes = minimumSpareBytes(4096) + 1024 * 1024;
  const stores = [];
  for (const spareIndex of [0, 1]) {
    const device = new MemoryDevice(`spare${spareIndex}`, bytes);
    stores.push(
      await SpareStore.format(device, payloadFor(bytes, { spareIndex, spareCount: 2 })),
    );
  }
  await stores[0]!.appendRemaps(Array.from({ length: 40 }, (_, i) => 1000 + i));
  await stores[1]!.writeMetadata((payload) => {
    payload.setup.generation = 2;
    payload.pending = [77];
  });
  return { backup: setupBackupOf(stores, { reason: "setup state", writtenMs: 0 }), stores };
}

Deno.test("setupBackupOf() records the newest description, each spare's table and its mappings", async () => {
  const { backup, stores } = await twoSpareBackup();
  assert.equal(backup.setup.uuid, SETUP_UUID);
  assert.equal(backup.setup.generation, 2, "the highest generation describes the setup");
  assert.deepEqual(backup.pending, [77]);
  assert.equal(backup.written, "1970-01-01T00:00:00.000Z");
  assert.deepEqual(backup.spares.map((spare) => spare.slotBlocks.length), [40, 0]);
  assert.deepEqual(backup.spares.map((spare) => spare.sequence), [1, 2]);
  assert.deepEqual(payloadFromBackup(backup, 1).layout, stores[1]!.payload.layout);
  await stores[0]!.appendRemaps([5]);
  assert.equal(backup.spares[0]!.slotBlocks.length, 40, "a backup is a snapshot");
});

Deno.test("decodeBackup() returns what encodeBackup() wrote; slots are 16 to a line", async () => {
  const { backup } = await twoSpareBackup();
  const text = await encodeBackup(backup);
  assert.deepEqual(await decodeBackup(text, "b.json"), backup);
  assert.match(text, /^ {8}1000, 1001, .*, 1015,$/m);
  assert.match(text, /"slotBlocks": \[\]/);
  assert.match(text, /"sha256": "[0-9a-f]{64}"\n}\n$/);
});

Deno.test("decodeBackup() refuses a backup that was damaged, edited, newer or not a backup", async () => {
  const { backup } = await twoSpareBackup();
  const text = await encodeBackup(backup);
  const rows: [string, string, RegExp][] = [
    ["a mapping edited", text.replace("1003,", "1004,"), /checksum does not match/],
    ["a byte lost", text.replace('"name": "fixture"', '"name": "fixtur"'), /checksum/],
    ["truncated", text.slice(0, text.length / 2), /it is not JSON/],
    ["a newer version", text.replace('"version": 1', '"version": 9'), /upgrade dm-remap/],
    ["another document", '{"hello": 1}', /not a dm-remap metadata backup/],
  ];
  for (const [scenario, changed, reason] of rows) {
    await assert.rejects(decodeBackup(changed, "b.json"), (error: Error) => {
      assert.ok(error instanceof RefusedError, scenario);
      assert.match(error.message, /^Cannot use backup "b\.json": /, scenario);
      assert.match(error.message, reason, scenario);
      return true;
    });
  }
});

Deno.test("decodeBackup() refuses a well-formed backup whose contents restore could not use", async () => {
  const { backup } = await twoSpareBackup();
  const [first, second] = backup.spares;
  const rows: [string, SetupBackup, RegExp][] = [
    [
      "a negative block",
      { ...backup, spares: [{ ...first!, slotBlocks: [-1] }, second!] },
      /spare 0: bad slot list/,
    ],
    ["no spares", { ...backup, spares: [] }, /it lists no spares/],
    [
      "a layout for another block size",
      {
        ...backup,
        spares: [first!, { ...second!, layout: { ...second!.layout, blockBytes: 512 } }],
      },
      /spare 1: payload has a layout for another block size/,
    ],
  ];
  for (const [scenario, changed, reason] of rows) {
    await assert.rejects(
      decodeBackup(await encodeBackup(changed), "b.json"),
      (error: Error) => error instanceof RefusedError && reason.test(error.message),
      scenario,
    );
  }
});

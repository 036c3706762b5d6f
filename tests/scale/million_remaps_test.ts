/**
 * Scale: one million remaps on one spare, then a restart.
 *
 * Goal: the table has no small cap, survives a restart, opens quickly, costs
 * little memory per entry and answers lookups in O(1).
 * Method: sparse image files in /dev/shm, 512-byte blocks so a million slots
 * fit in a 540 MiB sparse spare; remaps are appended in group-commit batches
 * through the metadata engine (the data path is measured in bench/). The
 * numbers are printed for the closing note; the assertions are the behaviour
 * (every remap back, lookups correct), plus generous bounds that catch an
 * accidental O(n) per lookup or a per-entry object.
 */

import assert from "node:assert/strict";
import { openFileDevice } from "../../mod/device/file_device.ts";
import { createSetup } from "../../mod/assembly/create.ts";
import { assembleSetup, openSpares } from "../../mod/assembly/assemble.ts";
import { REMAP_BATCH_MAX } from "../../mod/constants.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";

const REMAPS = 1_000_000;
const BLOCK_BYTES = 512;

Deno.test("one million remaps persist, reopen quickly and look up in O(1)", async () => {
  const directory = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "dm-remap-scale-" });
  try {
    const mainPath = `${directory}/main.img`;
    const sparePath = `${directory}/spare.img`;
    const mainBytes = 4 * REMAPS * BLOCK_BYTES;
    const spareBytes = minimumSpareBytes(BLOCK_BYTES) + (REMAPS + 1024) * (BLOCK_BYTES + 16);
    await Deno.writeFile(mainPath, new Uint8Array(0));
    await Deno.truncate(mainPath, mainBytes);
    await Deno.writeFile(sparePath, new Uint8Array(0));
    await Deno.truncate(sparePath, spareBytes);

    const main = await openFileDevice(mainPath, { exclusive: true });
    const spare = await openFileDevice(sparePath, { exclusive: true });
    const [store] = await createSetup({
      name: "scale",
      main: { device: main, identity: { path: mainPath, kind: "file", sizeBytes: mainBytes } },
      spares: [{ device: spare, path: sparePath }],
      blockBytes: BLOCK_BYTES,
    });
    // Every fourth block, so the keys are spread like real failures, not dense.
    const blockOf = (slot: number) => slot * 4 + (slot % 3);
    for (let first = 0; first < REMAPS; first += REMAP_BATCH_MAX) {
      const count = Math.min(REMAP_BATCH_MAX, REMAPS - first);
      await store!.appendRemaps(Array.from({ length: count }, (_, i) => blockOf(first + i)));
    }
    await spare.close();

    const reopenedSpare = await openFileDevice(sparePath, { exclusive: true });
    const memoryBefore = Deno.memoryUsage().heapUsed + Deno.memoryUsage().external;
    const openStart = performance.now();
    const engine = await assembleSetup(
      { device: main, identity: { path: mainPath, kind: "file", sizeBytes: mainBytes } },
      await openSpares([reopenedSpare]),
    );
    const openMs = performance.now() - openStart;
    assert.equal(engine.remapCount, REMAPS);

    const lookupStart = performance.now();
    for (let slot = 0; slot < REMAPS; slot++) {
      const location = engine.lookup(blockOf(slot));
      if (location?.slotIndex !== slot) {
        assert.fail(`block ${blockOf(slot)} maps to ${JSON.stringify(location)}`);
      }
      // 4k + 3 is never a remapped block under blockOf().
      if (engine.lookup(slot * 4 + 3) !== undefined) {
        assert.fail(`block ${slot * 4 + 3} is not remapped`);
      }
    }
    const lookupNs = (performance.now() - lookupStart) * 1e6 / (2 * REMAPS);
    const bytesPerRemap = engine.tableMemoryBytes / REMAPS;
    const heapPerRemap =
      (Deno.memoryUsage().heapUsed + Deno.memoryUsage().external - memoryBefore) / REMAPS;
    console.log(
      `1M remaps: open ${openMs.toFixed(0)} ms, table ${bytesPerRemap.toFixed(1)} B/remap ` +
        `(process growth ${heapPerRemap.toFixed(1)} B/remap), lookup ${lookupNs.toFixed(0)} ns`,
    );
    assert.ok(bytesPerRemap <= 64, `${bytesPerRemap} bytes per remap`);
    assert.ok(lookupNs < 5_000, `lookup took ${lookupNs} ns: not O(1)`);
    await engine.close();
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

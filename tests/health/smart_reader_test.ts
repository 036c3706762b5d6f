/**
 * readSmart(): the real smartctl on devices that have no SMART gives a quiet
 * `no-smart` reading with the reason, never an error: an image file (not
 * even asked), a loop block device (smartctl's "Unable to detect device
 * type"), a path that does not exist, and a machine without smartctl (a
 * runner that reports it missing). A runner's JSON is parsed like smartctl's.
 */

import assert from "node:assert/strict";
import { readSmart } from "../../mod/health/smart_reader.ts";
import { attachLoopDevice, type LoopDevice, makeSparseImage } from "../device/fixtures.ts";

/** Runs `body` with a loop device over a fresh 16 MiB image, then releases both. */
async function withLoop(body: (loop: LoopDevice) => Promise<void>): Promise<void> {
  const image = await makeSparseImage(16 * 1024 * 1024);
  try {
    const loop = await attachLoopDevice(image.path);
    try {
      await body(loop);
    } finally {
      await loop.detach();
    }
  } finally {
    await image.cleanup();
  }
}

Deno.test("readSmart() gives an image file no SMART without running smartctl", async () => {
  const image = await makeSparseImage(1024 * 1024);
  try {
    let ran = false;
    const reading = await readSmart(image.path, {
      nowMs: 5,
      run: () => {
        ran = true;
        return Promise.resolve({ missing: true });
      },
    });
    assert.deepEqual(reading, {
      state: "no-smart",
      device: image.path,
      reason: "not a block device (an image file has no SMART)",
      timeMs: 5,
    });
    assert.equal(ran, false);
  } finally {
    await image.cleanup();
  }
});

Deno.test("readSmart() runs smartctl on a loop device and reports no SMART in smartctl's words", async () => {
  await withLoop(async (loop) => {
    const reading = await readSmart(loop.path);
    assert.equal(reading.state, "no-smart");
    assert.equal(
      reading.state === "no-smart" && reading.reason,
      `${loop.path}: Unable to detect device type`,
    );
  });
});

Deno.test("readSmart() reports a missing smartctl, a failed run and a missing path quietly", async () => {
  await withLoop(async (loop) => {
    const missing = await readSmart(loop.path, { run: () => Promise.resolve({ missing: true }) });
    assert.equal(
      missing.state === "no-smart" && missing.reason,
      "smartctl is not installed (install smartmontools)",
    );
    const failing = await readSmart(loop.path, {
      run: () => Promise.reject(new Error("timed out")),
    });
    assert.equal(failing.state === "no-smart" && failing.reason, "smartctl failed: timed out");
    const garbage = await readSmart(loop.path, {
      run: () => Promise.resolve({ missing: false, stdout: "Segmentation fault", exitCode: 139 }),
    });
    assert.equal(
      garbage.state === "no-smart" && garbage.reason,
      "smartctl printed no JSON (exit status 139)",
    );
  });
  const gone = await readSmart("/nonexistent/dm-remap-smart-test");
  assert.equal(gone.state, "no-smart");
  assert.match(gone.state === "no-smart" ? gone.reason : "", /^cannot stat /);
});

Deno.test("readSmart() parses what the runner printed for a block device", async () => {
  const stdout = await Deno.readTextFile(
    new URL("./fixtures/sata_hdd_seagate_reallocated.json", import.meta.url),
  );
  await withLoop(async (loop) => {
    const reading = await readSmart(loop.path, {
      nowMs: 9,
      run: (path) => {
        assert.equal(path, loop.path);
        return Promise.resolve({ missing: false, stdout, exitCode: 100 });
      },
    });
    assert.equal(reading.state, "ok");
    assert.equal(reading.state === "ok" && reading.counters.pendingSectors, 1);
    assert.equal(reading.timeMs, 9);
  });
});

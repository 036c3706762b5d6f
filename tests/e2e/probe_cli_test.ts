/**
 * `dm-remap probe --export`, as udev's IMPORT{program} runs it (udev/69-dm-remap.rules).
 *
 * Goal: a spare prints its setup's UUID, name, index and count as KEY=value lines udev imports;
 * the main disk and an empty disk print nothing and exit 0 (no properties, no error in udev's
 * log); the probe writes nothing (the images' hashes are unchanged) and answers fast.
 * Method: a setup made with `create` on image files; probe run as a process.
 */

import assert from "node:assert/strict";
import { imageDirectory, runCli } from "./cli_process.ts";
import { hashFiles } from "../assembly/_setups.ts";

const MIB = 1024 * 1024;

Deno.test("dm-remap probe --export prints a spare's udev properties, nothing for other disks, and writes nothing", async () => {
  const images = await imageDirectory({
    "pr-main.img": 64 * MIB,
    "pr-s0.img": 32 * MIB,
    "pr-s1.img": 32 * MIB,
    "pr-blank.img": 32 * MIB,
  });
  const name = `pr${crypto.randomUUID().slice(0, 8)}`;
  try {
    const created = await runCli([
      "create",
      name,
      "--main",
      images.file("pr-main.img"),
      "--spare",
      images.file("pr-s0.img"),
      "--spare",
      images.file("pr-s1.img"),
      "--json",
    ]);
    assert.equal(created.code, 0, created.stderr);
    const uuid = (JSON.parse(created.stdout) as { uuid: string }).uuid;
    const before = await hashFiles(images.path);

    const spare = await runCli(["probe", "--export", images.file("pr-s1.img")]);
    assert.equal(spare.code, 0, spare.stderr);
    const properties = Object.fromEntries(
      spare.stdout.trim().split("\n").map((line) => line.split("=", 2) as [string, string]),
    );
    assert.equal(properties.DM_REMAP_UUID, uuid);
    assert.equal(properties.DM_REMAP_NAME, name);
    assert.equal(properties.DM_REMAP_SPARE_INDEX, "1");
    assert.equal(properties.DM_REMAP_SPARE_COUNT, "2");
    assert.equal(properties.DM_REMAP_VALID_COPIES, "5");
    assert.match(properties.DM_REMAP_SEQUENCE ?? "", /^\d+$/);
    for (const line of spare.stdout.trim().split("\n")) {
      assert.match(line, /^DM_REMAP_[A-Z_]+=[A-Za-z0-9._:@+-]+$/);
    }

    for (const other of ["pr-main.img", "pr-blank.img"]) {
      const probed = await runCli(["probe", "--export", images.file(other)]);
      assert.equal(probed.code, 0, probed.stderr);
      assert.equal(probed.stdout, "", other);
    }
    assert.deepEqual(await hashFiles(images.path), before);

    const missing = await runCli(["probe", "--export"]);
    assert.equal(missing.code, 2);
  } finally {
    await images.cleanup();
  }
});

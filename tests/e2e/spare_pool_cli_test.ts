/**
 * A setup with a spare missing, as users meet it (issue 16, format version 2).
 *
 * Goal: any one spare is enough for `discover` to report the whole setup and
 * which blocks are unavailable; `serve` runs the setup without the missing
 * spare, a real NBD client (qemu-io) gets EIO for the blocks on it, never
 * the main disk's stale copy, and correct data everywhere else; `status`
 * reports the spare missing and the setup degraded.
 * Method: the setup is made in-process on image files with the engine over
 * the fault layer (24 blocks that fail writes are remapped: 16 fill spare 0,
 * 8 go to spare 1), the main disk's copies of those blocks then overwritten
 * with 0xee; `discover` and `serve` run as processes.
 */

import assert from "node:assert/strict";
import { createSetup } from "../../mod/assembly/create.ts";
import { assembleSetup, openSpares } from "../../mod/assembly/assemble.ts";
import { probePath } from "../../mod/assembly/open_path.ts";
import { openFileDevice } from "../../mod/device/file_device.ts";
import { FaultyDevice } from "../../mod/fault/faulty_device.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import { hashFiles } from "../assembly/_setups.ts";
import { assertClientOk, runClient } from "../clients/run_client.ts";
import { imageDirectory, runCli, startServe } from "./cli_process.ts";

const BLOCK = 4096;
const MIB = 1024 * 1024;

async function setupWithRemapsOnBothSpares() {
  const files = await imageDirectory({
    "main.img": 16 * MIB,
    "spare0.img": minimumSpareBytes(BLOCK),
    "spare1.img": 32 * MIB,
  });
  const main = await openFileDevice(files.file("main.img"), { exclusive: true });
  const spares = [
    await openFileDevice(files.file("spare0.img"), { exclusive: true }),
    await openFileDevice(files.file("spare1.img"), { exclusive: true }),
  ];
  const { identity } = await probePath(files.file("main.img"));
  const name = `pool${crypto.randomUUID().slice(0, 8)}`;
  await createSetup({
    name,
    main: { device: main, identity },
    spares: spares.map((device, i) => ({ device, path: files.file(`spare${i}.img`) })),
    blockBytes: BLOCK,
  });
  const faulty = new FaultyDevice(main, { blockBytes: BLOCK });
  const remapped = Array.from({ length: 24 }, (_, i) => 100 + i * 5);
  faulty.addBadBlocks(remapped, "write");
  const engine = await assembleSetup({ device: faulty, identity }, await openSpares(spares));
  for (const blockIndex of [...remapped, 3000]) {
    await engine.write(new Uint8Array(BLOCK).fill(blockIndex % 251), blockIndex * BLOCK);
  }
  const onSpare = (spareIndex: number) =>
    engine.remaps().filter((remap) => remap.spareIndex === spareIndex)
      .map((remap) => remap.blockIndex);
  const layout = { onSpare0: onSpare(0), onSpare1: onSpare(1) };
  assert.equal(layout.onSpare0.length, 16);
  assert.equal(layout.onSpare1.length, 8);
  await engine.close();
  const stale = await Deno.open(files.file("main.img"), { write: true });
  for (const blockIndex of remapped) {
    await stale.seek(blockIndex * BLOCK, Deno.SeekMode.Start);
    await stale.write(new Uint8Array(BLOCK).fill(0xee));
  }
  stale.close();
  return { files, name, ...layout };
}

Deno.test("discover with one spare reports the whole setup and the blocks on the missing spare", async () => {
  const { files, name, onSpare0 } = await setupWithRemapsOnBothSpares();
  try {
    const before = await hashFiles(files.path);
    const json = await runCli([
      "discover",
      "--json",
      files.file("spare1.img"),
      files.file("main.img"),
    ]);
    assert.equal(json.code, 0, json.stderr);
    const setup = JSON.parse(json.stdout).setups.find((found: { name: string }) =>
      found.name === name
    );
    assert.equal(setup.state, "incomplete");
    assert.equal(setup.sparesExpected, 2);
    assert.equal(setup.sparesFound, 1);
    assert.deepEqual(setup.unavailable, [{
      spareIndex: 0,
      uuid: setup.spares[0].uuid,
      blockCount: 16,
      firstBlocks: [...onSpare0].sort((a, b) => a - b),
      known: true,
    }]);
    const text = await runCli(["discover", files.file("spare1.img"), files.file("main.img")]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /spare 0 \(\S+\) is missing: 16 remapped blocks unavailable/);
    const listed = await runCli(["remaps", "--spare", files.file("spare1.img"), "--json"]);
    assert.equal(listed.code, 0, listed.stderr);
    const remaps = JSON.parse(listed.stdout).remaps as { spareIndex: number }[];
    assert.equal(remaps.length, 24, "one spare lists every remap of the setup");
    assert.equal(remaps.filter((remap) => remap.spareIndex === 0).length, 16);
    assert.deepEqual(await hashFiles(files.path), before, "discover and remaps write nothing");
  } finally {
    await files.cleanup();
  }
});

Deno.test("serve without a spare: qemu-io gets EIO for its blocks and correct data elsewhere", async () => {
  const { files, onSpare0, onSpare1 } = await setupWithRemapsOnBothSpares();
  const socket = files.file("nbd.sock");
  const uri = `nbd+unix:///?socket=${socket}`;
  try {
    const serve = await startServe([
      "--spare",
      files.file("spare1.img"),
      "--main",
      files.file("main.img"),
      "--socket",
      socket,
      "--api-socket",
      files.file("api.sock"),
      "--events-db",
      files.file("events.sqlite"),
      "--allocation",
      "round-robin",
    ]);
    try {
      const readPattern = (blockIndex: number, fill: number) =>
        runClient("qemu-io", [
          "-f",
          "raw",
          uri,
          "-c",
          `read -P ${fill} ${blockIndex * BLOCK} ${BLOCK}`,
        ]);
      for (const blockIndex of [...onSpare1, 3000]) {
        const read = await readPattern(blockIndex, blockIndex % 251);
        assertClientOk(read);
        assert.doesNotMatch(read.stdout + read.stderr, /error|failed|mismatch/i, `${blockIndex}`);
      }
      for (const blockIndex of onSpare0) {
        const read = await readPattern(blockIndex, 0xee);
        assert.match(read.stdout + read.stderr, /Input\/output error/, `block ${blockIndex}`);
      }
      const status = await runCli(["status", "--api-socket", files.file("api.sock"), "--json"]);
      assert.equal(status.code, 0, status.stderr);
      const live = JSON.parse(status.stdout);
      assert.equal(live.setup.state, "degraded");
      assert.equal(live.setup.allocation, "round-robin");
      assert.equal(live.spares[0].missing, true);
      assert.equal(live.spares[0].state, "missing");
      assert.equal(live.spares[0].slotsUsed, 16);
      assert.equal(live.spares[1].missing, false);
    } finally {
      serve.kill("SIGTERM");
      const ended = await serve.finished();
      assert.equal(ended.code, 0, ended.stderr);
    }
  } finally {
    await files.cleanup();
  }
});

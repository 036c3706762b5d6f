/**
 * Real EIO from outside the project, through real NBD clients.
 *
 * Goal: with a main disk whose sectors fail in the kernel (nbdkit behind
 * nbdfuse), clients write and read across the bad ranges without seeing an
 * error for remapped writes, see EIO (never zeros) for unreadable data, and
 * every acknowledged write survives `kill -9` of the server.
 * Method: `dm-remap create` and `serve` as processes; qemu-io, nbdinfo and
 * libnbd (python3-libnbd) as clients; the status API over its unix socket.
 */

import assert from "node:assert/strict";
import { startFailingDisk } from "../clients/failing_disk.ts";
import { assertClientOk, runClient } from "../clients/run_client.ts";
import type { SetupStatus } from "../../mod/api/status.ts";
import { EventHistory } from "../../mod/events/event_history.ts";
import { imageDirectory, runCli, type ServeProcess, startServe } from "./cli_process.ts";

const MIB = 1024 * 1024;
const KIB = 1024;
const WRITER = new URL("./fua_writer.py", import.meta.url).pathname;
/** Debian's python3, which has the libnbd bindings (python3-libnbd), whatever else is in PATH. */
const PYTHON = "/usr/bin/python3";

interface Rig {
  uri: string;
  apiSocket: string;
  serveArgs: string[];
  files: Awaited<ReturnType<typeof imageDirectory>>;
  disk: Awaited<ReturnType<typeof startFailingDisk>>;
}

async function withRig(test: (rig: Rig) => Promise<void>): Promise<void> {
  const files = await imageDirectory({ "spare0.img": 32 * MIB, "spare1.img": 32 * MIB });
  const disk = await startFailingDisk({ sizeBytes: 64 * MIB });
  try {
    const created = await runCli([
      "create",
      "eio",
      "--main",
      disk.path,
      "--spare",
      files.file("spare0.img"),
      "--spare",
      files.file("spare1.img"),
      "--backup-dir",
      files.file("backup"),
    ]);
    assert.equal(created.code, 0, created.stderr);
    const socket = files.file("nbd.sock");
    const rig: Rig = {
      uri: `nbd+unix:///eio?socket=${socket}`,
      apiSocket: files.file("api.sock"),
      serveArgs: [
        "--spare",
        files.file("spare0.img"),
        "--spare",
        files.file("spare1.img"),
        "--main",
        disk.path,
        "--socket",
        socket,
        "--api-socket",
        files.file("api.sock"),
        "--read-retries",
        "1",
        "--events-db",
        files.file("events.sqlite"),
        "--backup-dir",
        files.file("backup"),
      ],
      files,
      disk,
    };
    await test(rig);
  } finally {
    await disk.stop();
    await files.cleanup();
  }
}

async function status(rig: Rig): Promise<SetupStatus> {
  const run = await runCli(["status", "--api-socket", rig.apiSocket, "--json"]);
  assert.equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout);
}

async function stopCleanly(serve: ServeProcess): Promise<void> {
  serve.kill("SIGTERM");
  const run = await serve.finished();
  assert.equal(run.code, 0, run.stderr);
}

Deno.test("qemu-io writes across failing sectors without an error, and reads its data back", async () => {
  await withRig(async (rig) => {
    await rig.disk.setBadRanges([
      { offsetBytes: 1 * MIB, lengthBytes: 8 * KIB, fail: "write" },
      { offsetBytes: 3 * MIB + 512, lengthBytes: 512, fail: "both" },
    ]);
    const serve = await startServe(rig.serveArgs);
    try {
      const info = await runClient("nbdinfo", ["--json", rig.uri]);
      assertClientOk(info);
      const exported = JSON.parse(info.stdout).exports[0];
      assert.equal(exported["export-size"], 64 * MIB);
      assert.equal(exported["block_size_preferred"], 4096);
      for (const [offset, length] of [[1 * MIB - 16 * KIB, 40 * KIB], [3 * MIB, 4 * KIB]]) {
        const write = await runClient("qemu-io", [
          "-f",
          "raw",
          rig.uri,
          "-c",
          `write -P 0xa7 ${offset} ${length}`,
        ]);
        assertClientOk(write);
        assert.doesNotMatch(write.stdout + write.stderr, /error|failed/i);
        const read = await runClient("qemu-io", [
          "-f",
          "raw",
          rig.uri,
          "-c",
          `read -P 0xa7 ${offset} ${length}`,
        ]);
        assertClientOk(read);
        assert.doesNotMatch(read.stdout + read.stderr, /error|failed|mismatch/i);
      }
      const live = await status(rig);
      assert.equal(live.counters.remaps, 3, "two 4 KiB blocks at 1 MiB and one at 3 MiB");
      assert.equal(live.setup.state, "clean");
      // Counted whether a connection worker served them or the engine did.
      assert.equal(live.counters.writes, 2);
      assert.equal(live.counters.reads >= 2, true);
      assert.equal(live.counters.bytesWritten, 44 * KIB);
    } finally {
      await stopCleanly(serve);
    }
    const remaps = await runCli([
      "remaps",
      "--spare",
      rig.files.file("spare0.img"),
      "--spare",
      rig.files.file("spare1.img"),
      "--json",
    ]);
    assert.deepEqual(
      JSON.parse(remaps.stdout).remaps.map((remap: { blockIndex: number }) => remap.blockIndex),
      [256, 257, 768],
    );
    // The event history outlives the process.
    const history = EventHistory.open(rig.files.file("events.sqlite"));
    try {
      const events = history.recent(100).reverse();
      assert.equal(events[0]!.type, "started");
      assert.equal(events[events.length - 1]!.type, "stopped");
      assert.deepEqual(
        events.filter((event) => event.type === "remap").map((event) => event.blockIndex),
        [256, 257, 768],
      );
    } finally {
      history.close();
    }
  });
});

Deno.test("a block that goes bad after it was written reads as EIO, becomes pending, and the next write heals it", async () => {
  await withRig(async (rig) => {
    const serve = await startServe(rig.serveArgs);
    try {
      const block = 5 * MIB;
      assertClientOk(
        await runClient("qemu-io", ["-f", "raw", rig.uri, "-c", `write -P 0x3c ${block} 4096`]),
      );
      await rig.disk.setBadRanges([{ offsetBytes: block + 1024, lengthBytes: 512, fail: "both" }]);
      const read = await runClient("qemu-io", [
        "-f",
        "raw",
        rig.uri,
        "-c",
        `read -P 0x3c ${block} 4096`,
      ]);
      assert.match(read.stdout + read.stderr, /Input\/output error/);
      assert.doesNotMatch(read.stdout, /read 4096\/4096 bytes/);
      const pending = await status(rig);
      assert.deepEqual(pending.pendingBlocks, [block / 4096]);
      assert.equal(pending.counters.remaps, 0);
      // Reading the bytes around it still works; only the unreadable request fails.
      assertClientOk(
        await runClient("qemu-io", [
          "-f",
          "raw",
          rig.uri,
          "-c",
          `read -P 0x3c ${block - 4096 + 4096} 1024`,
        ]),
      );
      const heal = await runClient("qemu-io", [
        "-f",
        "raw",
        rig.uri,
        "-c",
        `write -P 0x4d ${block} 4096`,
      ]);
      assertClientOk(heal);
      assertClientOk(
        await runClient("qemu-io", ["-f", "raw", rig.uri, "-c", `read -P 0x4d ${block} 4096`]),
      );
      const healed = await status(rig);
      assert.deepEqual(healed.pendingBlocks, []);
      assert.equal(healed.counters.remaps, 1);
    } finally {
      await stopCleanly(serve);
    }
  });
});

Deno.test("every write acknowledged before kill -9 reads back after restart, remaps included", async () => {
  await withRig(async (rig) => {
    // Bad sectors scattered through the area the writer covers.
    await rig.disk.setBadRanges(
      [2, 9, 10, 31, 64, 65, 66, 120].map((block) => ({
        offsetBytes: (4096 + block) * 4096,
        lengthBytes: 512,
        fail: "write" as const,
      })),
    );
    const first = await startServe(rig.serveArgs);
    const writer = new Deno.Command(PYTHON, {
      args: [WRITER, "write", rig.uri, "4096", "4096", "400", "1", "1"],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writerErrors = new Response(writer.stderr).text();
    let acked = -1;
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of writer.stdout) {
      pending += decoder.decode(chunk, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) if (line.startsWith("acked ")) acked = Number(line.slice(6));
      if (acked >= 150) {
        first.kill("SIGKILL");
        break;
      }
    }
    await writer.status;
    if (acked < 150) {
      first.kill("SIGTERM");
      await first.finished();
      assert.fail(`the writer stopped after ${acked + 1} acknowledgements: ${await writerErrors}`);
    }
    await writerErrors;
    assert.equal((await first.finished()).code, 137, "killed by SIGKILL");

    const second = await startServe(rig.serveArgs);
    try {
      const verify = await runClient(PYTHON, [
        WRITER,
        "verify",
        rig.uri,
        "4096",
        "4096",
        String(acked + 1),
        "1",
        "1",
      ]);
      assertClientOk(verify);
      const bad = verify.stdout.split("\n").filter((line) => line.startsWith("bad"));
      assert.deepEqual(bad, [], `acknowledged blocks lost: ${bad.join(", ")}`);
      const after = await status(rig);
      assert.ok(
        after.counters.remaps >= 6,
        `the bad blocks among the first ${acked + 1} were remapped: ${after.counters.remaps}`,
      );
    } finally {
      await stopCleanly(second);
    }
  });
});

Deno.test("fio with crc32c verification and nbdcopy over 4 connections run clean across failing sectors", async () => {
  await withRig(async (rig) => {
    // Write-failing sectors inside both the fio region (first 8 MiB) and the nbdcopy image.
    await rig.disk.setBadRanges(
      [1 * MIB, 2 * MIB + 4096, 5 * MIB + 512, 7 * MIB + 8192].map((offsetBytes) => ({
        offsetBytes,
        lengthBytes: 512,
        fail: "write" as const,
      })),
    );
    const serve = await startServe(rig.serveArgs);
    try {
      const fio = await runClient("fio", [
        "--name=verify",
        "--ioengine=nbd",
        `--uri=${rig.uri}`,
        "--rw=randwrite",
        "--bs=16k",
        "--iodepth=8",
        "--size=8M",
        "--verify=crc32c",
        "--verify_fatal=1",
        "--output-format=json",
      ], { cwd: rig.files.path, timeoutMs: 120_000 });
      assertClientOk(fio);
      const job = JSON.parse(fio.stdout.slice(fio.stdout.indexOf("{"))).jobs[0];
      assert.equal(job.error, 0);
      assert.equal(job.write.io_bytes, 8 * MIB);
      assert.ok(job.read.io_bytes >= 8 * MIB, "fio read back and verified everything it wrote");
      assert.ok((await status(rig)).counters.remaps >= 4);

      const image = rig.files.file("random.img");
      await Deno.writeFile(image, randomBytes(8 * MIB));
      assertClientOk(
        await runClient("nbdcopy", ["--flush", "--connections=4", image, rig.uri], {
          timeoutMs: 120_000,
        }),
      );
      const copy = rig.files.file("copy.img");
      assertClientOk(
        await runClient("nbdcopy", ["--connections=4", rig.uri, copy], { timeoutMs: 120_000 }),
      );
      const original = await Deno.readFile(image);
      const roundTrip = (await Deno.readFile(copy)).subarray(0, original.length);
      assert.ok(original.every((byte, i) => byte === roundTrip[i]), "nbdcopy round trip matches");
    } finally {
      await stopCleanly(serve);
    }
  });
});

/** Random bytes; getRandomValues fills at most 64 KiB at a time. */
function randomBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let offset = 0; offset < length; offset += 65536) {
    crypto.getRandomValues(bytes.subarray(offset, Math.min(length, offset + 65536)));
  }
  return bytes;
}

/**
 * Third-party NBD clients against `serveNbd`: qemu-io, qemu-img, nbdinfo,
 * nbdsh (libnbd), nbdcopy and fio, over a Unix socket and over TCP.
 *
 * Goal: prove interoperability with the clients people will really use, not
 * just with our own reading of the spec. Method: serve a 64 MiB MemoryDevice,
 * run each client as a subprocess (tests/clients/run_client.ts), check its
 * exit code and parsed output, and check the device's bytes directly. Each
 * client check has a twin that must fail (a wrong pattern, a changed byte, a
 * corrupting device), so the checks are known to bite. The server must log
 * nothing while well-behaved clients use it. Missing clients fail the suite.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { ByteRange, Device } from "../../../mod/device/device.ts";
import { MemoryDevice } from "../../../mod/device/memory_device.ts";
import { type NbdServer, serveNbd } from "../../../mod/export/nbd/server.ts";
import { assertClientOk, describeRun, runClient } from "../../clients/run_client.ts";
import { seededRandom, testSeed } from "./_harness.ts";

const MIB = 1024 * 1024;
const SIZE_BYTES = 64 * MIB;

interface Export {
  server: NbdServer;
  device: Device;
  /** URI of the named export over the Unix socket. */
  uri: string;
  /** URI of the default (empty-name) export over the Unix socket. */
  defaultUri: string;
  unixPath: string;
  dir: string;
  log: string[];
}

/** Serves `device` on a fresh Unix socket (and TCP port 0) for `body`, then cleans up. */
async function withExport(
  body: (running: Export) => Promise<void>,
  device: Device = new MemoryDevice("mem0", SIZE_BYTES),
) {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-clients-" });
  const unixPath = `${dir}/nbd.sock`;
  const log: string[] = [];
  const server = await serveNbd({
    device,
    exportName: "disk0",
    description: "dm-remap test export",
    preferredBlockBytes: 4096,
    unixPath,
    tcp: { hostname: "127.0.0.1", port: 0 },
    log: (line) => log.push(line),
  });
  try {
    await body({
      server,
      device,
      uri: `nbd+unix:///disk0?socket=${unixPath}`,
      defaultUri: `nbd+unix:///?socket=${unixPath}`,
      unixPath,
      dir,
      log,
    });
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
  assert.equal(server.connectionCount, 0);
}

function assertQuiet(log: string[]): void {
  assert.deepEqual(log, [], "the server logged nothing for well-behaved clients");
}

/** A 64 MiB image: random data with zero runs, so copies exercise data and zero paths. */
function sparseRandomImage(seed: number): Uint8Array {
  const random = seededRandom(seed);
  const image = new Uint8Array(SIZE_BYTES);
  const words = new Uint32Array(image.buffer);
  for (let mib = 0; mib < 64; mib++) {
    if (mib % 4 === 3) continue; // Every fourth MiB stays zero.
    const start = (mib * MIB) / 4;
    for (let index = start; index < start + MIB / 4; index++) {
      words[index] = Math.floor(random() * 0x100000000);
    }
  }
  return image;
}

function peek(device: Device, range: ByteRange): Uint8Array {
  return (device as MemoryDevice).peek(range);
}

/** Byte equality in native code: 64 MiB compared in JavaScript would dominate the runtime. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

function filled(lengthBytes: number, value: number): Uint8Array {
  return new Uint8Array(lengthBytes).fill(value);
}

Deno.test("qemu-io writes, verifies patterns, pipelines aio requests, discards and zeroes", async () => {
  await withExport(async ({ defaultUri, device, log }) => {
    const commands = [
      "write -P 0xab 0 1M",
      "read -P 0xab 0 1M",
      ...Array.from(
        { length: 16 },
        (_, index) => `aio_write -P ${index + 1} ${1024 + index * 64}k 64k`,
      ),
      "aio_flush",
      ...Array.from(
        { length: 16 },
        (_, index) => `aio_read -P ${index + 1} ${1024 + index * 64}k 64k`,
      ),
      "aio_flush",
      "write -P 0xcd 4M 1M",
      "discard 2M 1M",
      "write -z 4M 512k",
      "read -P 0 4M 512k",
      "read -P 0xcd 4608k 512k",
      "flush",
      "write -f -P 0x77 8M 64k",
    ];
    const result = await runClient("qemu-io", [
      "-f",
      "raw",
      defaultUri,
      ...commands.flatMap((command) => ["-c", command]),
    ]);
    assertClientOk(result);
    assert.doesNotMatch(
      result.stdout + result.stderr,
      /fail|error/i,
      describeRun(result, "reported a problem"),
    );
    assert.deepEqual(peek(device, { offsetBytes: 0, lengthBytes: MIB }), filled(MIB, 0xab));
    for (let index = 0; index < 16; index++) {
      assert.deepEqual(
        peek(device, { offsetBytes: MIB + index * 65536, lengthBytes: 65536 }),
        filled(65536, index + 1),
      );
    }
    assert.deepEqual(
      peek(device, { offsetBytes: 4 * MIB, lengthBytes: MIB / 2 }),
      filled(MIB / 2, 0),
    );
    assert.deepEqual(
      peek(device, { offsetBytes: 4.5 * MIB, lengthBytes: MIB / 2 }),
      filled(MIB / 2, 0xcd),
    );
    // The FUA write came after the last flush: only FUA can have made it durable.
    const durable = (device as MemoryDevice).crash();
    assert.deepEqual(
      durable.peek({ offsetBytes: 8 * MIB, lengthBytes: 65536 }),
      filled(65536, 0x77),
    );
    assertQuiet(log);
  });
});

Deno.test("qemu-io fails a pattern check against the wrong data (the check bites)", async () => {
  await withExport(async ({ uri }) => {
    const result = await runClient("qemu-io", ["-f", "raw", uri, "-c", "read -P 0xee 0 4k"]);
    assert.notEqual(result.code, 0, describeRun(result, "passed a wrong pattern"));
    assert.match(result.stdout, /Pattern verification failed/);
  });
});

Deno.test("qemu-img info, convert and compare a 64 MiB image through the export", async () => {
  await withExport(async ({ uri, device, dir, log }) => {
    const info = await runClient("qemu-img", ["info", "--output=json", uri]);
    assertClientOk(info);
    assert.equal(JSON.parse(info.stdout)["virtual-size"], SIZE_BYTES);
    const source = `${dir}/source.img`;
    const image = sparseRandomImage(testSeed());
    await Deno.writeFile(source, image);
    assertClientOk(
      await runClient("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", source, uri]),
    );
    assert.ok(
      sameBytes(peek(device, { offsetBytes: 0, lengthBytes: SIZE_BYTES }), image),
      "device holds the image",
    );
    const same = await runClient("qemu-img", ["compare", "-f", "raw", "-F", "raw", source, uri]);
    assertClientOk(same);
    assert.match(same.stdout, /Images are identical/);
    peek(device, { offsetBytes: 40 * MIB + 12345, lengthBytes: 1 })[0]! ^= 0xff;
    const different = await runClient("qemu-img", [
      "compare",
      "-f",
      "raw",
      "-F",
      "raw",
      source,
      uri,
    ]);
    assert.equal(different.code, 1, describeRun(different, "missed a changed byte"));
    assertQuiet(log);
  });
});

Deno.test("nbdinfo --json reports size, flags, block sizes and base:allocation", async () => {
  await withExport(async ({ uri, log }) => {
    const result = await runClient("nbdinfo", ["--json", uri]);
    assertClientOk(result);
    const json = JSON.parse(result.stdout);
    assert.equal(json.protocol, "newstyle-fixed");
    assert.equal(json.structured, true);
    const [info] = json.exports;
    assert.equal(info["export-name"], "disk0");
    assert.equal(info["export-size"], SIZE_BYTES);
    assert.equal(info.description, "dm-remap test export");
    assert.deepEqual(info.contexts, ["base:allocation"]);
    for (
      const flag of [
        "can_flush",
        "can_fua",
        "can_trim",
        "can_zero",
        "can_fast_zero",
        "can_multi_conn",
        "can_cache",
        "can_df",
      ]
    ) {
      assert.equal(info[flag], true, flag);
    }
    assert.equal(info.is_read_only, false);
    assert.equal(info.block_size_minimum, 512);
    assert.equal(info.block_size_preferred, 4096);
    assert.equal(info.block_size_maximum, 32 * MIB);
    assertQuiet(log);
  });
});

Deno.test("nbdinfo --list finds the export through NBD_OPT_LIST and --map reports one data extent", async () => {
  await withExport(async ({ defaultUri, log }) => {
    const list = await runClient("nbdinfo", ["--list", "--json", defaultUri]);
    assertClientOk(list);
    assert.deepEqual(
      JSON.parse(list.stdout).exports.map((each: { "export-name": string }) => each["export-name"]),
      ["disk0"],
    );
    const map = await runClient("nbdinfo", ["--map", "--json", defaultUri]);
    assertClientOk(map);
    assert.deepEqual(JSON.parse(map.stdout), [{
      offset: 0,
      length: SIZE_BYTES,
      type: 0,
      description: "data",
    }]);
    assertQuiet(log);
  });
});

const NBDSH_SCRIPT = `
import nbd
uri = URI
h.add_meta_context("base:allocation")
h.connect_uri(uri)
assert h.get_structured_replies_negotiated()
assert h.can_meta_context("base:allocation")
assert h.can_multi_conn() and h.can_flush() and h.can_fua() and h.can_trim() and h.can_zero()
assert h.can_fast_zero() and h.can_cache() and h.can_df()
size = h.get_size()
assert size == SIZE

h.pwrite(b"\\x5a" * 65536, 0, nbd.CMD_FLAG_FUA)
assert h.pread(65536, 0) == b"\\x5a" * 65536
chunks = []
def on_chunk(subbuf, offset, status, err):
    chunks.append((bytes(subbuf), offset, status))
    return 0
assert h.pread_structured(4096, 0, on_chunk, nbd.CMD_FLAG_DF) == b"\\x5a" * 4096
assert chunks == [(b"\\x5a" * 4096, 0, nbd.READ_DATA)], chunks
h.flush()
h.zero(8192, 4096)
assert h.pread(8192, 4096) == bytes(8192)
h.zero(4096, 16384, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
h.trim(4096, 0)
h.cache(65536, 0)

extents = []
def on_extents(context, offset, entries, err):
    extents.append((context, offset, list(entries)))
h.block_status(1 << 20, 0, on_extents)
assert extents == [("base:allocation", 0, [1 << 20, 0])], extents
extents.clear()
h.block_status(1 << 20, 4096, on_extents, nbd.CMD_FLAG_REQ_ONE)
assert extents == [("base:allocation", 4096, [1 << 20, 0])], extents

def expect_error(action, name):
    try:
        action()
    except nbd.Error as error:
        assert error.errno == name, (error.errno, error.string, name)
        return
    raise AssertionError("expected " + name)

expect_error(lambda: h.zero(4096, 0, nbd.CMD_FLAG_FAST_ZERO), "ENOTSUP")
h.set_strict_mode(0)  # Let libnbd send requests it knows are wrong, to see the server's answer.
expect_error(lambda: h.pread(512, size), "EINVAL")
expect_error(lambda: h.pwrite(b"x" * 512, size), "ENOSPC")
expect_error(lambda: h.pread(100, 0), "EINVAL")
expect_error(lambda: h.pread(512, 100), "EINVAL")
expect_error(lambda: h.trim(512, size), "EINVAL")
assert h.pread(4096, 16384) == bytes(4096)  # Still in sync after the errors.

handles = []
for i in range(8):
    g = nbd.NBD()
    g.connect_uri(uri)
    handles.append(g)
pending = []
for i, g in enumerate(handles):
    for k in range(8):
        pending.append((g, g.aio_pwrite(bytes([i + 1]) * 65536, (1 << 20) + (i * 8 + k) * 65536)))
for g, cookie in pending:
    while not g.aio_command_completed(cookie):
        g.poll(-1)
handles[0].flush()
for i in range(8):
    for k in range(8):
        reader = handles[(i + 3) % 8]
        assert reader.pread(65536, (1 << 20) + (i * 8 + k) * 65536) == bytes([i + 1]) * 65536
for g in handles:
    g.shutdown()
h.shutdown()
print("NBDSH OK")
`;

Deno.test("nbdsh (libnbd) uses structured replies, block status, flush, trim, zero and 8 connections", async () => {
  await withExport(async ({ uri, device, server, log }) => {
    const script = NBDSH_SCRIPT.replace("URI", JSON.stringify(uri)).replace(
      "SIZE",
      String(SIZE_BYTES),
    );
    const result = await runClient("nbdsh", ["-c", "-"], { stdin: script });
    assertClientOk(result);
    assert.match(result.stdout, /NBDSH OK/);
    for (let index = 0; index < 8; index++) {
      const range = { offsetBytes: MIB + index * 8 * 65536, lengthBytes: 8 * 65536 };
      assert.deepEqual(peek(device, range), filled(range.lengthBytes, index + 1));
    }
    assert.ok(server.requestCount > 64 + 64, `${server.requestCount} requests counted`);
    // The deliberately invalid requests are answered with errors, not logged: the connection is fine.
    assertQuiet(log);
  });
});

Deno.test("nbdsh script errors make nbdsh fail (the check bites)", async () => {
  await withExport(async ({ uri }) => {
    const result = await runClient("nbdsh", [
      "-u",
      uri,
      "-c",
      "assert h.pread(512, 0) == b'x' * 512",
    ]);
    assert.notEqual(result.code, 0, describeRun(result, "passed a false assertion"));
  });
});

Deno.test("nbdcopy copies a random image in and out across several connections", async () => {
  await withExport(async ({ uri, device, dir, log }) => {
    const source = `${dir}/in.img`;
    const target = `${dir}/out.img`;
    const image = sparseRandomImage(testSeed());
    await Deno.writeFile(source, image);
    assertClientOk(await runClient("nbdcopy", ["--flush", "--connections=4", source, uri]));
    assert.ok(
      sameBytes(peek(device, { offsetBytes: 0, lengthBytes: SIZE_BYTES }), image),
      "device holds the image",
    );
    assertClientOk(await runClient("nbdcopy", ["--connections=4", uri, target]));
    const copy = await Deno.readFile(target);
    assert.equal(copy.length, SIZE_BYTES);
    assert.ok(sameBytes(copy, image), "the copy out equals the image");
    assertQuiet(log);
  });
});

/** Runs fio's nbd engine with crc32c verification; returns the job's JSON and the run. */
async function runFio(uri: string, cwd: string, sizeMib: number) {
  const result = await runClient("fio", [
    "--name=nbd-verify",
    "--ioengine=nbd",
    `--uri=${uri}`,
    "--rw=randrw",
    "--bs=4k",
    "--iodepth=16",
    "--verify=crc32c",
    "--verify_fatal=1",
    `--size=${sizeMib}M`,
    "--randrepeat=1",
    "--output-format=json",
  ], { cwd, timeoutMs: 60_000 });
  const jsonStart = result.stdout.indexOf("{"); // fio prints "connected to NBD server" first.
  const json = jsonStart >= 0 ? JSON.parse(result.stdout.slice(jsonStart)) : undefined;
  return { result, job: json?.jobs?.[0] };
}

Deno.test("fio's nbd engine runs 4k randrw at iodepth 16 with crc32c verification and no errors", async () => {
  await withExport(async ({ defaultUri, dir, log }) => {
    const { result, job } = await runFio(defaultUri, dir, 32);
    assertClientOk(result);
    assert.ok(job, describeRun(result, "printed no JSON"));
    assert.equal(job.error, 0, describeRun(result, "reported an error"));
    assert.ok(job.write.io_bytes > 0 && job.read.io_bytes > 0, "both reads and writes ran");
    assert.ok(job.read.total_ios >= 32 * 256, "verification read back every block written");
    assert.doesNotMatch(
      result.stderr,
      /verify|bad magic|crc32c/i,
      describeRun(result, "complained"),
    );
    assertQuiet(log);
  });
});

/** A memory device that flips one bit in every read of 4 KiB or less: fio's verification must notice. */
class CorruptingDevice extends MemoryDevice {
  override async read(buffer: Uint8Array, offsetBytes: number): Promise<void> {
    await super.read(buffer, offsetBytes);
    if (buffer.length <= 4096 && buffer.length > 0) buffer[buffer.length - 1]! ^= 1;
  }
}

Deno.test("fio's verification fails against a device that corrupts reads (the check bites)", async () => {
  await withExport(async ({ defaultUri, dir }) => {
    const { result, job } = await runFio(defaultUri, dir, 1);
    assert.ok(
      result.code !== 0 || (job && job.error !== 0),
      describeRun(result, "missed corrupted data"),
    );
  }, new CorruptingDevice("corrupt", SIZE_BYTES));
});

Deno.test("clients work over TCP on 127.0.0.1 with the port picked by port 0", async () => {
  await withExport(async ({ server, device, log }) => {
    assert.ok(server.tcpPort !== undefined && server.tcpPort > 0);
    const uri = `nbd://127.0.0.1:${server.tcpPort}/disk0`;
    const io = await runClient("qemu-io", [
      "-f",
      "raw",
      uri,
      "-c",
      "write -P 0x42 12M 256k",
      "-c",
      "read -P 0x42 12M 256k",
    ]);
    assertClientOk(io);
    assert.deepEqual(
      peek(device, { offsetBytes: 12 * MIB, lengthBytes: 256 * 1024 }),
      filled(256 * 1024, 0x42),
    );
    const info = await runClient("nbdinfo", ["--json", uri]);
    assertClientOk(info);
    assert.equal(JSON.parse(info.stdout).exports[0]["export-size"], SIZE_BYTES);
    assertQuiet(log);
  });
});

/**
 * Hostile input: garbage, random options, truncated and bit-flipped sessions,
 * random requests. Whatever a client sends, only its own connection may end,
 * nothing may be thrown out of the server, and bytes that never formed a
 * complete write must never reach the device.
 *
 * Method: seeded random sessions (print `NBD_TEST_SEED=<seed>` to replay) fed
 * to `serveConnection`, the exact per-connection path of the server, over
 * in-memory pipes; then a smaller batch over a real Unix socket against
 * `serveNbd`, after which a well-behaved client must still be served.
 */

import assert from "node:assert/strict";
import { serveConnection } from "../../../mod/export/nbd/connection.ts";
import { StreamEndedError } from "../../../mod/export/nbd/byte_stream.ts";
import type { NbdExport } from "../../../mod/export/nbd/handshake.ts";
import { NbdProtocolError } from "../../../mod/export/nbd/protocol.ts";
import { serveNbd } from "../../../mod/export/nbd/server.ts";
import {
  concat,
  duplex,
  encodeOption,
  encodeRequest,
  infoData,
  metaContextData,
  negotiate,
  randomBytes,
  ScriptedDevice,
  seededRandom,
  socketClient,
  testSeed,
  u32,
} from "./_harness.ts";

const SIZE_BYTES = 1024 * 1024;
const EXPORT: NbdExport = { name: "disk0", sizeBytes: SIZE_BYTES, preferredBlockBytes: 4096 };
const CASES_PER_KIND = 300;
const CASE_TIME_LIMIT_MS = 2000;

type Random = () => number;

function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

function integer(random: Random, max: number): number {
  return Math.floor(random() * (max + 1));
}

/** Client flags, structured replies, base:allocation, then NBD_OPT_GO: a complete, valid handshake. */
function validHandshake(): Uint8Array {
  return concat(
    u32(0b11),
    encodeOption(8),
    encodeOption(10, metaContextData("disk0", ["base:allocation"])),
    encodeOption(7, infoData("disk0", [3])),
  );
}

/** Pure noise. */
function garbage(random: Random): { bytes: Uint8Array; mayWrite: boolean } {
  return { bytes: randomBytes(random, integer(random, 300)), mayWrite: false };
}

/** Valid client flags, then options with a valid magic but random codes and data. */
function randomOptions(random: Random): { bytes: Uint8Array; mayWrite: boolean } {
  const parts = [u32(pick(random, [0, 1, 3, 0xffffffff]))];
  for (let index = integer(random, 8); index > 0; index--) {
    const code = random() < 0.8 ? integer(random, 12) : Math.floor(random() * 0xffffffff);
    // Never a well-formed NBD_OPT_GO or NBD_OPT_EXPORT_NAME with the right name: every byte
    // after a successful handshake would be a request, and random bytes carry no valid one anyway.
    const data = randomBytes(random, integer(random, 40));
    parts.push(random() < 0.1 ? randomBytes(random, 16) : encodeOption(code, data));
  }
  return { bytes: concat(...parts), mayWrite: false };
}

/**
 * A valid session (handshake, a write, a read, DISC) cut off before the write's
 * payload is complete, with a few bits flipped inside the handshake.
 */
function truncatedSession(random: Random): { bytes: Uint8Array; mayWrite: boolean } {
  const handshake = validHandshake();
  for (let flips = integer(random, 3); flips > 0; flips--) {
    const at = integer(random, handshake.length - 1);
    handshake[at]! ^= 1 << integer(random, 7);
  }
  const write = encodeRequest({
    type: 1,
    cookie: 1,
    offset: 4096,
    payload: randomBytes(random, 4096),
  });
  const session = concat(
    handshake,
    write,
    encodeRequest({ type: 0, cookie: 2, length: 512 }),
    encodeRequest({ type: 2, cookie: 3 }),
  );
  const cut = integer(random, handshake.length + write.length - 1);
  return { bytes: session.subarray(0, cut), mayWrite: false };
}

/** A valid handshake, then requests with a valid magic and random everything else. */
function randomRequests(random: Random): { bytes: Uint8Array; mayWrite: boolean } {
  const parts = [validHandshake()];
  for (let index = integer(random, 10); index > 0; index--) {
    const type = integer(random, 9);
    const offset = pick(random, [
      0,
      512 * integer(random, 2048),
      integer(random, SIZE_BYTES * 2),
      2 ** 63,
    ]);
    const length = pick(random, [0, 512, 4096, integer(random, 70_000), 0xffffffff]);
    const flags = random() < 0.7 ? integer(random, 31) : integer(random, 0xffff);
    const payload = type === 1
      ? randomBytes(random, Math.min(length, integer(random, 5000)))
      : undefined;
    parts.push(
      encodeRequest({ type, flags, cookie: index, offset: BigInt(offset), length, payload }),
    );
    if (random() < 0.05) parts.push(randomBytes(random, integer(random, 30)));
  }
  return { bytes: concat(...parts), mayWrite: true };
}

const KINDS = { garbage, randomOptions, truncatedSession, randomRequests };

async function runCase(
  bytes: Uint8Array,
): Promise<{ outcome: Awaited<ReturnType<typeof serveConnection>>; device: ScriptedDevice }> {
  const pipe = duplex();
  const device = new ScriptedDevice(SIZE_BYTES);
  const served = serveConnection(pipe.server, { export: EXPORT, device });
  // Sent in random-ish pieces would add nothing: the server reads exact sizes either way.
  pipe.client.write(bytes);
  pipe.client.end();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no end within ${CASE_TIME_LIMIT_MS} ms`)),
      CASE_TIME_LIMIT_MS,
    );
  });
  try {
    return { outcome: await Promise.race([served, timeout]), device };
  } finally {
    clearTimeout(timer);
  }
}

for (const [kind, generate] of Object.entries(KINDS)) {
  Deno.test(`serveConnection survives ${CASES_PER_KIND} seeded ${kind} sessions without throwing`, async () => {
    const seed = testSeed();
    const random = seededRandom(seed);
    for (let index = 0; index < CASES_PER_KIND; index++) {
      const { bytes, mayWrite } = generate(random);
      const replay = `replay with NBD_TEST_SEED=${seed} (case ${index} of ${kind})`;
      let result;
      try {
        result = await runCase(bytes);
      } catch (error) {
        throw new Error(`serveConnection threw: ${replay}`, { cause: error });
      }
      const { outcome, device } = result;
      if (outcome.end === "failed") {
        assert.ok(
          outcome.error instanceof NbdProtocolError || outcome.error instanceof StreamEndedError,
          `unexpected ${outcome.error.name}: ${replay}`,
        );
      }
      if (!mayWrite) {
        const changed = device.calls.filter((call) => call.op !== "read" && call.op !== "flush");
        assert.deepEqual(changed, [], `the device was changed: ${replay}`);
      }
    }
  });
}

Deno.test("serveNbd keeps serving after hostile connections over a real socket, and nothing was written", async () => {
  const seed = testSeed();
  const random = seededRandom(seed);
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-nbd-fuzz-" });
  const unixPath = `${dir}/nbd.sock`;
  const device = new ScriptedDevice(SIZE_BYTES);
  const log: string[] = [];
  const server = await serveNbd({
    device,
    exportName: "disk0",
    preferredBlockBytes: 4096,
    unixPath,
    log: (line) => log.push(line),
  });
  try {
    for (let index = 0; index < 40; index++) {
      const { bytes } = pick(random, [garbage, randomOptions, truncatedSession])(random);
      const conn = await Deno.connect({ transport: "unix", path: unixPath });
      try {
        await conn.write(bytes).catch(() => {}); // The server may already have hung up.
        await conn.closeWrite().catch(() => {});
        // Drain until the server closes its side: the connection must end.
        const sink = new Uint8Array(65536);
        while ((await conn.read(sink).catch(() => null)) !== null);
      } finally {
        conn.close();
      }
    }
    const conn = await Deno.connect({ transport: "unix", path: unixPath });
    try {
      const client = socketClient(conn);
      await negotiate(client, { context: true });
      client.write(encodeRequest({ type: 3, cookie: 1 }));
      const chunk = await client.readExact(20);
      assert.equal(
        new DataView(chunk.buffer).getUint32(0),
        0x668e33ef,
        `served after the fuzz (seed ${seed})`,
      );
      client.write(encodeRequest({ type: 2, cookie: 2 }));
    } finally {
      conn.close();
    }
    const changed = device.calls.filter((call) => call.op !== "read" && call.op !== "flush");
    assert.deepEqual(changed, [], `the device was changed (seed ${seed})`);
    assert.ok(log.length > 0, "hostile connections were logged");
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

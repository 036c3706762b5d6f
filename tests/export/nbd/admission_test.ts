/**
 * Connection admission under hostile clients: abandoned handshakes and
 * garbage must not keep an honest client waiting.
 *
 * Goal: a burst of clients that connect and never negotiate (some hang up at
 * once, some after the greeting, some sit) and of clients that send random
 * bytes costs the server next to nothing, so the next honest client is
 * through its handshake within {@link HONEST_HANDSHAKE_MS}, as with nbdkit.
 * Method: a served setup with the data plane on its Unix socket and the event
 * loop on TCP, once its spare worker runs (a worker's start is not
 * admission); each transport takes the same seeded burst, then one client
 * times its connect and NBD_OPT_GO. Fewer clients sit than
 * NBD_CONNECTIONS_MAX, since those count as connections and the ones past
 * the limit are refused by design (server_test.ts); the honest client must
 * find a free place the moment it arrives.
 */

import assert, { deepStrictEqual as assertEquals } from "node:assert/strict";
import { NBD_CONNECTIONS_MAX } from "../../../mod/constants.ts";
import {
  CLIENT_FLAGS,
  concat,
  encodeOption,
  encodeRequest,
  GREETING_BYTES,
  infoData,
  NBD_OPT_GO,
  negotiate,
  randomBytes,
  readOptionReplies,
  readSimpleReply,
  seededRandom,
  socketClient,
  testSeed,
  u32,
} from "./_harness.ts";
import { startServedSetup } from "../../datapath/_setup.ts";

/** How long an honest client's connect and handshake may take after the burst. */
const HONEST_HANDSHAKE_MS = 100;
const ABANDONED_HANDSHAKES = 200;
const GARBAGE_STREAMS = 100;
/**
 * A hostile client gives up waiting for the server after this long, and the
 * honest one's failure is reported after it: a server that fails the test
 * still ends it, with the time measured.
 */
const PATIENCE_MS = 15_000;

type Connect = () => Promise<Deno.Conn>;

/** What hostile clients do after connecting, in turn. */
const ABANDON_STYLES = [
  "hang up",
  "hang up",
  "hang up",
  "read the greeting, hang up",
  "read the greeting, hang up",
  "read the greeting, send flags, hang up",
  "send flags without reading, hang up",
  "sit",
  "read the greeting, sit",
  "hang up",
] as const;

/**
 * Runs the hostile burst: abandoned handshakes and garbage streams, all at
 * once. Returns the connections left sitting and how many connects failed
 * (a hostile client does not care; the server hanging up on one does not
 * count).
 */
async function hostileBurst(connect: Connect, random: () => number) {
  const sitting: Deno.Conn[] = [];
  let failedConnects = 0;
  const connectOrCount = () =>
    patiently(connect()).catch((error) => {
      failedConnects++;
      throw error;
    });
  const abandon = async (style: typeof ABANDON_STYLES[number]) => {
    const conn = await connectOrCount();
    const client = socketClient(conn);
    if (style.startsWith("read the greeting")) {
      await patiently(client.readExact(GREETING_BYTES)).catch(() => {});
    }
    if (style.includes("send flags")) await conn.write(u32(CLIENT_FLAGS));
    if (style.endsWith("sit")) sitting.push(conn);
    else conn.close();
  };
  const garbage = async (index: number) => {
    const conn = await connectOrCount();
    await conn.write(randomBytes(random, 1 + Math.floor(random() * 4096)));
    // Half wait for the server to close on them, half go at once.
    if (index % 2 === 0) await patiently(conn.read(new Uint8Array(64 * 1024))).catch(() => {});
    conn.close();
  };
  const clients = [
    ...Array.from(
      { length: ABANDONED_HANDSHAKES },
      (_, index) => abandon(ABANDON_STYLES[index % ABANDON_STYLES.length]!),
    ),
    ...Array.from({ length: GARBAGE_STREAMS }, (_, index) => garbage(index)),
  ];
  await Promise.allSettled(clients);
  assert(sitting.length < NBD_CONNECTIONS_MAX, "the sitting clients leave room for one more");
  return { sitting, failedConnects };
}

/** Connects and negotiates; returns the milliseconds it took, or how it failed. */
async function honestHandshake(connect: Connect): Promise<{ ms: number; failure?: string }> {
  const startedAt = performance.now();
  let conn: Deno.Conn | undefined;
  try {
    conn = await patiently(connect());
    await patiently(negotiate(socketClient(conn), { exportName: "dp" }));
    return { ms: performance.now() - startedAt };
  } catch (error) {
    return { ms: performance.now() - startedAt, failure: String(error) };
  } finally {
    conn?.close();
  }
}

/** `promise`, or a rejection after PATIENCE_MS. */
async function patiently<T>(promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${PATIENCE_MS} ms`)), PATIENCE_MS);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

for (const transport of ["unix", "tcp"] as const) {
  Deno.test(`admission over ${transport}: after ${ABANDONED_HANDSHAKES} abandoned handshakes and ${GARBAGE_STREAMS} garbage streams, an honest client negotiates within ${HONEST_HANDSHAKE_MS} ms`, async () => {
    await using setup = await startServedSetup({ tcp: true });
    await setup.dataPlane.spareReady();
    const connect: Connect = transport === "unix"
      ? () => Deno.connect({ transport: "unix", path: setup.server.unixPath! })
      : () => Deno.connect({ hostname: "127.0.0.1", port: setup.server.tcpPort! });
    const seed = testSeed();
    const { sitting, failedConnects } = await hostileBurst(connect, seededRandom(seed));
    try {
      const honest = await honestHandshake(connect);
      assert(
        honest.failure === undefined && honest.ms < HONEST_HANDSHAKE_MS,
        `the honest client ${honest.failure ?? "negotiated"} after ${
          honest.ms.toFixed(1)
        } ms (seed ${seed}, ${failedConnects} hostile connects failed)`,
      );
      assertEquals(failedConnects, 0, "the listen backlog took the whole burst");
    } finally {
      for (const conn of sitting) conn.close();
    }
  });
}

Deno.test("admission: a request sent right behind NBD_OPT_GO, before its reply was read, is answered", async () => {
  await using setup = await startServedSetup();
  const conn = await Deno.connect({ transport: "unix", path: setup.server.unixPath! });
  try {
    const client = socketClient(conn);
    await client.readExact(GREETING_BYTES);
    client.write(concat(
      u32(CLIENT_FLAGS),
      encodeOption(NBD_OPT_GO, infoData("dp")),
      encodeRequest({ type: 3, cookie: 7 }), // NBD_CMD_FLUSH
    ));
    assertEquals((await readOptionReplies(client)).at(-1)!.type, 1, "NBD_OPT_GO acknowledged");
    assertEquals(await readSimpleReply(client), { error: 0, cookie: 7n });
  } finally {
    conn.close();
  }
});

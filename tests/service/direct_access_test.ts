/**
 * SetupService: when the NBD data plane's workers serve the Unix socket.
 *
 * Goal: workers serve it exactly when every disk offers direct access
 * (`Device.directAccess`), whatever wraps the disk; serving code never looks
 * at which wrapper it is. Method: rows of a setup on files whose main disk is
 * under one fault layer or a wrapper serving code does not know (both pass
 * access on) or under two fault layers (which offer none); one read over the
 * socket; the engine's read counter tells whether a worker served it (0) or
 * the engine did (1).
 *
 * @module
 */

import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { openSpares } from "../../mod/assembly/assemble.ts";
import { createSetup } from "../../mod/assembly/create.ts";
import { SetupService } from "../../mod/service/setup_service.ts";
import type { Device } from "../../mod/device/device.ts";
import { type FileDevice, openFileDevice } from "../../mod/device/file_device.ts";
import { FaultyDevice } from "../../mod/fault/faulty_device.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import { WORKER_URL } from "../datapath/_setup.ts";
import { encodeRequest, negotiate, readSimpleReply, socketClient } from "../export/nbd/_harness.ts";

const BLOCK_BYTES = 4096;

/** A wrapper serving code has never heard of: it passes everything on, direct access included. */
function passThrough(next: Device): Device {
  return {
    name: next.name,
    sizeBytes: next.sizeBytes,
    read: (buffer, offsetBytes) => next.read(buffer, offsetBytes),
    write: (data, offsetBytes, options) => next.write(data, offsetBytes, options),
    flush: () => next.flush(),
    discard: (range) => next.discard(range),
    writeZeroes: (range, options) => next.writeZeroes(range, options),
    close: () => next.close(),
    directAccess: () => next.directAccess?.(),
  };
}

const ROWS: { main: string; wrap: (file: FileDevice) => Device; engineReads: number }[] = [
  { main: "a fault layer over a file", wrap: (file) => new FaultyDevice(file), engineReads: 0 },
  { main: "an unknown wrapper over a file", wrap: passThrough, engineReads: 0 },
  {
    main: "two fault layers over a file (no direct access)",
    wrap: (file) => new FaultyDevice(new FaultyDevice(file)),
    engineReads: 1,
  },
];

for (const row of ROWS) {
  Deno.test(`SetupService with ${row.main} as the main disk: a read is served by ${row.engineReads ? "the engine" : "a worker"}`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "dm-remap-serving-" });
    try {
      const mainPath = `${dir}/main.img`;
      const sparePath = `${dir}/spare.img`;
      await Deno.writeFile(mainPath, new Uint8Array(0));
      await Deno.truncate(mainPath, 16 * 1024 * 1024);
      await Deno.writeFile(sparePath, new Uint8Array(0));
      await Deno.truncate(sparePath, minimumSpareBytes(BLOCK_BYTES) + 64 * BLOCK_BYTES);
      const file = await openFileDevice(mainPath);
      const spare = await openFileDevice(sparePath);
      const main = {
        device: row.wrap(file),
        identity: { path: mainPath, kind: "file" as const, sizeBytes: file.sizeBytes },
      };
      await createSetup({
        name: "served",
        main,
        spares: [{ device: spare, path: sparePath }],
        blockBytes: BLOCK_BYTES,
      });
      const serving = new SetupService({ main, spares: await openSpares([spare]) }, {
        settings: {
          nbd: { exportName: "served", unixPath: `${dir}/nbd.sock`, workerUrl: WORKER_URL },
          api: { unixPath: `${dir}/api.sock` },
          eventsPath: `${dir}/events.sqlite`,
        },
        log: () => {},
      });
      await serving.start();
      try {
        const conn = await Deno.connect({ transport: "unix", path: `${dir}/nbd.sock` });
        try {
          const client = socketClient(conn);
          await negotiate(client, { exportName: "served" });
          client.write(encodeRequest({ type: 0, cookie: 1, offset: 0, length: BLOCK_BYTES }));
          assertEquals(await readSimpleReply(client), { error: 0, cookie: 1n });
          assertEquals(await client.readExact(BLOCK_BYTES), new Uint8Array(BLOCK_BYTES));
        } finally {
          conn.close();
        }
        assertEquals(serving.engine.counters.reads, row.engineReads);
      } finally {
        await serving.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

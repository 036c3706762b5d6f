/**
 * SetupService: one running setup with one lifecycle. A setup is created on
 * files in a temporary directory and served on Unix sockets and a TCP port;
 * the tests check what a start takes (sockets, the serving marker, history
 * rows), that stop gives all of it back and marks the setup clean, and that
 * a start failing half-way gives back what it had taken.
 */

import assert from "node:assert/strict";
import { fetchStatus } from "../../mod/api/client.ts";
import { COPY_SECTORS } from "../../mod/constants.ts";
import { startWebhookReceiver } from "../alerts/receivers.ts";
import { ApiListenError } from "../../mod/api/http_server.ts";
import { openSpares } from "../../mod/assembly/assemble.ts";
import { createSetup } from "../../mod/assembly/create.ts";
import { openFileDevice } from "../../mod/device/file_device.ts";
import { EventHistory } from "../../mod/events/event_history.ts";
import type { SetupEvent } from "../../mod/events/setup_event.ts";
import { FaultyDevice } from "../../mod/fault/faulty_device.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import { type SetupDisks, SetupService } from "../../mod/service/setup_service.ts";
import type { ServiceSettings } from "../../mod/service/settings.ts";
import {
  listRuntimeStates,
  requestDetach,
  runtimeStatePath,
  writeRuntimeState,
} from "../../mod/service/runtime_state.ts";

const BLOCK_BYTES = 4096;
/** A main-disk block whose writes fail, so writing it makes a remap. */
const BAD_BLOCK = 5;
const WORKER_URL = new URL("../../mod/export/nbd/worker_entry.ts", import.meta.url);

/** A setup "svc" on files in `dir`, created once. */
async function createFiles(dir: string): Promise<void> {
  await Deno.truncate(await touch(`${dir}/main.img`), 16 * 1024 * 1024);
  await Deno.truncate(
    await touch(`${dir}/spare.img`),
    minimumSpareBytes(BLOCK_BYTES) + 64 * BLOCK_BYTES,
  );
  const main = await openFileDevice(`${dir}/main.img`, { direct: false });
  const spare = await openFileDevice(`${dir}/spare.img`, { direct: false });
  await createSetup({
    name: "svc",
    main: { device: main, identity: identityOf(dir, main.sizeBytes) },
    spares: [{ device: spare, path: `${dir}/spare.img` }],
    blockBytes: BLOCK_BYTES,
  });
  await main.close();
  await spare.close();
}

async function touch(path: string): Promise<string> {
  await Deno.writeFile(path, new Uint8Array(0));
  return path;
}

function identityOf(dir: string, sizeBytes: number) {
  return { path: `${dir}/main.img`, kind: "file" as const, sizeBytes };
}

/** The setup's disks opened as `serve` opens them, with writes to {@link BAD_BLOCK} failing. */
async function openDisks(dir: string): Promise<SetupDisks> {
  const main = await openFileDevice(`${dir}/main.img`, { direct: false });
  const spare = await openFileDevice(`${dir}/spare.img`, { direct: false });
  const faulty = new FaultyDevice(main, { blockBytes: BLOCK_BYTES, badBlocks: [BAD_BLOCK] });
  return {
    main: { device: faulty, identity: identityOf(dir, main.sizeBytes) },
    spares: await openSpares([spare]),
  };
}

function settingsIn(dir: string, overrides: Partial<ServiceSettings> = {}): ServiceSettings {
  return {
    nbd: {
      exportName: "svc",
      unixPath: `${dir}/run/nbd.sock`,
      tcp: { hostname: "127.0.0.1", port: 0 },
      workerUrl: WORKER_URL,
    },
    api: { unixPath: `${dir}/run/api.sock` },
    eventsPath: `${dir}/state/events.sqlite`,
    // These tests are not about the scanner (tests/scan is); it would read and write on its own.
    scan: { enabled: false },
    ...overrides,
  };
}

/** Who serves the setup, as its spare's metadata says now. */
async function servingMarkerPid(dir: string): Promise<number | undefined> {
  const spare = await openFileDevice(`${dir}/spare.img`, { direct: false, readOnly: true });
  try {
    return (await openSpares([spare], { repair: false })).description.setup.serving?.pid;
  } finally {
    await spare.close();
  }
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/** A TCP port that nothing listens on now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  listener.close();
  return (listener.addr as Deno.NetAddr).port;
}

/** Whether the port can be bound, i.e. no server holds it. */
function portIsFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("SetupService.start() serves the setup; stop() releases the sockets and marks it clean", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-service-" });
  try {
    await createFiles(dir);
    const settings = settingsIn(dir);
    const port = freePort();
    settings.nbd.tcp = { hostname: "127.0.0.1", port };
    const service = new SetupService(await openDisks(dir), { settings, log: () => {} });
    await service.start();
    assert.deepEqual(service.nbdAddresses, [
      `nbd+unix:///svc?socket=${dir}/run/nbd.sock`,
      `nbd://127.0.0.1:${port}/svc`,
    ]);
    assert.deepEqual(service.apiAddresses, [`${dir}/run/api.sock`]);
    assert.equal((await fetchStatus(`${dir}/run/api.sock`)).setup.name, "svc");
    assert.equal(await servingMarkerPid(dir), Deno.pid);
    assert.equal(portIsFree(port), false);

    await service.stop();
    assert.equal(await exists(`${dir}/run/nbd.sock`), false);
    assert.equal(await exists(`${dir}/run/api.sock`), false);
    assert.equal(portIsFree(port), true);
    assert.equal(await servingMarkerPid(dir), undefined);
    await service.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SetupService publishes typed events to subscribers, the log, the status API and the history", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-service-" });
  try {
    await createFiles(dir);
    const log: string[] = [];
    const service = new SetupService(await openDisks(dir), {
      // No scan pass: its events would interleave with the ones under test.
      settings: settingsIn(dir),
      log: (line) => log.push(line),
      journal: false,
    });
    const seen: SetupEvent[] = [];
    service.events.subscribe((event) => seen.push(event));
    await service.start();
    await service.engine.write(new Uint8Array(BLOCK_BYTES), BAD_BLOCK * BLOCK_BYTES, { fua: true });
    const counted = (await fetchStatus(`${dir}/run/api.sock`)).events;
    await service.stop();

    assert.deepEqual(seen.map((event) => event.type), ["started", "remap", "stopped"]);
    assert.deepEqual(seen[1], {
      type: "remap",
      blockIndex: BAD_BLOCK,
      spareIndex: 0,
      slotIndex: 0,
    });
    // One structured line per event, the setup's name in each.
    assert.deepEqual(log, [
      "level=info setup=svc event=started remaps=0 pending=0 size_bytes=16777216 " +
      'msg="serving 16777216 bytes with 0 remaps, 0 pending"',
      `level=notice setup=svc event=remap block=${BAD_BLOCK} spare=0 slot=0 ` +
      `msg="remapped block ${BAD_BLOCK} to spare 0 slot 0"`,
      'level=info setup=svc event=stopped remaps=1 msg="stopped cleanly with 1 remaps"',
    ]);
    assert.deepEqual(
      [counted.started, counted.remap, counted.stopped, counted.pending],
      [1, 1, 0, 0],
      "the status API counted the events before the stop",
    );
    const history = EventHistory.open(`${dir}/state/events.sqlite`);
    const stored = history.recent(10).reverse().map(({ id: _, timeMs: __, ...event }) => event);
    history.close();
    assert.deepEqual(stored, [
      { type: "started", message: "serving 16777216 bytes with 0 remaps, 0 pending" },
      {
        type: "remap",
        message: `remapped block ${BAD_BLOCK} to spare 0 slot 0`,
        blockIndex: BAD_BLOCK,
        spareIndex: 0,
        slotIndex: 0,
      },
      { type: "stopped", message: "stopped cleanly with 1 remaps" },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SetupService.start() that fails half-way releases what it took and marks nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-service-" });
  try {
    await createFiles(dir);
    // Someone's file where the API socket goes: the API is refused after the NBD export started.
    await Deno.mkdir(`${dir}/run`);
    await Deno.writeTextFile(`${dir}/run/api.sock`, "not a socket");
    const port = freePort();
    const settings = settingsIn(dir);
    settings.nbd.tcp = { hostname: "127.0.0.1", port };
    const service = new SetupService(await openDisks(dir), { settings, log: () => {} });
    await assert.rejects(service.start(), ApiListenError);
    assert.equal(await exists(`${dir}/run/nbd.sock`), false);
    assert.equal(portIsFree(port), true);
    assert.equal(await servingMarkerPid(dir), undefined);
    assert.equal(await Deno.readTextFile(`${dir}/run/api.sock`), "not a socket");
    await service.stop();

    // Everything was given back: the same addresses serve the setup again.
    await Deno.remove(`${dir}/run/api.sock`);
    const again = new SetupService(await openDisks(dir), { settings, log: () => {} });
    await again.start();
    await again.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SetupService records itself under the runtime directory while it serves, and removes the record at stop", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-service-" });
  try {
    await createFiles(dir);
    const runtimeDir = `${dir}/runtime`;
    const service = new SetupService(await openDisks(dir), {
      settings: settingsIn(dir, { runtimeDir }),
      log: () => {},
    });
    await service.start();
    const uuid = service.status().setup.uuid;
    const [entry, ...others] = await listRuntimeStates(runtimeDir);
    assert.deepEqual(others, []);
    assert.equal(entry?.path, runtimeStatePath(runtimeDir, uuid));
    assert.equal(entry.alive, true);
    const { process, ...recorded } = entry.state;
    assert.equal(process.pid, Deno.pid);
    assert.ok(process.processStartTicks > 0, "the start ticks tell a reused PID apart");
    assert.deepEqual(recorded, {
      version: 1,
      name: "svc",
      uuid,
      main: `${dir}/main.img`,
      spares: [`${dir}/spare.img`],
      nbd: service.nbdAddresses,
      api: service.apiAddresses,
    });

    // The kernel device's entry is checked where a kernel attaches one: tests/vm, vm 8.
    assert.equal(entry.state.kernelDevice, undefined, "no kernel device without --attach");
    assert.equal(await service.stopRequest(), "restart", "a plain SIGTERM is a restart");
    await requestDetach(runtimeDir, {
      ...entry.state,
      process: { ...process, pid: process.pid + 1 },
    });
    assert.equal(
      await service.stopRequest(),
      "restart",
      "a request for another process is not ours",
    );
    await requestDetach(runtimeDir, entry.state);
    assert.equal(await service.stopRequest(), "detach", "dm-remap stop asked this process");

    await service.stop();
    assert.deepEqual(await listRuntimeStates(runtimeDir), []);
    assert.deepEqual(
      [...Deno.readDirSync(`${runtimeDir}/setups`)],
      [],
      "the stop request went too",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("listRuntimeStates() marks the record of a server that is gone as stale", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-runtime-" });
  try {
    const child = new Deno.Command("true").spawn();
    await child.status;
    const process = {
      pid: child.pid,
      host: Deno.hostname(),
      bootId: Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim(),
      processStartTicks: 1,
      startedMs: Date.now(),
    };
    const state = {
      version: 1 as const,
      process,
      name: "gone",
      uuid: "00000000-0000-4000-8000-000000000001",
      main: "/dev/sda",
      spares: ["/dev/sdb"],
      nbd: [],
      api: [],
    };
    await writeRuntimeState(dir, state);
    await Deno.writeTextFile(`${dir}/setups/garbage.json`, "{ not json");
    const entries = await listRuntimeStates(dir);
    assert.deepEqual(entries.map((entry) => [entry.state.name, entry.alive]), [["gone", false]]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SetupService alerts what the open repaired, each remap, a spare nearly full and a policy, and lists the policy", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-service-" });
  await using receiver = startWebhookReceiver();
  try {
    await createFiles(dir);
    // Copy 1 of the spare's metadata is torn: the open rewrites it.
    const spare = await Deno.open(`${dir}/spare.img`, { write: true });
    await spare.seek(COPY_SECTORS[1]! * 512, Deno.SeekMode.Start);
    await spare.write(new Uint8Array(512).fill(0xff));
    spare.close();
    const service = new SetupService(await openDisks(dir), {
      settings: settingsIn(dir, {
        alerts: {
          spareNearlyFullPercent: 1,
          targets: [{
            name: "receiver",
            destination: { webhook: receiver.url },
            kinds: [],
            timeoutMs: 2_000,
            retries: 0,
            backoffMs: 10,
            ratePerMinute: 100,
            repeatIntervalMs: 0,
          }],
        },
        policies: {
          rules: [{ name: "filling", when: { spareUsedPercentAtLeast: 1 }, then: ["alert"] }],
          intervalMs: 60_000,
        },
      }),
      log: () => {},
      journal: false,
    });
    await service.start();
    assert.deepEqual(service.status().policies.map((p) => [p.name, p.holds]), [["filling", false]]);
    await service.engine.write(new Uint8Array(BLOCK_BYTES), BAD_BLOCK * BLOCK_BYTES, { fua: true });
    const bodies = await receiver.received(5);
    const policy = service.status().policies[0]!;
    assert.deepEqual([policy.holds, policy.actions, policy.trigger], [true, ["alert"], "remap"]);
    // The receiver has the body a moment before the sender has its answer.
    while (service.status().alerts[0]!.sent < 5) await new Promise((ok) => setTimeout(ok, 10));
    assert.deepEqual(service.status().alerts, [
      { name: "receiver", sent: 5, failed: 0, dropped: 0, suppressed: 0 },
    ]);
    await service.stop();
    assert.deepEqual(bodies.map((body) => body.kind), [
      "metadata-repaired",
      "started",
      "remap",
      "spare-nearly-full",
      "policy",
      "stopped",
    ]);
    assert.equal(bodies[0]!.device, `${dir}/spare.img`);
    assert.equal(bodies[0]!.details, "metadata copies 1 of spare 0 were rewritten at open");
    assert.match(bodies[3]!.details, /^spare 0 is 1\.\d% used \(1 of \d+ slots; threshold 1%\)$/);
    assert.match(bodies[4]!.details, /^policy "filling" holds: fullest active spare 1\.\d% used/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

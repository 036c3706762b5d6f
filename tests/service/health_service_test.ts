/**
 * The health components of a served setup, end to end through the status
 * API and /metrics: the metadata scrub runs on start and again on its
 * interval (a copy corrupted on the spare file while serving is repaired
 * without anyone asking), SMART shows the image files as disks without
 * SMART (and is absent with `--no-smart`), and the spare-pool forecast
 * turns from "no trend" into a date once remaps happen.
 */

import assert from "node:assert/strict";
import { fetchHealthReport, fetchStatus } from "../../mod/api/client.ts";
import { formatHealth } from "../../mod/cli/commands/health.ts";
import type { SmartReading } from "../../mod/health/smart_report.ts";
import { openSpares } from "../../mod/assembly/assemble.ts";
import { createSetup } from "../../mod/assembly/create.ts";
import { COPY_SECTORS, SECTOR_BYTES } from "../../mod/constants.ts";
import { openFileDevice } from "../../mod/device/file_device.ts";
import type { SetupEvent } from "../../mod/events/setup_event.ts";
import { FaultyDevice } from "../../mod/fault/faulty_device.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import { type SetupDisks, SetupService } from "../../mod/service/setup_service.ts";
import type { ServiceSettings } from "../../mod/service/settings.ts";

const BLOCK_BYTES = 4096;
/** Main-disk blocks whose writes fail, so writing them makes remaps. */
const BAD_BLOCKS = [5, 6, 7];
const WORKER_URL = new URL("../../mod/export/nbd/worker_entry.ts", import.meta.url);

async function createFiles(dir: string): Promise<void> {
  await Deno.writeFile(`${dir}/main.img`, new Uint8Array(0));
  await Deno.truncate(`${dir}/main.img`, 16 * 1024 * 1024);
  await Deno.writeFile(`${dir}/spare.img`, new Uint8Array(0));
  await Deno.truncate(`${dir}/spare.img`, minimumSpareBytes(BLOCK_BYTES) + 64 * BLOCK_BYTES);
  const main = await openFileDevice(`${dir}/main.img`, { direct: false });
  const spare = await openFileDevice(`${dir}/spare.img`, { direct: false });
  await createSetup({
    name: "health",
    main: { device: main, identity: identityOf(dir, main.sizeBytes) },
    spares: [{ device: spare, path: `${dir}/spare.img` }],
    blockBytes: BLOCK_BYTES,
  });
  await main.close();
  await spare.close();
}

function identityOf(dir: string, sizeBytes: number) {
  return { path: `${dir}/main.img`, kind: "file" as const, sizeBytes };
}

async function openDisks(dir: string): Promise<SetupDisks> {
  const main = await openFileDevice(`${dir}/main.img`, { direct: false });
  const spare = await openFileDevice(`${dir}/spare.img`, { direct: false });
  const faulty = new FaultyDevice(main, { blockBytes: BLOCK_BYTES, badBlocks: BAD_BLOCKS });
  return {
    main: { device: faulty, identity: identityOf(dir, main.sizeBytes) },
    spares: await openSpares([spare]),
  };
}

function settingsIn(dir: string, overrides: Partial<ServiceSettings> = {}): ServiceSettings {
  return {
    nbd: { exportName: "health", unixPath: `${dir}/run/nbd.sock`, workerUrl: WORKER_URL },
    api: { unixPath: `${dir}/run/api.sock`, tcp: { hostname: "127.0.0.1", port: 0 } },
    eventsPath: `${dir}/state/events.sqlite`,
    // These tests are not about the scanner (tests/scan is); it would read and write on its own.
    scan: { enabled: false },
    ...overrides,
  };
}

async function withService(
  overrides: Partial<ServiceSettings>,
  body: (service: SetupService, dir: string, events: SetupEvent[]) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dm-remap-health-" });
  try {
    await createFiles(dir);
    const service = new SetupService(await openDisks(dir), {
      settings: settingsIn(dir, overrides),
      log: () => {},
    });
    const events: SetupEvent[] = [];
    service.events.subscribe((event) => events.push(event));
    await service.start();
    try {
      await body(service, dir, events);
    } finally {
      await service.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function metricsOf(service: SetupService): Promise<string> {
  const url = service.apiAddresses.find((address) => address.startsWith("http"));
  assert.ok(url, "the API listens on TCP");
  return await (await fetch(new URL("metrics", url.endsWith("/") ? url : `${url}/`))).text();
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!condition()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

Deno.test("serve: a metadata copy corrupted while serving is repaired by the periodic scrub", async () => {
  await withService({ scrub: { intervalMs: 1_000 } }, async (service, dir, events) => {
    const api = `${dir}/run/api.sock`;
    const before = (await fetchStatus(api)).health;
    assert.ok(before);
    assert.equal(before.scrub.passes, 1, "the scrub on open ran before serving");
    assert.equal(before.scrub.spares[0]!.state, "ok");

    // Another process's view of the spare file: copy 2 overwritten under the server.
    const file = await Deno.open(`${dir}/spare.img`, { write: true });
    await file.seek(COPY_SECTORS[2]! * SECTOR_BYTES, Deno.SeekMode.Start);
    await file.write(new Uint8Array(SECTOR_BYTES).fill(0x77));
    file.close();

    await until(() => events.some((event) => event.type === "metadata-repaired"), "the repair");
    const repaired = events.find((event) => event.type === "metadata-repaired")!;
    assert.equal(repaired.type === "metadata-repaired" && repaired.spareIndex, 0);
    assert.match(
      repaired.type === "metadata-repaired" ? repaired.repairs[0]! : "",
      /^copy 2: .*: rewritten$/,
    );
    const after = (await fetchStatus(api)).health!;
    assert.equal(after.scrub.spares[0]!.repairsTotal, 1);
    assert.ok(after.scrub.passes >= 2);
    const metrics = await metricsOf(service);
    assert.match(metrics, /^dm_remap_metadata_scrub_repairs_total\{setup="health",spare="0"\} 1$/m);
    assert.match(metrics, /^dm_remap_metadata_scrub_degraded\{setup="health",spare="0"\} 0$/m);
  });
});

Deno.test("serve: SMART shows image files as disks without SMART, quietly", async () => {
  await withService({ smart: { intervalMs: 60_000 } }, async (service, dir, events) => {
    const api = `${dir}/run/api.sock`;
    await until(() => (service.status().health?.smart?.rounds ?? 0) >= 1, "the first reading");
    const smart = (await fetchStatus(api)).health!.smart!;
    assert.equal(smart.intervalMs, 60_000);
    assert.deepEqual(smart.disks.map((disk) => [disk.role, disk.reading?.state]), [
      ["main", "no-smart"],
      ["spare 0", "no-smart"],
    ]);
    assert.deepEqual(events.filter((event) => event.type === "smart-risk-raised"), []);
    const metrics = await metricsOf(service);
    assert.match(
      metrics,
      /^dm_remap_smart_available\{setup="health",disk="[^"]+main.img",role="main"\} 0$/m,
    );
    assert.match(
      metrics,
      /^dm_remap_smart_risk_level\{setup="health",disk="[^"]+spare.img",role="spare 0"\} 0$/m,
    );
  });
  await withService({ smart: false }, async (_service, dir) => {
    assert.equal((await fetchStatus(`${dir}/run/api.sock`)).health!.smart, null);
  });
});

Deno.test("serve: the spare-pool forecast turns from no trend into a date once remaps happen", async () => {
  await withService({ smart: false }, async (service, dir) => {
    const api = `${dir}/run/api.sock`;
    const quiet = (await fetchStatus(api)).health!.forecast;
    assert.equal(quiet.state, "no-trend");
    assert.match(
      await metricsOf(service),
      /^dm_remap_spare_pool_seconds_left\{setup="health",bound="expected"\} \+Inf$/m,
    );
    for (const blockIndex of BAD_BLOCKS) {
      await service.engine.write(new Uint8Array(BLOCK_BYTES), blockIndex * BLOCK_BYTES, {
        fua: true,
      });
    }
    const forecast = (await fetchStatus(api)).health!.forecast;
    assert.equal(forecast.state, "forecast");
    const slots = service.engine.spares[0]!.layout.slotCount;
    assert.equal(forecast.slotsFree, slots - BAD_BLOCKS.length);
    assert.ok(forecast.reasons[0]!.startsWith("3 new remaps in the last "), forecast.reasons[0]);
    assert.ok(forecast.daysLeft !== undefined && forecast.daysLeft.expected >= 0);
    assert.match(
      await metricsOf(service),
      /^dm_remap_spare_pool_seconds_left\{setup="health",bound="expected"\} \d+$/m,
    );
  });
});

/** A SATA disk's reading whose reallocated sectors are `reallocated`. */
function sataReading(path: string, reallocated: number): SmartReading {
  return {
    state: "ok",
    device: path,
    protocol: "ata",
    kind: "hdd",
    model: "TEST DISK",
    serial: "TEST-0001",
    passed: true,
    temperatureC: 31,
    powerOnHours: 1000,
    counters: { reallocatedSectors: reallocated },
    attributes: [],
    failingAttributes: [],
    selfTests: [],
    timeMs: Date.now(),
  };
}

Deno.test("serve: the health report shows SMART and the forecast; rising SMART counts raise the risk and start an early pass", async () => {
  // The main disk's reallocated sectors rise at every reading; the spare has no SMART.
  let mainReads = 0;
  const read = (path: string): Promise<SmartReading> => {
    if (!path.endsWith("main.img")) {
      return Promise.resolve({ state: "no-smart", device: path, reason: "a file", timeMs: 0 });
    }
    mainReads++;
    return Promise.resolve(sataReading(path, mainReads));
  };
  await withService(
    // The schedule is off: only the SMART rise can start a pass.
    { smart: { intervalMs: 1_000, read, disksUnder: (path) => Promise.resolve([path]) } },
    async (_service, dir, events) => {
      const api = `${dir}/run/api.sock`;
      await until(
        () => events.some((event) => event.type === "smart-risk-raised"),
        "a SMART rise",
      );
      let report = await fetchHealthReport(api);
      const deadline = Date.now() + 15_000;
      // With the schedule off, only the early pass can be running or done.
      while (report.scan.passStartedMs === undefined && report.scan.passesCompleted < 1) {
        assert.ok(Date.now() < deadline, `no early pass: ${JSON.stringify(report.scan)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        report = await fetchHealthReport(api);
      }
      // The first reading alone raises the level (no previous one to rise from); wait for a rise.
      while ((report.setup.inputs.smart?.rising.length ?? 0) === 0) {
        assert.ok(Date.now() < deadline, `no rise: ${JSON.stringify(report.setup.inputs.smart)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        report = await fetchHealthReport(api);
      }
      assert.equal(report.scan.settings.enabled, false, JSON.stringify(report.scan));
      assert.ok(report.smart, "SMART is in the report");
      const main = report.smart.find((disk) => disk.role === "main")!;
      const spare = report.smart.find((disk) => disk.role === "spare 0")!;
      assert.equal(main.reading?.state, "ok", JSON.stringify(report.smart));
      assert.equal(spare.reading?.state, "no-smart", JSON.stringify(report.smart));
      // Reallocated sectors are a media counter: the risk is at least high, one up while they rise.
      const smart = report.setup.inputs.smart!;
      assert.ok(smart.path.endsWith("main.img"));
      assert.ok(smart.reasons.length > 0, JSON.stringify(smart));
      assert.ok(["high", "critical"].includes(report.setup.risk), report.setup.risk);
      assert.ok(report.forecast, "the forecast is in the report");
      assert.equal(typeof report.forecast.summary, "string");
      const text = formatHealth("health", report);
      assert.match(
        text,
        /SMART:\n {2}main \S+main\.img: TEST DISK, passed, 31 °C, 1000 h; risk \w+/,
      );
      assert.match(text, /spare 0 \S+spare\.img: no SMART \(a file\)/);
      assert.match(text, /Prediction: /);
    },
  );
});

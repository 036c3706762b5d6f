/**
 * parseSmartctlJson(): real `smartctl --json -a` outputs of each disk kind
 * (tests/health/fixtures/README.md says where each came from) reduce to the
 * counters, temperature, self-tests and verdict the risk rules read; a device
 * without SMART gives smartctl's own reason, not an error.
 */

import assert from "node:assert/strict";
import { parseSmartctlJson, type SmartOk } from "../../mod/health/smart_report.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);

async function parseFixture(name: string) {
  const json = JSON.parse(await Deno.readTextFile(new URL(name, FIXTURES)));
  return parseSmartctlJson(json, { device: "/dev/test", timeMs: 1_000 });
}

async function parseOk(name: string): Promise<SmartOk> {
  const reading = await parseFixture(name);
  assert.equal(reading.state, "ok", JSON.stringify(reading));
  return reading as SmartOk;
}

Deno.test("parseSmartctlJson() reads a SATA HDD with reallocated, pending and uncorrectable sectors", async () => {
  const reading = await parseOk("sata_hdd_seagate_reallocated.json");
  assert.equal(reading.protocol, "ata");
  assert.equal(reading.kind, "hdd");
  assert.equal(reading.model, "ST33000650NS");
  assert.equal(reading.serial, "Z295RVX4");
  assert.equal(reading.passed, true);
  assert.equal(reading.temperatureC, 36);
  assert.equal(reading.powerOnHours, 20836);
  assert.deepEqual(reading.counters, {
    reallocatedSectors: 3,
    reportedUncorrectable: 2,
    commandTimeouts: 1228379455780,
    pendingSectors: 1,
    offlineUncorrectable: 1,
    crcErrors: 0,
  });
  assert.deepEqual(reading.attributes.map((attribute) => attribute.id), [
    5,
    187,
    188,
    197,
    198,
    199,
  ]);
  // 190 failed in the past, not now: not a failing attribute.
  assert.deepEqual(reading.failingAttributes, []);
  assert.deepEqual(reading.selfTests, []);
});

Deno.test("parseSmartctlJson() reads qemu's emulated IDE disk (SATA HDD, through SAT)", async () => {
  const reading = await parseOk("sata_hdd_qemu_ide.json");
  assert.equal(reading.kind, "hdd");
  assert.equal(reading.model, "QEMU HARDDISK");
  assert.equal(reading.serial, "QM-HDD-0001");
  assert.equal(reading.passed, true);
  assert.equal(reading.temperatureC, 31);
  assert.deepEqual(reading.counters, { reallocatedSectors: 0 });
});

Deno.test("parseSmartctlJson() reads qemu's AHCI disk with rotation_rate=1 as an SSD", async () => {
  const reading = await parseOk("sata_ssd_qemu_ahci.json");
  assert.equal(reading.kind, "ssd");
  assert.equal(reading.serial, "QM-SSD-0001");
  assert.deepEqual(reading.counters, { reallocatedSectors: 0 });
});

Deno.test("parseSmartctlJson() reads an NVMe disk's media errors and percentage used", async () => {
  const reading = await parseOk("nvme_qemu.json");
  assert.equal(reading.protocol, "nvme");
  assert.equal(reading.kind, "nvme");
  assert.equal(reading.serial, "QM-NVME-0001");
  assert.equal(reading.temperatureC, 50);
  assert.deepEqual(reading.counters, {
    mediaErrors: 0,
    percentageUsed: 0,
    availableSparePercent: 0,
    availableSpareThresholdPercent: 0,
    criticalWarning: 0,
  });
  assert.deepEqual(reading.attributes, []);
});

Deno.test("parseSmartctlJson() gives a virtio disk no SMART, with smartctl's reason", async () => {
  const reading = await parseFixture("no_smart_virtio.json");
  assert.deepEqual(reading, {
    state: "no-smart",
    device: "/dev/test",
    reason: "/dev/vda: Unable to detect device type",
    timeMs: 1_000,
  });
});

Deno.test("parseSmartctlJson() reads ATA self-tests newest first and a FAILING verdict", () => {
  const reading = parseSmartctlJson({
    serial_number: "X",
    smart_status: { passed: false },
    ata_smart_attributes: {
      table: [{ id: 5, name: "Reallocated_Sector_Ct", when_failed: "now", raw: { value: 900 } }],
    },
    ata_smart_self_test_log: {
      standard: {
        table: [
          {
            type: { string: "Extended offline" },
            status: { string: "Completed: read failure", passed: false },
            lifetime_hours: 100,
          },
          {
            type: { string: "Short offline" },
            status: { string: "Completed without error", passed: true },
          },
        ],
      },
    },
  }, { device: "/dev/sdz", timeMs: 0 });
  assert.equal(reading.state, "ok");
  if (reading.state !== "ok") return;
  assert.equal(reading.passed, false);
  assert.deepEqual(reading.failingAttributes, ["5 Reallocated_Sector_Ct"]);
  assert.deepEqual(reading.selfTests.map((test) => [test.type, test.passed]), [
    ["Extended offline", false],
    ["Short offline", true],
  ]);
});

Deno.test("parseSmartctlJson() takes anything that is not smartctl JSON as no SMART", () => {
  for (const json of [null, 7, "text", [], {}]) {
    const reading = parseSmartctlJson(json, { device: "/dev/x", timeMs: 0 });
    assert.equal(reading.state, "no-smart");
  }
});

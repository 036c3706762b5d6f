/**
 * SmartMonitor: readings of each disk judged against the previous reading of
 * the same disk (in memory, or from the history database after a restart);
 * `smart-risk-raised` only when a level goes up or a counter rises; a disk
 * without SMART shown as such and never published. The readings come from a
 * scripted reader (the real smartctl is tested in tests/health and the VM).
 */

import assert from "node:assert/strict";
import type { HealthEvent } from "../../mod/events/setup_event.ts";
import { SmartHistory } from "../../mod/health/smart_history.ts";
import type { SmartCounters, SmartReading } from "../../mod/health/smart_report.ts";
import { SmartMonitor } from "../../mod/service/smart_monitor.ts";

function ata(serial: string, counters: SmartCounters, timeMs: number): SmartReading {
  return {
    state: "ok",
    device: "/dev/sda",
    protocol: "ata",
    kind: "hdd",
    serial,
    passed: true,
    counters,
    attributes: [],
    failingAttributes: [],
    selfTests: [],
    timeMs,
  };
}

const NO_SMART: SmartReading = {
  state: "no-smart",
  device: "/srv/spare.img",
  reason: "not a block device (an image file has no SMART)",
  timeMs: 0,
};

/** The paths as given: these tests script readings by path, not by what lies under it. */
const AS_GIVEN = (path: string) => Promise.resolve([path]);

/** A reader that answers each path from its own script, one reading per round. */
function scripted(script: Record<string, SmartReading[]>) {
  return (path: string) => {
    const next = script[path]?.shift();
    assert.ok(next, `a scripted reading for ${path}`);
    return Promise.resolve(next);
  };
}

Deno.test("SmartMonitor publishes smart-risk-raised when a counter rises, and only then", async () => {
  const events: HealthEvent[] = [];
  const monitor = new SmartMonitor({
    disks: [{ role: "main", path: "/dev/sda" }, { role: "spare 0", path: "/srv/spare.img" }],
    publish: (event) => events.push(event),
    disksUnder: AS_GIVEN,
    read: scripted({
      "/dev/sda": [
        ata("S1", { reallocatedSectors: 0 }, 0),
        ata("S1", { reallocatedSectors: 12 }, 1_000),
        ata("S1", { reallocatedSectors: 12 }, 2_000),
      ],
      "/srv/spare.img": [NO_SMART, NO_SMART, NO_SMART],
    }),
  });
  await monitor.readNow();
  assert.deepEqual(events, []);
  await monitor.readNow();
  assert.deepEqual(events, [{
    type: "smart-risk-raised",
    device: "/dev/sda (main)",
    level: "high",
    reasons: [
      "5 Reallocated_Sector_Ct is 12",
      "5 Reallocated_Sector_Ct rose 0→12 since 1970-01-01T00:00:00.000Z",
    ],
  }]);
  assert.deepEqual(monitor.mainDiskRises(), [
    "5 Reallocated_Sector_Ct rose 0→12 since 1970-01-01T00:00:00.000Z",
  ]);
  // Unchanged: the level falls back to elevated, nothing is published.
  await monitor.readNow();
  assert.equal(events.length, 1);
  const status = monitor.status();
  assert.equal(status.rounds, 3);
  assert.deepEqual(status.disks.map((disk) => [disk.role, disk.reading?.state, disk.risk?.level]), [
    ["main", "ok", "elevated"],
    ["spare 0", "no-smart", "none"],
  ]);
  assert.deepEqual(status.disks[1]!.risk?.reasons, [
    "no SMART: not a block device (an image file has no SMART)",
  ]);
});

Deno.test("SmartMonitor compares with the last stored reading after a restart", async () => {
  const history = SmartHistory.open(":memory:");
  const disks = [{ role: "main", path: "/dev/sda" }];
  const first = new SmartMonitor({
    disks,
    history,
    publish: () => {},
    disksUnder: AS_GIVEN,
    read: scripted({ "/dev/sda": [ata("S1", { pendingSectors: 0 }, 0)] }),
  });
  await first.readNow();
  const events: HealthEvent[] = [];
  const second = new SmartMonitor({
    disks,
    history,
    publish: (event) => events.push(event),
    disksUnder: AS_GIVEN,
    read: scripted({ "/dev/sda": [ata("S1", { pendingSectors: 4 }, 5_000)] }),
  });
  await second.readNow();
  assert.equal(events.length, 1);
  assert.equal(events[0]!.type === "smart-risk-raised" && events[0]!.level, "critical");
  assert.ok(
    events[0]!.type === "smart-risk-raised" &&
      events[0]!.reasons.includes(
        "197 Current_Pending_Sector rose 0→4 since 1970-01-01T00:00:00.000Z",
      ),
  );
  history.close();
});

Deno.test("SmartMonitor publishes a disk first seen already at risk once, not every round", async () => {
  const events: HealthEvent[] = [];
  const monitor = new SmartMonitor({
    disks: [{ role: "main", path: "/dev/sda" }],
    publish: (event) => events.push(event),
    disksUnder: AS_GIVEN,
    read: scripted({
      "/dev/sda": [ata("S1", { pendingSectors: 1 }, 0), ata("S1", { pendingSectors: 1 }, 1)],
    }),
  });
  await monitor.readNow();
  await monitor.readNow();
  assert.deepEqual(events.map((event) => event.type === "smart-risk-raised" && event.level), [
    "high",
  ]);
});

Deno.test("SmartMonitor compares a swapped disk only with itself", async () => {
  const events: HealthEvent[] = [];
  const monitor = new SmartMonitor({
    disks: [{ role: "main", path: "/dev/sda" }],
    publish: (event) => events.push(event),
    disksUnder: AS_GIVEN,
    read: scripted({
      "/dev/sda": [
        ata("OLD", { reallocatedSectors: 0 }, 0),
        ata("NEW", { reallocatedSectors: 0 }, 1),
      ],
    }),
  });
  await monitor.readNow();
  await monitor.readNow();
  assert.deepEqual(events, []);
});

Deno.test("SmartMonitor reads the disks under a device-mapper main disk and names them", async () => {
  const events: HealthEvent[] = [];
  const monitor = new SmartMonitor({
    disks: [{ role: "main", path: "/dev/mapper/vault" }, { role: "spare 0", path: "/dev/sdc" }],
    publish: (event) => events.push(event),
    disksUnder: (path) =>
      Promise.resolve(path === "/dev/mapper/vault" ? ["/dev/sda", "/dev/sdb"] : [path]),
    read: scripted({
      "/dev/sda": [ata("A", { pendingSectors: 0 }, 0), ata("A", { pendingSectors: 2 }, 1)],
      "/dev/sdb": [ata("B", {}, 0), ata("B", {}, 1)],
      "/dev/sdc": [ata("C", {}, 0), ata("C", {}, 1)],
    }),
  });
  await monitor.readNow();
  await monitor.readNow();
  assert.deepEqual(monitor.status().disks.map((disk) => [disk.role, disk.path, disk.under]), [
    ["main", "/dev/sda", "/dev/mapper/vault"],
    ["main", "/dev/sdb", "/dev/mapper/vault"],
    ["spare 0", "/dev/sdc", undefined],
  ]);
  assert.deepEqual(events.map((event) => event.type === "smart-risk-raised" && event.device), [
    "/dev/sda (main under /dev/mapper/vault)",
  ]);
  assert.deepEqual(monitor.mainDiskRises(), [
    "197 Current_Pending_Sector rose 0→2 since 1970-01-01T00:00:00.000Z",
  ]);
});

/**
 * assessSmartRisk(): the rules of smart_risk.ts as a table of readings →
 * level and reasons, then the trend rules over pairs of readings of the same
 * disk, and a fixture (a real disk with pending sectors) end to end.
 */

import assert from "node:assert/strict";
import type { SmartCounters, SmartOk, SmartReading } from "../../mod/health/smart_report.ts";
import { parseSmartctlJson } from "../../mod/health/smart_report.ts";
import { assessSmartRisk, type SmartRiskLevel } from "../../mod/health/smart_risk.ts";

const DAY_MS = 86_400_000;

function disk(
  counters: SmartCounters,
  extra: Partial<SmartOk> = {},
): SmartOk {
  return {
    state: "ok",
    device: "/dev/sda",
    protocol: "ata",
    kind: "hdd",
    serial: "S1",
    passed: true,
    counters,
    attributes: [],
    failingAttributes: [],
    selfTests: [],
    timeMs: 10 * DAY_MS,
    ...extra,
  };
}

const RULES: { name: string; reading: SmartReading; level: SmartRiskLevel; reason?: RegExp }[] = [
  {
    name: "all counters zero",
    reading: disk({ reallocatedSectors: 0, pendingSectors: 0 }),
    level: "none",
  },
  {
    name: "no SMART",
    reading: { state: "no-smart", device: "/x", reason: "Unable to detect device type", timeMs: 0 },
    level: "none",
    reason: /^no SMART: Unable to detect device type$/,
  },
  {
    name: "verdict FAILING",
    reading: disk({}, { passed: false }),
    level: "critical",
    reason: /own SMART verdict is FAILING/,
  },
  {
    name: "attribute failing now",
    reading: disk({}, { failingAttributes: ["5 Reallocated_Sector_Ct"] }),
    level: "critical",
    reason: /5 Reallocated_Sector_Ct is at or below its threshold now/,
  },
  {
    name: "197 pending",
    reading: disk({ pendingSectors: 2 }),
    level: "high",
    reason: /197 Current_Pending_Sector is 2/,
  },
  {
    name: "198 offline uncorrectable",
    reading: disk({ offlineUncorrectable: 1 }),
    level: "high",
    reason: /198/,
  },
  {
    name: "NVMe critical warning",
    reading: disk({ criticalWarning: 4 }),
    level: "high",
    reason: /critical_warning is 4/,
  },
  {
    name: "NVMe spare below threshold",
    reading: disk({ availableSparePercent: 5, availableSpareThresholdPercent: 10 }),
    level: "high",
    reason: /available spare 5% is below its threshold 10%/,
  },
  {
    name: "newest self-test failed",
    reading: disk({}, {
      selfTests: [{ type: "Short offline", status: "Completed: read failure", passed: false }],
    }),
    level: "high",
    reason: /newest self-test \(Short offline\) failed/,
  },
  {
    name: "an older self-test failed, the newest passed",
    reading: disk({}, {
      selfTests: [
        { type: "Short offline", status: "ok", passed: true },
        { type: "Short offline", status: "read failure", passed: false },
      ],
    }),
    level: "none",
  },
  {
    name: "5 reallocated",
    reading: disk({ reallocatedSectors: 8 }),
    level: "elevated",
    reason: /5 Reallocated_Sector_Ct is 8/,
  },
  {
    name: "187 reported uncorrectable",
    reading: disk({ reportedUncorrectable: 1 }),
    level: "elevated",
  },
  {
    name: "NVMe media errors",
    reading: disk({ mediaErrors: 3 }),
    level: "elevated",
    reason: /media_errors is 3/,
  },
  {
    name: "NVMe worn",
    reading: disk({ percentageUsed: 93 }),
    level: "elevated",
    reason: /percentage_used is 93%/,
  },
  { name: "NVMe 89% used", reading: disk({ percentageUsed: 89 }), level: "none" },
  { name: "188 command timeouts", reading: disk({ commandTimeouts: 4 }), level: "low" },
  {
    name: "199 CRC errors",
    reading: disk({ crcErrors: 1 }),
    level: "low",
    reason: /199 UDMA_CRC_Error_Count is 1/,
  },
  {
    name: "hot",
    reading: disk({}, { temperatureC: 61 }),
    level: "low",
    reason: /temperature 61 °C/,
  },
  { name: "59 °C", reading: disk({}, { temperatureC: 59 }), level: "none" },
  {
    name: "the highest rule wins",
    reading: disk({ reallocatedSectors: 1, pendingSectors: 1, crcErrors: 1 }),
    level: "high",
  },
];

for (const row of RULES) {
  Deno.test(`assessSmartRisk(): ${row.name} → ${row.level}`, () => {
    const risk = assessSmartRisk(row.reading);
    assert.equal(risk.level, row.level, risk.reasons.join("; "));
    if (row.reason) {
      assert.ok(risk.reasons.some((reason) => row.reason!.test(reason)), risk.reasons.join("; "));
    }
    if (row.level === "none" && row.reading.state === "ok") assert.deepEqual(risk.reasons, []);
  });
}

const TRENDS: {
  name: string;
  previous: SmartOk;
  current: SmartOk;
  level: SmartRiskLevel;
  rising: string[];
}[] = [
  {
    name: "5 rose 0→12: elevated steps to high",
    previous: disk({ reallocatedSectors: 0 }, { timeMs: 0 }),
    current: disk({ reallocatedSectors: 12 }),
    level: "high",
    rising: ["5 Reallocated_Sector_Ct rose 0→12 since 1970-01-01T00:00:00.000Z"],
  },
  {
    name: "197 rose 1→3: high steps to critical",
    previous: disk({ pendingSectors: 1 }, { timeMs: 0 }),
    current: disk({ pendingSectors: 3 }),
    level: "critical",
    rising: ["197 Current_Pending_Sector rose 1→3 since 1970-01-01T00:00:00.000Z"],
  },
  {
    name: "NVMe media errors rose 0→1",
    previous: disk({ mediaErrors: 0 }, { timeMs: 0 }),
    current: disk({ mediaErrors: 1 }),
    level: "high",
    rising: ["NVMe media_errors rose 0→1 since 1970-01-01T00:00:00.000Z"],
  },
  {
    name: "199 rose: the link, at least low",
    previous: disk({ crcErrors: 0 }, { timeMs: 0 }),
    current: disk({ crcErrors: 2 }),
    level: "low",
    rising: ["199 UDMA_CRC_Error_Count rose 0→2 since 1970-01-01T00:00:00.000Z"],
  },
  {
    name: "unchanged counters: no trend",
    previous: disk({ reallocatedSectors: 4 }, { timeMs: 0 }),
    current: disk({ reallocatedSectors: 4 }),
    level: "elevated",
    rising: [],
  },
  {
    name: "another disk at the same path: no trend",
    previous: disk({ reallocatedSectors: 0 }, { serial: "OTHER", timeMs: 0 }),
    current: disk({ reallocatedSectors: 12 }),
    level: "elevated",
    rising: [],
  },
];

for (const row of TRENDS) {
  Deno.test(`assessSmartRisk(): ${row.name}`, () => {
    const risk = assessSmartRisk(row.current, row.previous);
    assert.equal(risk.level, row.level, risk.reasons.join("; "));
    const rising = risk.reasons.filter((reason) => reason.includes(" rose "));
    assert.deepEqual(rising, row.rising);
    assert.equal(risk.rising.length, row.rising.length);
  });
}

Deno.test("assessSmartRisk() judges the real Seagate report high, naming each input", async () => {
  const json = JSON.parse(
    await Deno.readTextFile(
      new URL("./fixtures/sata_hdd_seagate_reallocated.json", import.meta.url),
    ),
  );
  const risk = assessSmartRisk(parseSmartctlJson(json, { device: "/dev/sda", timeMs: 0 }));
  assert.equal(risk.level, "high");
  assert.deepEqual(risk.reasons, [
    "197 Current_Pending_Sector is 1",
    "198 Offline_Uncorrectable is 1",
    "5 Reallocated_Sector_Ct is 3",
    "187 Reported_Uncorrect is 2",
    "188 Command_Timeout is 1228379455780",
  ]);
});

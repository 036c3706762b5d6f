/**
 * Health scores, labels, trend, risk and the scanner's settings, as pure
 * functions: every score shows the inputs it was made of.
 */

import assert from "node:assert/strict";
import {
  emptyRegionRecord,
  judgeRegion,
  judgeSetup,
  labelOf,
  regionScore,
  withSmartRisk,
} from "../../mod/scan/region_health.ts";
import { resolveScanSettings, SCAN_SETTINGS_DEFAULT } from "../../mod/scan/scan_record.ts";
import { UsageError } from "../../mod/errors.ts";

const GIB = 1024 ** 3;
const geometry = { regionBytes: GIB, diskBytes: 2.5 * GIB };

Deno.test("labelOf() gives EXCELLENT ≥ 95, GOOD ≥ 80, FAIR ≥ 60, POOR ≥ 40, else CRITICAL", () => {
  const cases: [number, string][] = [
    [100, "EXCELLENT"],
    [95, "EXCELLENT"],
    [94, "GOOD"],
    [80, "GOOD"],
    [79, "FAIR"],
    [60, "FAIR"],
    [59, "POOR"],
    [40, "POOR"],
    [39, "CRITICAL"],
    [0, "CRITICAL"],
  ];
  for (const [score, label] of cases) assert.equal(labelOf(score), label, `${score}`);
});

Deno.test("judgeRegion() scores findings, shows its inputs, and raises risk for clusters and a worsening trend", () => {
  const record = { ...emptyRegionRecord(2), retriedReads: 1, slowReads: 1, relocations: 2 };
  assert.equal(regionScore(record), 85);
  const judged = judgeRegion({ ...record, scoreAtLastPass: 100, lastScannedMs: 7 }, geometry);
  assert.equal(judged.offsetBytes, 2 * GIB);
  assert.equal(judged.lengthBytes, GIB / 2, "the last region is partial");
  assert.equal(judged.label, "GOOD");
  assert.equal(judged.trend, "worsening");
  assert.equal(judged.risk, "high", "moderate for the score, one up for the trend");
  assert.deepEqual(judged.inputs, {
    readErrors: 0,
    retriedReads: 1,
    slowReads: 1,
    clusteredBlocks: 0,
    relocations: 2,
    lastScannedMs: 7,
    scoreAtLastPass: 100,
  });
  const clustered = judgeRegion({ ...record, clusteredBlocks: 1, scoreAtLastPass: 80 }, geometry);
  assert.equal(clustered.score, 80);
  assert.equal(clustered.trend, "stable");
  assert.equal(clustered.risk, "high");
  assert.match(clustered.riskReasons.join("; "), /clusters/);
  const dead = judgeRegion({ ...emptyRegionRecord(0), readErrors: 4 }, geometry);
  assert.equal(dead.score, 0);
  assert.equal(dead.risk, "critical");
  assert.equal(judgeRegion(emptyRegionRecord(1), geometry).trend, "unknown");
});

Deno.test("judgeSetup() takes the worst region, and caps the score while blocks are pending", () => {
  const regions = [
    judgeRegion(emptyRegionRecord(0), geometry),
    judgeRegion({ ...emptyRegionRecord(1), retriedReads: 1 }, geometry),
  ];
  const clean = judgeSetup(regions, 0);
  assert.equal(clean.score, 90);
  assert.deepEqual(clean.inputs, {
    regions: 2,
    worstRegion: { regionIndex: 1, score: 90 },
    meanRegionScore: 95,
    pendingBlocks: 0,
  });
  const pending = judgeSetup(regions, 3);
  assert.equal(pending.score, 59);
  assert.equal(pending.label, "POOR");
  assert.equal(pending.risk, "high");
});

Deno.test("resolveScanSettings(): flags win over the recorded settings, which win over the defaults", () => {
  const recorded = {
    ...SCAN_SETTINGS_DEFAULT,
    intervalMs: 3_600_000,
    regionBytes: 4 * 1024 * 1024,
  };
  assert.deepEqual(resolveScanSettings({ enabled: false, regionBytes: undefined }, recorded), {
    ...recorded,
    enabled: false,
  });
  assert.deepEqual(resolveScanSettings({}, undefined), SCAN_SETTINGS_DEFAULT);
  assert.throws(() => resolveScanSettings({ regionBytes: 1000 }, undefined), UsageError);
  assert.throws(() => resolveScanSettings({ intervalMs: 10 }, undefined), /--scan-interval/);
  assert.throws(() => resolveScanSettings({ rateMaxBytesPerS: 1 }, undefined), /--scan-rate-max/);
});

Deno.test("withSmartRisk() raises the setup's risk to the main disk's SMART risk, one more while counters rise, and shows it as an input", () => {
  const clean = judgeSetup([], 0);
  assert.equal(clean.risk, "low");
  assert.equal(withSmartRisk(clean, undefined), clean, "no SMART: nothing changes");
  const quiet = withSmartRisk(clean, {
    path: "/dev/sda",
    risk: { level: "none", reasons: [], rising: [] },
  });
  assert.equal(quiet.risk, "low");
  assert.deepEqual(quiet.inputs.smart, {
    path: "/dev/sda",
    level: "none",
    reasons: [],
    rising: [],
  });
  const elevated = withSmartRisk(clean, {
    path: "/dev/sda",
    risk: { level: "elevated", reasons: ["199 UDMA_CRC_Error_Count is 3"], rising: [] },
  });
  assert.equal(elevated.risk, "moderate");
  const rising = withSmartRisk(clean, {
    path: "/dev/sda",
    risk: {
      level: "high",
      reasons: ["5 Reallocated_Sector_Ct is 8"],
      rising: [{
        counter: "reallocatedSectors",
        name: "5 Reallocated_Sector_Ct",
        from: 2,
        to: 8,
        sinceMs: 0,
      }],
    },
  });
  assert.equal(rising.risk, "critical");
  assert.equal(rising.score, 100, "SMART raises the risk, not the scan's score");
  assert.deepEqual(rising.inputs.smart!.rising, ["5 Reallocated_Sector_Ct rose 2→8"]);
});

/**
 * formatStatus(): the human `dm-remap status` report shows the health
 * section a person needs: each disk's SMART (or why it has none) with the
 * risk and its inputs, the spare-pool forecast, and the metadata scrub.
 */

import assert from "node:assert/strict";
import { formatStatus } from "../../mod/cli/commands/status.ts";
import { statusFixture } from "../api/fixtures.ts";

Deno.test("formatStatus() shows SMART, the forecast and the scrub", () => {
  const text = formatStatus(statusFixture({
    health: {
      smart: {
        intervalMs: 1_800_000,
        rounds: 2,
        disks: [
          {
            role: "main",
            path: "/dev/sda",
            reading: {
              state: "ok",
              device: "/dev/sda",
              protocol: "ata",
              kind: "hdd",
              model: "ST33000650NS",
              serial: "Z295RVX4",
              passed: true,
              temperatureC: 36,
              counters: { reallocatedSectors: 3 },
              attributes: [],
              failingAttributes: [],
              selfTests: [],
              timeMs: 0,
            },
            risk: { level: "elevated", reasons: ["5 Reallocated_Sector_Ct is 3"], rising: [] },
          },
          {
            role: "spare 0",
            path: "/srv/spare.img",
            reading: {
              state: "no-smart",
              device: "/srv/spare.img",
              reason: "not a block device (an image file has no SMART)",
              timeMs: 0,
            },
          },
        ],
      },
      scrub: {
        intervalMs: 3_600_000,
        passes: 3,
        spares: [{
          spareIndex: 0,
          state: "retrying",
          lastRepairs: [],
          repairsTotal: 0,
          failures: 2,
          lastError: "write failed",
        }],
      },
      forecast: {
        state: "forecast",
        slotsFree: 480,
        remapsPerDay: 12,
        spanDays: 7,
        daysLeft: { low: 32, expected: 40, high: 52 },
        reasons: [],
        summary: "12 new remaps/day over 7 days; pool full in about 40 days (32–52)",
      },
    },
  }));
  const lines = text.split("\n");
  const from = lines.findIndex((line) => line.startsWith("  SMART "));
  assert.ok(from > 0, text);
  assert.deepEqual(lines.slice(from), [
    "  SMART  main /dev/sda: ATA hdd ST33000650NS Z295RVX4, 36 °C, risk elevated",
    "           - 5 Reallocated_Sector_Ct is 3",
    "         spare 0 /srv/spare.img: no SMART (not a block device (an image file has no SMART))",
    "  pool   12 new remaps/day over 7 days; pool full in about 40 days (32–52)",
    "  scrub  every 3600 s, 3 passes; spare 0 retrying (2 failures: write failed)",
  ]);
});

Deno.test("formatStatus() says SMART is off with --no-smart, and shows nothing without health", () => {
  const base = statusFixture();
  assert.ok(!formatStatus(base).includes("SMART"));
  const text = formatStatus({
    ...base,
    health: {
      smart: null,
      scrub: { intervalMs: 3_600_000, passes: 1, spares: [] },
      forecast: {
        state: "no-trend",
        slotsFree: 10,
        remapsPerDay: 0,
        spanDays: 7,
        reasons: [],
        summary: "0 new remaps/day over 7 days; no trend, pool not filling",
      },
    },
  });
  assert.match(text, /^ {2}SMART {2}off \(--no-smart\)$/m);
  assert.match(text, /^ {2}pool {3}0 new remaps\/day over 7 days; no trend, pool not filling$/m);
});

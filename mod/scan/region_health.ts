/**
 * Health records of the main disk's regions and the scores made of them.
 *
 * A region (1 GiB by default) keeps what the scanner found in it: blocks it
 * could not read at all, reads that succeeded only on a retry, reads far
 * slower than the disk's own baseline, weak blocks found next to another
 * (a cluster), relocations, and when it was last scanned. A score is 100
 * less a weight per finding; every score is shown with the inputs it was
 * made of, so no number is opaque.
 *
 * | finding                              | points off |
 * | ------------------------------------ | ---------- |
 * | unreadable block (now pending)       | 30         |
 * | read that succeeded only on a retry  | 10         |
 * | read slower than the baseline        | 5          |
 * | weak block in a cluster              | 5          |
 *
 * The setup's score is its worst region's, at most 59 (FAIR's ceiling is
 * POOR's floor) while any block is pending: some data there is already lost.
 *
 * @module
 */

import type { SmartRisk, SmartRiskLevel } from "../health/smart_risk.ts";

/** Points a finding takes off a region's score. */
export const SCORE_WEIGHTS = {
  readErrors: 30,
  retriedReads: 10,
  slowReads: 5,
  clusteredBlocks: 5,
} as const;
/** The highest setup score while blocks are pending. */
const PENDING_SCORE_MAX = 59;

/** What the scanner found in one region. */
export interface RegionRecord {
  regionIndex: number;
  /** Blocks that could not be read at all (they are pending). */
  readErrors: number;
  /** Blocks that read only on a retry. */
  retriedReads: number;
  /** Blocks that read far slower than the disk's baseline. */
  slowReads: number;
  /** Weak or failed blocks found within the neighbourhood of another. */
  clusteredBlocks: number;
  /** Blocks the scanner copied to a spare. */
  relocations: number;
  /** When the scanner last read the region (ms since the epoch), if ever. */
  lastScannedMs?: number;
  /** The region's score when the last full pass ended, for the trend. */
  scoreAtLastPass?: number;
}

/** A score's label. */
export type HealthLabel = "EXCELLENT" | "GOOD" | "FAIR" | "POOR" | "CRITICAL";
/** Which way a score moved since the last full pass. */
export type HealthTrend = "improving" | "stable" | "worsening" | "unknown";
/** How likely the region is to lose data soon. */
export type RiskLevel = "low" | "moderate" | "high" | "critical";

/** A region's score with everything it was made of. */
export interface RegionHealth {
  regionIndex: number;
  offsetBytes: number;
  lengthBytes: number;
  score: number;
  label: HealthLabel;
  trend: HealthTrend;
  risk: RiskLevel;
  /** Why the risk is what it is, one phrase each. */
  riskReasons: string[];
  inputs: Omit<RegionRecord, "regionIndex" | "scoreAtLastPass"> & { scoreAtLastPass?: number };
}

/** The setup's score with its inputs. */
export interface SetupHealth {
  score: number;
  label: HealthLabel;
  risk: RiskLevel;
  inputs: {
    regions: number;
    /** The worst region's index and score; none when there are no regions. */
    worstRegion?: { regionIndex: number; score: number };
    meanRegionScore: number;
    pendingBlocks: number;
    /**
     * The main disk's SMART risk (`mod/health/smart_risk.ts`) when the
     * setup's risk includes it: absent without SMART or before a reading.
     */
    smart?: { path: string; level: SmartRiskLevel; reasons: string[]; rising: string[] };
  };
}

/** The scan risk a SMART risk level counts as: SMART "elevated" is a moderate risk. */
const RISK_OF_SMART: Record<SmartRiskLevel, RiskLevel> = {
  none: "low",
  low: "low",
  elevated: "moderate",
  high: "high",
  critical: "critical",
};

/**
 * The setup's health with the main disk's SMART risk as an input: the risk
 * is at least what SMART says, and one level higher while SMART counters
 * rise (as a worsening trend raises a region's). The score stays the scan's:
 * SMART says how likely failures are, the score what the scan found.
 */
export function withSmartRisk(
  setup: SetupHealth,
  smart: { path: string; risk: SmartRisk } | undefined,
): SetupHealth {
  if (smart === undefined) return setup;
  const { level, reasons, rising } = smart.risk;
  let risk = Math.max(RISKS.indexOf(setup.risk), RISKS.indexOf(RISK_OF_SMART[level]));
  if (rising.length > 0) risk = Math.min(RISKS.length - 1, risk + 1);
  return {
    ...setup,
    risk: RISKS[risk]!,
    inputs: {
      ...setup.inputs,
      smart: {
        path: smart.path,
        level,
        reasons: [...reasons],
        rising: rising.map((rise) => `${rise.name} rose ${rise.from}→${rise.to}`),
      },
    },
  };
}

/** A record with nothing found. */
export function emptyRegionRecord(regionIndex: number): RegionRecord {
  return {
    regionIndex,
    readErrors: 0,
    retriedReads: 0,
    slowReads: 0,
    clusteredBlocks: 0,
    relocations: 0,
  };
}

/** Whether a record holds a finding worth keeping in the metadata. */
export function hasFindings(record: RegionRecord): boolean {
  return record.readErrors + record.retriedReads + record.slowReads + record.clusteredBlocks +
          record.relocations > 0 ||
    record.scoreAtLastPass !== undefined && record.scoreAtLastPass < 100;
}

/** The 0-100 score of one region's findings. */
export function regionScore(record: RegionRecord): number {
  const off = record.readErrors * SCORE_WEIGHTS.readErrors +
    record.retriedReads * SCORE_WEIGHTS.retriedReads +
    record.slowReads * SCORE_WEIGHTS.slowReads +
    record.clusteredBlocks * SCORE_WEIGHTS.clusteredBlocks;
  return Math.max(0, 100 - off);
}

/** EXCELLENT ≥ 95, GOOD ≥ 80, FAIR ≥ 60, POOR ≥ 40, else CRITICAL. */
export function labelOf(score: number): HealthLabel {
  if (score >= 95) return "EXCELLENT";
  if (score >= 80) return "GOOD";
  if (score >= 60) return "FAIR";
  if (score >= 40) return "POOR";
  return "CRITICAL";
}

const RISKS: readonly RiskLevel[] = ["low", "moderate", "high", "critical"];

/**
 * Judges one region: its score, label, trend since the last pass, and risk.
 * The risk follows the score (≥ 95 low, ≥ 80 moderate, ≥ 40 high, else
 * critical) and rises one level for a cluster and one for a worsening trend:
 * bad sectors cluster, and a region getting worse keeps getting worse.
 */
export function judgeRegion(
  record: RegionRecord,
  geometry: { regionBytes: number; diskBytes: number },
): RegionHealth {
  const score = regionScore(record);
  const previous = record.scoreAtLastPass;
  const trend: HealthTrend = previous === undefined
    ? "unknown"
    : score < previous
    ? "worsening"
    : score > previous
    ? "improving"
    : "stable";
  const riskReasons: string[] = [];
  let level = score >= 95 ? 0 : score >= 80 ? 1 : score >= 40 ? 2 : 3;
  if (score < 100) riskReasons.push(`score ${score}`);
  if (record.clusteredBlocks > 0) {
    level++;
    riskReasons.push(`${record.clusteredBlocks} weak blocks in clusters`);
  }
  if (trend === "worsening") {
    level++;
    riskReasons.push(`worse than at the last pass (${previous})`);
  }
  const offsetBytes = record.regionIndex * geometry.regionBytes;
  const { regionIndex: _, ...inputs } = record;
  return {
    regionIndex: record.regionIndex,
    offsetBytes,
    lengthBytes: Math.min(geometry.regionBytes, geometry.diskBytes - offsetBytes),
    score,
    label: labelOf(score),
    trend,
    risk: RISKS[Math.min(level, RISKS.length - 1)]!,
    riskReasons,
    inputs,
  };
}

/** The setup's score from its regions (any order) and its pending blocks. */
export function judgeSetup(regions: readonly RegionHealth[], pendingBlocks: number): SetupHealth {
  const worst = regions.reduce<RegionHealth | undefined>(
    (found, region) => found === undefined || region.score < found.score ? region : found,
    undefined,
  );
  const mean = regions.length === 0
    ? 100
    : regions.reduce((sum, region) => sum + region.score, 0) / regions.length;
  let score = worst?.score ?? 100;
  if (pendingBlocks > 0) score = Math.min(score, PENDING_SCORE_MAX);
  const worstRisk = regions.reduce(
    (level, region) => Math.max(level, RISKS.indexOf(region.risk)),
    0,
  );
  return {
    score,
    label: labelOf(score),
    risk: RISKS[Math.max(worstRisk, pendingBlocks > 0 ? 2 : 0)]!,
    inputs: {
      regions: regions.length,
      ...(worst === undefined ? {} : {
        worstRegion: { regionIndex: worst.regionIndex, score: worst.score },
      }),
      meanRegionScore: Math.round(mean * 10) / 10,
      pendingBlocks,
    },
  };
}

/**
 * The background scanner and the health scores it keeps: the public surface
 * of `mod/scan/`.
 *
 * @module
 */

export {
  type HealthReport,
  Scanner,
  type ScannerOptions,
  type ScanState,
  type ScanStatus,
  type ScanTarget,
  type SmartDiskRisk,
} from "./scanner.ts";
export {
  parseScanRecord,
  resolveScanSettings,
  SCAN_SETTINGS_DEFAULT,
  type ScanRecord,
  type ScanSettings,
} from "./scan_record.ts";
export {
  type HealthLabel,
  type HealthTrend,
  labelOf,
  type RegionHealth,
  type RegionRecord,
  type RiskLevel,
  SCORE_WEIGHTS,
  type SetupHealth,
  withSmartRisk,
} from "./region_health.ts";

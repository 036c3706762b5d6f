/**
 * Policies: conditions on a setup's state, and what the server does when
 * they hold. Conditions that one policy names must all hold (and); a policy
 * acts when it starts to hold, not again while it keeps holding (alerts have
 * their own repeat interval).
 *
 * Conditions: `pending-blocks`, `spare-used-percent`, `spare-errors`,
 * `degraded`, and from the scanner `health-score-below` and `scan-findings`.
 * Actions: `alert`, `start-scan` (a scanner pass) and `stop-allocating` (the
 * spare pool gives no new slots on the spares the policy points at, while
 * it holds). A server without the scanner (a test's) has no input for its
 * conditions and no actuator for its action: such a condition does not hold
 * and the evaluation lists it as unavailable.
 *
 * `stop-allocating` points at the spares its conditions name (those at least
 * `spare-used-percent` full and with at least `spare-errors` errors), or,
 * without a spare condition, at the failing spares: those with I/O errors on
 * their slots. When the policy stops holding, or a reload removes it, those
 * spares take new slots again.
 *
 * @module
 */

/** What a policy looks at; every field given must hold. */
export interface PolicyConditions {
  /** At least this many pending (unreadable, not rewritten) blocks. */
  pendingBlocksAtLeast?: number;
  /** Some active spare has at least this percent of its slots used. */
  spareUsedPercentAtLeast?: number;
  /** Some active spare has at least this many I/O errors on its slots since the start. */
  spareErrorsAtLeast?: number;
  /** The setup is degraded (true) or not (false). */
  degraded?: boolean;
  /** The scanner's setup health score (0-100) is below this. */
  healthScoreBelow?: number;
  /** The scanner found at least this many bad blocks in its last pass (or the one in progress). */
  scanFindingsAtLeast?: number;
}

/** What a policy can do. */
export const POLICY_ACTIONS = ["alert", "start-scan", "stop-allocating"] as const;

/** One action of a policy. */
export type PolicyAction = typeof POLICY_ACTIONS[number];

/** A configured policy. */
export interface PolicySettings {
  name: string;
  when: PolicyConditions;
  then: readonly PolicyAction[];
}

/** One spare as policies see it. */
export interface PolicySpare {
  index: number;
  state: "active" | "failed" | "missing" | "draining" | "removed";
  usedPercent: number;
  /** I/O errors on its slots since the engine started. */
  errors: number;
}

/** The state policies are evaluated on; undefined inputs are not available yet. */
export interface PolicyInputs {
  pendingBlocks: number;
  spares: readonly PolicySpare[];
  degraded: boolean;
  /** The scanner's setup health score, 0-100. @default not available (no scanner) */
  healthScore?: number;
  /**
   * Bad blocks the scanner's last pass found, or the pass in progress when it
   * found more. @default not available (no scanner)
   */
  scanFindings?: number;
}

/** What the server lets policies do; an absent actuator is not available yet. */
export interface PolicyActuators {
  /** Raises a `policy` alert. */
  alert: (policy: string, details: string) => void;
  /** Starts a scan pass (or resumes a paused one). @default not available (no scanner) */
  startScan?: (policy: string) => void;
  /**
   * Gives no new slots on these spares on behalf of this policy (replacing
   * what it asked before); an empty list lets them take slots again.
   * @default not available
   */
  stopAllocating?: (policy: string, spareIndexes: readonly number[]) => void;
}

/** A policy's last evaluation, as the status API lists it. */
export interface PolicyEvaluation {
  name: string;
  /** When it was last evaluated (ms since the epoch), and why. */
  evaluatedMs: number;
  trigger: string;
  /** Whether every condition held. */
  holds: boolean;
  /** Each condition with what was seen, in words. */
  reasons: string[];
  /** Actions taken at the last transition to holding, and when. */
  actedMs?: number;
  actions: string[];
  /** Conditions and actions whose input or actuator this server does not have yet. */
  unavailable: string[];
}

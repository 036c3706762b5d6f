/**
 * Policies: conditions on a setup's state, and what the server does when
 * they hold. Conditions that one policy names must all hold (and); a policy
 * acts when it starts to hold, not again while it keeps holding (alerts have
 * their own repeat interval).
 *
 * Available today: `pending-blocks`, `spare-used-percent`, `degraded`; the
 * action `alert`. Defined for the branches that bring their inputs:
 * `health-score-below` and `scan-findings` (the scanner), the actions
 * `start-scan` (the scanner) and `stop-allocating` (the spare pool). Until a
 * service provides them, a condition without its input does not hold and an
 * action without its actuator is reported as unavailable in the evaluation.
 *
 * @module
 */

/** What a policy looks at; every field given must hold. */
export interface PolicyConditions {
  /** At least this many pending (unreadable, not rewritten) blocks. */
  pendingBlocksAtLeast?: number;
  /** Some active spare has at least this percent of its slots used. */
  spareUsedPercentAtLeast?: number;
  /** The setup is degraded (true) or not (false). */
  degraded?: boolean;
  /** The scanner's health score (0-100) is below this. Input arrives with the scanner. */
  healthScoreBelow?: number;
  /** The scanner found at least this many bad blocks in its last pass. Input arrives with the scanner. */
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
}

/** The state policies are evaluated on; undefined inputs are not available yet. */
export interface PolicyInputs {
  pendingBlocks: number;
  spares: readonly PolicySpare[];
  degraded: boolean;
  /** The scanner's health score, 0-100. @default not available */
  healthScore?: number;
  /** Bad blocks the scanner's last pass found. @default not available */
  scanFindings?: number;
}

/** What the server lets policies do; an absent actuator is not available yet. */
export interface PolicyActuators {
  /** Raises a `policy` alert. */
  alert: (policy: string, details: string) => void;
  /** Starts a scan pass. Arrives with the scanner. @default not available */
  startScan?: (policy: string) => void;
  /** Stops new remaps on these spares. Arrives with the spare pool. @default not available */
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

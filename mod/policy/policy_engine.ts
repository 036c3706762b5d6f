/**
 * Evaluates a setup's policies, on a timer and when told (after events), and
 * keeps each one's last evaluation for the status API. A policy acts when
 * its conditions start to hold; while they keep holding it does not act
 * again, and when they stop it is ready for the next time.
 *
 * Evaluation is cheap (a few comparisons over counts the engine keeps), and
 * runs on the event loop after the event's publisher returned, never inside
 * the engine's call.
 *
 * @module
 */

import type { PolicyActuators, PolicyEvaluation, PolicyInputs, PolicySettings } from "./policy.ts";

/** Options of {@link PolicyEngine}. */
export interface PolicyEngineOptions {
  /** Reads the setup's state now. */
  inputs: () => PolicyInputs;
  actuators: PolicyActuators;
  /** @default Date.now */
  now?: () => number;
}

/** A condition's verdict: holds, or not, or its input is not available. */
type Verdict = { holds: boolean; reason: string } | { unavailable: string };

/** The policies of one setup. */
export class PolicyEngine {
  readonly #inputs: () => PolicyInputs;
  readonly #actuators: PolicyActuators;
  readonly #now: () => number;
  #rules: readonly PolicySettings[] = [];
  #evaluations = new Map<string, PolicyEvaluation>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #soon: ReturnType<typeof setTimeout> | undefined;

  constructor(options: PolicyEngineOptions) {
    this.#inputs = options.inputs;
    this.#actuators = options.actuators;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Takes the policies to evaluate and how often (at start, and on SIGHUP).
   * A policy kept by name keeps its last evaluation, so it does not act again
   * for a condition that already held.
   */
  configure(rules: readonly PolicySettings[], intervalMs: number): void {
    const names = new Set(rules.map((rule) => rule.name));
    // A policy removed (or changed to take no such action) lets its spares take slots again.
    for (const rule of this.#rules) {
      const next = rules.find((candidate) => candidate.name === rule.name);
      if (!names.has(rule.name) || !next?.then.includes("stop-allocating")) this.#release(rule);
    }
    this.#rules = rules;
    const kept = new Map<string, PolicyEvaluation>();
    for (const rule of rules) {
      const last = this.#evaluations.get(rule.name);
      if (last !== undefined) kept.set(rule.name, last);
    }
    this.#evaluations = kept;
    this.stop();
    if (rules.length > 0) this.#timer = setInterval(() => this.evaluate("interval"), intervalMs);
  }

  /** Evaluates soon (once for a burst of events), off the caller's stack. */
  evaluateSoon(trigger: string): void {
    if (this.#soon !== undefined || this.#rules.length === 0) return;
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      this.evaluate(trigger);
    }, 0);
  }

  /** Evaluates every policy now, acting on those that start to hold. */
  evaluate(trigger: string): readonly PolicyEvaluation[] {
    const inputs = this.#inputs();
    for (const rule of this.#rules) this.#evaluate(rule, inputs, trigger);
    return this.evaluations;
  }

  /** Each policy's last evaluation, in configuration order. */
  get evaluations(): PolicyEvaluation[] {
    return this.#rules.flatMap((rule) => {
      const evaluation = this.#evaluations.get(rule.name);
      return evaluation === undefined ? [] : [evaluation];
    });
  }

  /** Stops the timer. */
  stop(): void {
    clearInterval(this.#timer);
    clearTimeout(this.#soon);
    this.#timer = this.#soon = undefined;
  }

  #evaluate(rule: PolicySettings, inputs: PolicyInputs, trigger: string): void {
    const verdicts = verdictsOf(rule, inputs);
    const reasons = verdicts.flatMap((verdict) => "reason" in verdict ? [verdict.reason] : []);
    const unavailable = verdicts.flatMap((v) => "unavailable" in v ? [v.unavailable] : []);
    const holds = verdicts.length > 0 &&
      verdicts.every((verdict) => "holds" in verdict && verdict.holds);
    const last = this.#evaluations.get(rule.name);
    const evaluation: PolicyEvaluation = {
      name: rule.name,
      evaluatedMs: this.#now(),
      trigger,
      holds,
      reasons,
      actedMs: last?.actedMs,
      actions: last?.actions ?? [],
      unavailable: [...unavailable, ...this.#unavailableActions(rule)],
    };
    if (holds && last?.holds !== true) {
      evaluation.actedMs = evaluation.evaluatedMs;
      evaluation.actions = this.#act(rule, reasons, inputs);
    } else if (holds && rule.then.includes("stop-allocating")) {
      // Spares that came to match while it holds are stopped too.
      this.#actuators.stopAllocating?.(rule.name, targetSpares(rule, inputs));
    } else if (!holds && last?.holds === true) {
      this.#release(rule);
    }
    this.#evaluations.set(rule.name, evaluation);
  }

  /** Undoes what lasts only while a policy holds: its stop of allocation. */
  #release(rule: PolicySettings): void {
    if (!rule.then.includes("stop-allocating")) return;
    if (this.#evaluations.get(rule.name)?.holds !== true) return;
    this.#actuators.stopAllocating?.(rule.name, []);
  }

  #unavailableActions(rule: PolicySettings): string[] {
    const missing: string[] = [];
    if (rule.then.includes("start-scan") && this.#actuators.startScan === undefined) {
      missing.push("action start-scan: this server has no scanner");
    }
    if (rule.then.includes("stop-allocating") && this.#actuators.stopAllocating === undefined) {
      missing.push("action stop-allocating: this server has no spare pool");
    }
    return missing;
  }

  /** Takes the policy's actions; returns what was done, in words. */
  #act(rule: PolicySettings, reasons: readonly string[], inputs: PolicyInputs): string[] {
    const done: string[] = [];
    for (const action of rule.then) {
      switch (action) {
        case "alert":
          this.#actuators.alert(rule.name, `policy "${rule.name}" holds: ${reasons.join("; ")}`);
          done.push("alert");
          break;
        case "start-scan":
          if (this.#actuators.startScan === undefined) break;
          this.#actuators.startScan(rule.name);
          done.push("start-scan");
          break;
        case "stop-allocating": {
          if (this.#actuators.stopAllocating === undefined) break;
          const spares = targetSpares(rule, inputs);
          this.#actuators.stopAllocating(rule.name, spares);
          done.push(
            spares.length === 0
              ? "stop-allocating: no spare to stop"
              : `stop-allocating on spares ${spares.join(", ")}`,
          );
          break;
        }
      }
    }
    return done;
  }
}

/**
 * The active spares a policy's `stop-allocating` points at: those its spare
 * conditions name (at least that full, with at least that many errors), or,
 * without a spare condition, the failing ones (errors on their slots).
 */
function targetSpares(rule: PolicySettings, inputs: PolicyInputs): number[] {
  const { spareUsedPercentAtLeast: usedPercent, spareErrorsAtLeast: errors } = rule.when;
  const named = usedPercent !== undefined || errors !== undefined;
  return inputs.spares
    .filter((spare) =>
      spare.state === "active" &&
      (named
        ? spare.usedPercent >= (usedPercent ?? 0) && spare.errors >= (errors ?? 0)
        : spare.errors > 0)
    )
    .map((spare) => spare.index);
}

/** Each condition the policy names, judged on the inputs. */
function verdictsOf(rule: PolicySettings, inputs: PolicyInputs): Verdict[] {
  const { when } = rule;
  const verdicts: Verdict[] = [];
  if (when.pendingBlocksAtLeast !== undefined) {
    verdicts.push({
      holds: inputs.pendingBlocks >= when.pendingBlocksAtLeast,
      reason: `${inputs.pendingBlocks} pending blocks (at least ${when.pendingBlocksAtLeast})`,
    });
  }
  if (when.spareUsedPercentAtLeast !== undefined) {
    const active = inputs.spares.filter((spare) => spare.state === "active");
    const fullest = Math.max(0, ...active.map((spare) => spare.usedPercent));
    verdicts.push({
      holds: fullest >= when.spareUsedPercentAtLeast,
      reason: `fullest active spare ${
        fullest.toFixed(1)
      }% used (at least ${when.spareUsedPercentAtLeast}%)`,
    });
  }
  if (when.spareErrorsAtLeast !== undefined) {
    const active = inputs.spares.filter((spare) => spare.state === "active");
    const most = Math.max(0, ...active.map((spare) => spare.errors));
    verdicts.push({
      holds: most >= when.spareErrorsAtLeast,
      reason: `most I/O errors on an active spare: ${most} (at least ${when.spareErrorsAtLeast})`,
    });
  }
  if (when.degraded !== undefined) {
    verdicts.push({
      holds: inputs.degraded === when.degraded,
      reason: `setup ${inputs.degraded ? "is" : "is not"} degraded`,
    });
  }
  if (when.healthScoreBelow !== undefined) {
    verdicts.push(
      inputs.healthScore === undefined
        ? { unavailable: "condition health-score-below: this server has no scanner" }
        : {
          holds: inputs.healthScore < when.healthScoreBelow,
          reason: `health score ${inputs.healthScore} (below ${when.healthScoreBelow})`,
        },
    );
  }
  if (when.scanFindingsAtLeast !== undefined) {
    verdicts.push(
      inputs.scanFindings === undefined
        ? { unavailable: "condition scan-findings: this server has no scanner" }
        : {
          holds: inputs.scanFindings >= when.scanFindingsAtLeast,
          reason:
            `${inputs.scanFindings} bad blocks found by the last scan pass (at least ${when.scanFindingsAtLeast})`,
        },
    );
  }
  return verdicts;
}

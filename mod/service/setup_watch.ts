/**
 * Watches a running setup for the operator: turns its events into alerts
 * (through the {@link AlertDispatcher}), derives the alerts no single event
 * says (a spare nearly full, metadata copies repaired at open, a spare
 * recorded failed at start), and evaluates the policies (periodically and
 * after events) on the engine's counts and the scanner's findings, acting
 * through the dispatcher, the scanner and the engine's spare pool. Nothing
 * here runs inside the engine's call: a bus listener only queues.
 *
 * @module
 */

import { AlertDispatcher } from "../alerts/alert_dispatcher.ts";
import { alertOfEvent } from "../alerts/alert_of_event.ts";
import type { AlertTargetCounts } from "../alerts/alert.ts";
import type { OpenedSpares } from "../assembly/assemble.ts";
import { POLICY_INTERVAL_S_DEFAULT } from "../constants.ts";
import type { EventBus } from "../events/event_bus.ts";
import type { StructuredLog } from "../log/structured_log.ts";
import type { PolicyEvaluation, PolicyInputs } from "../policy/policy.ts";
import { PolicyEngine } from "../policy/policy_engine.ts";
import type { RemapDevice } from "../remap/remap_device.ts";
import type { Scanner } from "../scan/mod.ts";
import type { AlertSettings, PolicyRunSettings } from "./settings.ts";

/** Options of {@link SetupWatch}. */
export interface SetupWatchOptions {
  setupName: string;
  mainPath: string;
  alerts: AlertSettings | undefined;
  policies: PolicyRunSettings | undefined;
  log: StructuredLog;
}

/** What SIGHUP may change in a watch. */
export interface WatchSettings {
  alerts: AlertSettings | undefined;
  policies: PolicyRunSettings | undefined;
}

/** What policies read of the scanner and ask of it. */
export type PolicyScanner = Pick<Scanner, "health" | "status" | "startPass">;

/** Alerts and policies of one setup, from its start to its stop. */
export class SetupWatch {
  readonly #dispatcher: AlertDispatcher;
  readonly #policies: PolicyEngine;
  readonly #setupName: string;
  readonly #mainPath: string;
  #policySettings: PolicyRunSettings | undefined;
  #engine: RemapDevice | undefined;
  #scanner: PolicyScanner | undefined;
  readonly #log: StructuredLog;
  /** The spares each policy stopped allocating on; the engine avoids their union. */
  readonly #allocationStops = new Map<string, readonly number[]>();
  /** Spares already reported nearly full: each is reported once per start. */
  readonly #nearlyFull = new Set<number>();

  constructor(options: SetupWatchOptions) {
    this.#setupName = options.setupName;
    this.#mainPath = options.mainPath;
    this.#dispatcher = new AlertDispatcher(options.alerts, { log: options.log });
    this.#policySettings = options.policies;
    this.#log = options.log;
    this.#policies = new PolicyEngine({
      inputs: () => this.#policyInputs(),
      actuators: {
        alert: (_policy, details) =>
          this.#dispatcher.raise({
            kind: "policy",
            setup: this.#setupName,
            device: this.#mainPath,
            details,
          }),
        startScan: (policy) => this.#startScan(policy),
        stopAllocating: (policy, spareIndexes) => this.#stopAllocating(policy, spareIndexes),
      },
    });
  }

  /** Queues the alert of every event `bus` publishes from now on. */
  subscribeTo(bus: EventBus): () => void {
    return bus.subscribe((event) => {
      const alert = alertOfEvent(event, {
        setup: this.#setupName,
        mainPath: this.#mainPath,
        sparePath: (index) => this.#engine?.spares[index]?.device.name ?? `spare ${index}`,
      });
      if (alert !== undefined) this.#dispatcher.raise(alert);
      if (event.type === "remap") this.#checkSpareUsage();
      if (this.#engine !== undefined) this.#policies.evaluateSoon(event.type);
    });
  }

  /**
   * Starts watching the assembled engine and its scanner: the alerts of what
   * the open found (repaired copies, spares recorded failed), then the
   * policies.
   */
  attach(engine: RemapDevice, opened: OpenedSpares, scanner: PolicyScanner): void {
    this.#engine = engine;
    this.#scanner = scanner;
    opened.reports.forEach((report, index) => {
      const repaired = report.copies.filter((copy) => copy.repaired).map((copy) => copy.copyIndex);
      if (repaired.length === 0) return;
      this.#dispatcher.raise({
        kind: "metadata-repaired",
        setup: this.#setupName,
        device: engine.spares[index]?.device.name ?? `spare ${index}`,
        details: `metadata copies ${repaired.join(", ")} of spare ${index} were rewritten at open`,
      });
    });
    for (const spare of engine.spares) {
      if (spare.state !== "failed") continue;
      this.#dispatcher.raise({
        kind: "spare-failed",
        setup: this.#setupName,
        device: spare.device.name,
        details: `spare ${spare.index} is recorded failed at start and takes no new remaps`,
      });
    }
    this.#checkSpareUsage();
    this.#configurePolicies();
    this.#policies.evaluate("start");
  }

  /** Applies new alert targets and policies (SIGHUP). */
  reconfigure(settings: WatchSettings): void {
    this.#dispatcher.replace(settings.alerts);
    this.#policySettings = settings.policies;
    if (this.#engine !== undefined) {
      this.#configurePolicies();
      this.#policies.evaluate("reload");
    }
  }

  /** Each alert target's delivery counts. */
  get alertCounts(): AlertTargetCounts[] {
    return this.#dispatcher.counts();
  }

  /** Each policy's last evaluation. */
  get policyEvaluations(): PolicyEvaluation[] {
    return this.#policies.evaluations;
  }

  /** Stops the policies, then gives queued alerts a bounded time to go. */
  async stop(): Promise<void> {
    this.#policies.stop();
    await this.#dispatcher.stop();
  }

  #configurePolicies(): void {
    const settings = this.#policySettings;
    this.#policies.configure(
      settings?.rules ?? [],
      settings?.intervalMs ?? POLICY_INTERVAL_S_DEFAULT * 1000,
    );
  }

  /** Raises `spare-nearly-full` once per spare when its usage reaches the threshold. */
  #checkSpareUsage(): void {
    const threshold = this.#dispatcher.spareNearlyFullPercent;
    if (threshold === undefined || this.#engine === undefined) return;
    const engine = this.#engine;
    for (const spare of engine.spares) {
      const slotsUsed = engine.slotsUsedOf(spare.index);
      const percent = usedPercentOf(slotsUsed, spare.layout.slotCount);
      if (spare.state !== "active" || percent < threshold || this.#nearlyFull.has(spare.index)) {
        continue;
      }
      this.#nearlyFull.add(spare.index);
      this.#dispatcher.raise({
        kind: "spare-nearly-full",
        setup: this.#setupName,
        device: spare.device.name,
        details: `spare ${spare.index} is ${
          percent.toFixed(1)
        }% used (${slotsUsed} of ${spare.layout.slotCount} slots; threshold ${threshold}%)`,
      });
    }
  }

  #policyInputs(): PolicyInputs {
    const engine = this.#engine!;
    const scan = this.#scanner!.status();
    // Judging every region costs a pass over them: only when a policy reads the score.
    const scoreRead = this.#policySettings?.rules.some((rule) =>
      rule.when.healthScoreBelow !== undefined
    );
    return {
      pendingBlocks: engine.pendingBlocks.length,
      degraded: engine.degraded,
      spares: engine.spares.map((spare) => ({
        index: spare.index,
        state: spare.state,
        usedPercent: usedPercentOf(engine.slotsUsedOf(spare.index), spare.layout.slotCount),
        errors: engine.spareErrors[spare.index] ?? 0,
      })),
      ...(scoreRead ? { healthScore: this.#scanner!.health().setup.score } : {}),
      // The pass in progress counts once it found more: a policy need not wait hours for its end.
      scanFindings: Math.max(scan.findingsThisPass, scan.findingsLastPass),
    };
  }

  #startScan(policy: string): void {
    this.#scanner!.startPass();
    this.#log.log({
      level: "notice",
      message: `policy "${policy}" started a scan pass`,
      fields: { event: "policy-action", policy, action: "start-scan" },
    });
  }

  /** Records one policy's stopped spares and gives the engine the union of every policy's. */
  #stopAllocating(policy: string, spareIndexes: readonly number[]): void {
    const before = this.#allocationStops.get(policy) ?? [];
    if (spareIndexes.length === 0) this.#allocationStops.delete(policy);
    else this.#allocationStops.set(policy, spareIndexes);
    this.#engine!.stopAllocating([...new Set([...this.#allocationStops.values()].flat())]);
    if (before.join() === spareIndexes.join()) return;
    this.#log.log({
      level: "notice",
      message: spareIndexes.length === 0
        ? `policy "${policy}" no longer holds: spares ${before.join(", ")} take new slots again`
        : `policy "${policy}" stopped allocating on spares ${spareIndexes.join(", ")}`,
      fields: {
        event: "policy-action",
        policy,
        action: spareIndexes.length === 0 ? "resume-allocating" : "stop-allocating",
        spares: spareIndexes.join(","),
      },
    });
  }
}

function usedPercentOf(slotsUsed: number, slotCount: number): number {
  return slotCount === 0 ? 100 : (100 * slotsUsed) / slotCount;
}

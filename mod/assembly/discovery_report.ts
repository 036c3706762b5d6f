/**
 * From probes to setups: what discovery found, grouped by setup UUID, with a
 * state, a confidence score and the reason for every point lost. Pure: the
 * probes come in, the report goes out.
 *
 * | state           | when                                                                 |
 * | --------------- | -------------------------------------------------------------------- |
 * | `conflict`      | a spare on two devices (a `dd` clone), two setups of one name, or     |
 * |                 | two candidates that both match the main disk's identity              |
 * | `incomplete`    | a spare the setup lists was not found                                |
 * | `main-mismatch` | no candidate is the main disk, but one of its kind and size is       |
 * | `main-missing`  | no candidate is the main disk, nor of its kind and size              |
 * | `complete`      | every spare once, the main disk found by its recorded identity       |
 *
 * The main disk is recognised by what the setup recorded (`identity.ts`):
 * serial/WWN, a file's device and inode, a block device's number, and size.
 * Not by a hash of its contents: the client keeps writing those, so a hash
 * taken at `create` would not match a day later. The recorded fingerprint is
 * over the identity material for the same reason.
 *
 * Confidence starts at 100; each finding takes the points in
 * {@link CONFIDENCE_LOSS} and says why.
 *
 * @module
 */

import type {
  ServingMarker,
  SpareRecord,
  SuperblockPayload,
  ValidCopy,
} from "../metadata/superblock.ts";
import { compareCopies } from "../metadata/superblock.ts";
import type { CandidateProbe } from "./candidate_probe.ts";
import {
  describeIdentity,
  identityMismatch,
  type IdentityStrength,
  identityStrengthOf,
  missingLayers,
  type ProbedIdentity,
} from "./identity.ts";
import type { ProbeOutcome } from "./probe_pool.ts";

/** The version of the report's shape (`discover --json`); bumped when a field changes meaning. */
export const DISCOVERY_REPORT_VERSION = 1;

/** What a candidate turned out to be. */
export type CandidateStatus =
  | "spare"
  | "no-metadata"
  | "no-valid-copy"
  | "unreadable"
  | "timed-out"
  | "same-storage";

/** One probed candidate. */
export interface CandidateReport {
  path: string;
  status: CandidateStatus;
  kind?: "file" | "block";
  sizeBytes?: number;
  setupUuid?: string;
  spareIndex?: number;
  /** Why it is unreadable, has no valid copy, or which candidate it is the same storage as. */
  reason?: string;
  probeMs: number;
}

/** A device carrying a spare. */
export interface SpareSighting {
  path: string;
  sequence: number;
  generation: number;
  timestampMs: number;
  validCopies: number;
}

/** One spare the setup lists. */
export interface SpareFinding {
  index: number;
  uuid: string;
  /** Where the setup last saw it. */
  recordedPath: string;
  state: SpareRecord["state"];
  /** The device whose metadata wins (newest), when found. */
  found?: SpareSighting;
  /** Other devices carrying this spare, older (or as new: a clone), listed as stale. */
  stale: SpareSighting[];
}

/** Where the main disk is. */
export interface MainFinding {
  recordedPath: string;
  /** The recorded identity in words. */
  identity: string;
  strength: IdentityStrength;
  /** The candidate whose identity matches. */
  path?: string;
  /** Candidates of the main disk's kind and size whose identity differs, and how. */
  mismatches: { path: string; reason: string }[];
}

/** A conflict, what it means, and what to do. */
export interface Conflict {
  kind: "cloned-spare" | "duplicate-name" | "ambiguous-main";
  devices: string[];
  explanation: string;
  action: string;
}

/** The states of a found setup, worst first. */
export type SetupState = "conflict" | "incomplete" | "main-mismatch" | "main-missing" | "complete";

/** Points taken from the confidence, and why. */
export interface PointsLost {
  points: number;
  reason: string;
}

/** How the last `serve` of a setup ended, as its serving marker tells. */
export type LastStop = "clean" | "serving" | "not-clean";

/** One setup found on the candidates. */
export interface SetupFinding {
  uuid: string;
  name: string;
  generation: number;
  state: SetupState;
  /** 0-100: 100 less every {@link PointsLost}. */
  confidence: number;
  pointsLost: PointsLost[];
  lastStop: LastStop;
  /** The process serving it now (`lastStop` is `serving`). */
  servingPid?: number;
  /**
   * The kernel device attached for it: `/dev/nbdN`, found by its backend
   * identifier, or `/dev/ublkbN`, found by the fingerprint in its `ublksrv_flags`.
   */
  kernelDevice?: string;
  sparesExpected: number;
  sparesFound: number;
  spares: SpareFinding[];
  main: MainFinding;
  conflicts: Conflict[];
}

/** What discovery found: `discover --json` prints it as is. */
export interface DiscoveryReport {
  version: typeof DISCOVERY_REPORT_VERSION;
  elapsedMs: number;
  candidates: CandidateReport[];
  setups: SetupFinding[];
}

/**
 * The points each finding takes from the confidence. A state other than
 * `complete` takes enough to stay below any sensible threshold on its own.
 * The rest are weighed so that what happens in normal life keeps a setup at
 * or above `assemble`'s default threshold (90): a virtual disk without serial
 * (8) that lost power while served (2) is still started; a stale spare (10),
 * or a weak identity and a degraded setup together, are not.
 */
export const CONFIDENCE_LOSS = {
  conflict: 60,
  spareMissing: 40,
  mainMissing: 60,
  mainMismatch: 60,
  staleSpare: 10,
  failedSpare: 5,
  /** Per invalid copy: serve repairs it from the winner. */
  invalidCopy: 1,
  degraded: 10,
  /** The log is replayed on the next serve: normal after a power loss. */
  notClean: 2,
  identity: { "hardware": 0, "file": 5, "device-number": 8, "size-only": 30 },
  oldIdentityRecord: 5,
} as const;

/** What recognises a main disk, by the strongest identity layer recorded. */
const RECOGNISED_BY: Record<IdentityStrength, string> = {
  "hardware": "its serial or WWN",
  "file": "a file's device and inode",
  "device-number": "its device number (it has no serial or WWN)",
  "size-only": "its size",
};

/** Options for {@link buildDiscoveryReport}. */
export interface BuildDiscoveryReportOptions {
  /** How the setup's last serve ended (`serving_marker.ts` `shutdownStateOf`). */
  lastStopOf: (marker: ServingMarker | undefined) => LastStop;
  /** @default 0 */
  elapsedMs?: number;
}

/** A spare's metadata as found on one candidate. */
interface Sighting extends SpareSighting {
  storageKey: string;
  winner: ValidCopy;
}

/**
 * Groups the probes by setup and judges each setup.
 *
 * @param outcomes The probes of every candidate (and of recorded main-disk paths).
 * @returns Setups sorted by name then UUID, candidates in probe order.
 */
export function buildDiscoveryReport(
  outcomes: readonly ProbeOutcome[],
  options: BuildDiscoveryReportOptions,
): DiscoveryReport {
  const candidates: CandidateReport[] = [];
  const storagePaths = new Map<string, string>();
  const bySetup = new Map<string, Sighting[]>();
  const plainDevices: { path: string; identity: ProbedIdentity; storageKey: string }[] = [];
  for (const outcome of outcomes) {
    const report = candidateReportOf(outcome);
    candidates.push(report);
    const probe = outcome.probe;
    if (probe?.identity === undefined || probe.storageKey === undefined) continue;
    // A loop device and its file carry one spare, not two; but as main-disk candidates
    // they differ in kind, and only one of them can match what the setup recorded.
    const storage = probe.winner ? probe.storageKey : `${probe.identity.kind} ${probe.storageKey}`;
    const samePath = storagePaths.get(storage);
    if (samePath !== undefined) {
      Object.assign(report, {
        status: "same-storage",
        reason: `the same storage as "${samePath}"`,
      });
      continue;
    }
    storagePaths.set(storage, probe.path);
    if (probe.winner === undefined) {
      if (probe.validCopies === 0 && report.status === "no-metadata") {
        plainDevices.push({
          path: probe.path,
          identity: probe.identity,
          storageKey: probe.storageKey,
        });
      }
      continue;
    }
    const sightings = bySetup.get(probe.winner.header.setupUuid) ?? [];
    sightings.push(sightingOf(probe, probe.winner, probe.storageKey));
    bySetup.set(probe.winner.header.setupUuid, sightings);
  }
  // A disk that is one setup's main disk is no candidate "mismatch" for another's.
  const claimed = new Set(
    [...bySetup.values()].flatMap((sightings) =>
      plainDevices.filter((device) =>
        identityMismatch(descriptionOf(sightings).main, device.identity) === undefined
      ).map((device) => device.path)
    ),
  );
  const setups = [...bySetup.values()].map((sightings) =>
    judgeSetup(sightings, {
      plainDevices: plainDevices.filter((device) => !claimed.has(device.path)),
      claimed: plainDevices.filter((device) => claimed.has(device.path)),
      lastStopOf: options.lastStopOf,
      timedOut: candidates.filter((c) => c.status === "timed-out").map((c) => c.path),
    })
  );
  markDuplicateNames(setups);
  setups.sort((a, b) => a.name.localeCompare(b.name) || a.uuid.localeCompare(b.uuid));
  return {
    version: DISCOVERY_REPORT_VERSION,
    elapsedMs: Math.round(options.elapsedMs ?? 0),
    candidates,
    setups,
  };
}

function candidateReportOf(outcome: ProbeOutcome): CandidateReport {
  const report: CandidateReport = {
    path: outcome.path,
    status: "no-metadata",
    probeMs: Math.round(outcome.elapsedMs * 10) / 10,
  };
  const probe = outcome.probe;
  if (outcome.timedOut || probe === undefined) {
    return { ...report, status: "timed-out", reason: "the probe did not answer in time" };
  }
  if (probe.identity) {
    report.kind = probe.identity.kind;
    report.sizeBytes = probe.identity.sizeBytes;
  }
  if (probe.error !== undefined) return { ...report, status: "unreadable", reason: probe.error };
  if (probe.winner !== undefined) {
    return {
      ...report,
      status: "spare",
      setupUuid: probe.winner.header.setupUuid,
      spareIndex: probe.winner.header.spareIndex,
    };
  }
  const unreadable = probe.invalidReasons.filter((reason) => reason.startsWith("unreadable"));
  if (unreadable.length === probe.invalidReasons.length && unreadable.length > 0) {
    return { ...report, status: "unreadable", reason: unreadable[0] };
  }
  const looksLikeOurs = probe.invalidReasons.some((reason) =>
    reason !== "no dm-remap magic" && !reason.startsWith("unreadable")
  );
  if (looksLikeOurs) {
    return {
      ...report,
      status: "no-valid-copy",
      reason: `no valid metadata copy: ${probe.invalidReasons.join("; ")}`,
    };
  }
  return report;
}

function sightingOf(probe: CandidateProbe, winner: ValidCopy, storageKey: string): Sighting {
  return {
    path: probe.path,
    sequence: winner.header.sequence,
    generation: winner.payload.setup.generation,
    timestampMs: winner.header.timestampMs,
    validCopies: probe.validCopies,
    storageKey,
    winner,
  };
}

/** Newest first: setup generation, then the copy rule (sequence, timestamp). */
function compareSightings(a: Sighting, b: Sighting): number {
  return (b.generation - a.generation) || compareCopies(a.winner.header, b.winner.header);
}

/** The newest description of a setup among its spares' metadata. */
function descriptionOf(sightings: readonly Sighting[]): SuperblockPayload {
  return [...sightings].sort(compareSightings)[0]!.winner.payload;
}

/** What a setup is judged against: the devices without metadata, and what could not be probed. */
interface JudgeContext {
  /** Devices no setup claims as its main disk. */
  plainDevices: readonly { path: string; identity: ProbedIdentity }[];
  /** Devices that match some setup's main disk. */
  claimed: readonly { path: string; identity: ProbedIdentity }[];
  lastStopOf: (marker: ServingMarker | undefined) => LastStop;
  /** Candidates whose probe timed out: a missing disk may be one of them. */
  timedOut: readonly string[];
}

function judgeSetup(sightings: Sighting[], devices: JudgeContext): SetupFinding {
  const description = descriptionOf(sightings);
  const conflicts: Conflict[] = [];
  const spares = description.spares.map((record) => {
    const carrying = sightings
      .filter((sighting) => sighting.winner.payload.spareIndex === record.index)
      .filter((sighting) => sighting.winner.payload.spares[record.index]?.uuid === record.uuid)
      .sort(compareSightings);
    const finding: SpareFinding = {
      index: record.index,
      uuid: record.uuid,
      recordedPath: record.path,
      state: record.state,
      stale: carrying.slice(1).map(publicSighting),
    };
    if (carrying[0] !== undefined) finding.found = publicSighting(carrying[0]);
    if (carrying.length > 1) conflicts.push(clonedSpareConflict(description, finding));
    return finding;
  });
  const main = locateMain(description, devices);
  if (main.matches.length > 1) conflicts.push(ambiguousMainConflict(description, main.matches));
  const lastStop = devices.lastStopOf(description.setup.serving);
  const finding: SetupFinding = {
    uuid: description.setup.uuid,
    name: description.setup.name,
    generation: description.setup.generation,
    state: "complete",
    confidence: 100,
    pointsLost: [],
    lastStop,
    sparesExpected: description.spares.length,
    sparesFound: spares.filter((spare) => spare.found !== undefined).length,
    spares,
    main: main.finding,
    conflicts,
  };
  if (lastStop === "serving") finding.servingPid = description.setup.serving?.pid;
  scoreSetup(finding, {
    description,
    mainIdentity: main.matches[0]?.identity,
    maybeOn: maybeOn(devices.timedOut),
  });
  return finding;
}

function publicSighting(sighting: Sighting): SpareSighting {
  const { path, sequence, generation, timestampMs, validCopies } = sighting;
  return { path, sequence, generation, timestampMs, validCopies };
}

/** The candidates that are the main disk, and those of its kind and size that are not. */
function locateMain(
  description: SuperblockPayload,
  devices: JudgeContext,
): { finding: MainFinding; matches: { path: string; identity: ProbedIdentity }[] } {
  const recorded = description.main;
  const matches = devices.claimed.filter((device) =>
    identityMismatch(recorded, device.identity) === undefined
  );
  const mismatches = [];
  for (const device of devices.plainDevices) {
    const mismatch = identityMismatch(recorded, device.identity);
    if (mismatch?.replaceable) mismatches.push({ path: device.path, reason: mismatch.reason });
  }
  const finding: MainFinding = {
    recordedPath: recorded.path,
    identity: describeIdentity(recorded).description,
    strength: identityStrengthOf(recorded),
    mismatches,
  };
  if (matches.length === 1) finding.path = matches[0]!.path;
  return { finding, matches };
}

function clonedSpareConflict(description: SuperblockPayload, spare: SpareFinding): Conflict {
  const all = [spare.found!, ...spare.stale];
  const list = all.map((sighting) =>
    `"${sighting.path}" (generation ${sighting.generation}, sequence ${sighting.sequence})`
  ).join(", ");
  return {
    kind: "cloned-spare",
    devices: all.map((sighting) => sighting.path),
    explanation:
      `spare ${spare.index} (${spare.uuid}) of setup "${description.setup.name}" is on ` +
      `${all.length} devices: ${list}. One is a copy of the other (a dd clone, or a disk ` +
      `restored from an image); serving from either could hide remaps the other holds`,
    action: `keep the device the setup should use ("${spare.found!.path}" is the newest), ` +
      `then detach the other or wipe its metadata (wipefs -a), and run discover again`,
  };
}

function ambiguousMainConflict(
  description: SuperblockPayload,
  matches: readonly { path: string }[],
): Conflict {
  return {
    kind: "ambiguous-main",
    devices: matches.map((match) => match.path),
    explanation: `${matches.length} candidates match the recorded identity of the main disk of ` +
      `setup "${description.setup.name}" (${describeIdentity(description.main).description}): ` +
      `the identity recorded is too weak to tell them apart`,
    action: `serve the setup with --main naming the right disk, and --force to record its identity`,
  };
}

/** Two setups of one name: `serve NAME` cannot tell which is meant. */
function markDuplicateNames(setups: SetupFinding[]): void {
  for (const setup of setups) {
    const others = setups.filter((other) => other.name === setup.name && other !== setup);
    if (others.length === 0) continue;
    setup.conflicts.push({
      kind: "duplicate-name",
      devices: setup.spares.flatMap((spare) => spare.found ? [spare.found.path] : []),
      explanation: `setup "${setup.name}" (${setup.uuid}) shares its name with ` +
        others.map((other) => other.uuid).join(", ") +
        `: a command naming "${setup.name}" cannot tell which is meant`,
      action: `assemble or serve it by UUID or by its spares (--spare), and detach the setup ` +
        `that does not belong on this machine`,
    });
    lose(
      setup,
      CONFIDENCE_LOSS.conflict,
      `setup name "${setup.name}" is also used by ` +
        others.map((other) => other.uuid).join(", "),
    );
    setup.state = "conflict";
  }
}

function lose(setup: SetupFinding, points: number, reason: string): void {
  if (points === 0) return;
  setup.pointsLost.push({ points, reason });
  setup.confidence = Math.max(0, setup.confidence - points);
}

/** Sets the state and takes the points for every finding. */
function scoreSetup(
  setup: SetupFinding,
  context: {
    description: SuperblockPayload;
    mainIdentity: ProbedIdentity | undefined;
    /** Said after "not found": where it may be (a candidate that timed out), or "". */
    maybeOn: string;
  },
): void {
  const { description } = context;
  const states: SetupState[] = [];
  for (const conflict of setup.conflicts) {
    states.push("conflict");
    lose(setup, CONFIDENCE_LOSS.conflict, conflict.explanation);
  }
  for (const spare of setup.spares) scoreSpare(setup, spare, context.maybeOn);
  if (setup.sparesFound < setup.sparesExpected) states.push("incomplete");
  const mainState = scoreMain(setup, context.maybeOn);
  if (mainState !== undefined) states.push(mainState);
  const strength = setup.main.strength;
  lose(
    setup,
    CONFIDENCE_LOSS.identity[strength],
    `weak identity: the main disk is recognised by ${RECOGNISED_BY[strength]} only`,
  );
  if (context.mainIdentity && missingLayers(description.main, context.mainIdentity)) {
    lose(
      setup,
      CONFIDENCE_LOSS.oldIdentityRecord,
      "the setup records the main disk's size and serial only (made by an older version); " +
        "serve records the rest",
    );
  }
  if (description.setup.state === "degraded") {
    lose(
      setup,
      CONFIDENCE_LOSS.degraded,
      "the setup is degraded: a failed block could not be remapped",
    );
  }
  if (setup.lastStop === "not-clean") {
    lose(
      setup,
      CONFIDENCE_LOSS.notClean,
      "the last serve did not stop cleanly; the next serve replays the remap log",
    );
  }
  const order: SetupState[] = ["conflict", "incomplete", "main-mismatch", "main-missing"];
  setup.state = order.find((state) => states.includes(state)) ?? "complete";
}

/** Where a disk not found may be: on a candidate whose probe timed out. */
function maybeOn(timedOut: readonly string[]): string {
  if (timedOut.length === 0) return "";
  return `; it may be on a candidate whose probe timed out: ${timedOut.join(", ")}`;
}

/** The main disk's state when it was not found (none when ambiguous: that is a conflict). */
function scoreMain(setup: SetupFinding, whereMaybe: string): SetupState | undefined {
  if (setup.main.path !== undefined) return undefined;
  if (setup.conflicts.some((conflict) => conflict.kind === "ambiguous-main")) return undefined;
  const mismatch = setup.main.mismatches[0];
  if (mismatch !== undefined) {
    lose(
      setup,
      CONFIDENCE_LOSS.mainMismatch,
      `"${mismatch.path}" has the main disk's kind and size but is not it: ${mismatch.reason}`,
    );
    return "main-mismatch";
  }
  lose(
    setup,
    CONFIDENCE_LOSS.mainMissing,
    `the main disk (${setup.main.identity}, last at "${setup.main.recordedPath}") is not ` +
      `among the candidates${whereMaybe}`,
  );
  return "main-missing";
}

function scoreSpare(setup: SetupFinding, spare: SpareFinding, whereMaybe: string): void {
  if (spare.found === undefined) {
    lose(
      setup,
      CONFIDENCE_LOSS.spareMissing,
      `spare ${spare.index} (${spare.uuid}, last at ` +
        `"${spare.recordedPath}") was not found${whereMaybe}`,
    );
    return;
  }
  if (spare.state === "failed") {
    lose(
      setup,
      CONFIDENCE_LOSS.failedSpare,
      `spare ${spare.index} is marked failed: it takes ` +
        `no new remaps`,
    );
  } else if (spare.found.generation < setup.generation) {
    lose(
      setup,
      CONFIDENCE_LOSS.staleSpare,
      `stale spare: spare ${spare.index} on ` +
        `"${spare.found.path}" describes generation ${spare.found.generation}, the newest is ` +
        `${setup.generation} (it missed a change to the setup)`,
    );
  }
  const invalid = 5 - spare.found.validCopies;
  if (invalid > 0) {
    lose(
      setup,
      CONFIDENCE_LOSS.invalidCopy * invalid,
      `copies invalid: spare ${spare.index} on ` +
        `"${spare.found.path}" has ${spare.found.validCopies}/5 valid copies (serve repairs them)`,
    );
  }
}

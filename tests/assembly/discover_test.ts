/**
 * Discovery: setups found from image files alone, each judged.
 *
 * Goal: every state the issue names (complete, incomplete, stale, conflict,
 * foreign, main-missing, main-mismatch) is reported with its reason, a dead
 * device is reported "timed out" without stalling discovery, a loop device
 * over a spare's file is not mistaken for a clone, and discovery writes
 * nothing. Method: table rows of scenario (setups made with `createSetup` on
 * sparse files, then changed as the scenario says) → expected state, reason
 * and confidence; probes run in this thread (`probeInProcess`) except where
 * the workers themselves are under test.
 */

import assert from "node:assert/strict";
import { discover } from "../../mod/assembly/discover.ts";
import type { DiscoveryReport, SetupFinding } from "../../mod/assembly/discovery_report.ts";
import { probeInProcess, ProbePool } from "../../mod/assembly/probe_pool.ts";
import { createSetup } from "../../mod/assembly/create.ts";
import { closeAll, openPath } from "../../mod/assembly/open_path.ts";
import { nbdBackendOf } from "../../mod/device/block_devices.ts";
import { bumpGeneration, hashFiles, MAIN_BYTES, makeImage, makeImageSetup } from "./_setups.ts";

const PROBE_WORKER = new URL("./_probe_worker.ts", import.meta.url);

function discoverIn(directory: string, paths?: string[]): Promise<DiscoveryReport> {
  return discover({
    scanDirs: [directory],
    paths,
    blockDevices: false,
    prober: probeInProcess,
    lastStopOf: () => "clean",
  });
}

function setupNamed(report: DiscoveryReport, name: string): SetupFinding {
  const setup = report.setups.find((found) => found.name === name);
  assert.ok(setup, `setup "${name}" found in ${JSON.stringify(report.setups.map((s) => s.name))}`);
  return setup;
}

/** A scenario: what to do to a fresh two-spare setup "alpha" in `directory`, and what to expect. */
interface Scenario {
  name: string;
  change: (directory: string) => Promise<void>;
  state: SetupFinding["state"];
  /** Matches one of the reasons points were lost for, or a conflict's explanation. */
  reason?: RegExp;
  confidence: number;
  check?: (report: DiscoveryReport, directory: string) => void;
}

const SCENARIOS: Scenario[] = [
  {
    name: "complete: every spare and the main disk",
    change: async () => {},
    state: "complete",
    reason: /weak identity: the main disk is recognised by a file's device and inode only/,
    confidence: 95,
  },
  {
    name: "incomplete: a spare is missing",
    change: (directory) => Deno.remove(`${directory}/alpha-s1.img`),
    state: "incomplete",
    reason: /spare 1 \(.*, last at ".*alpha-s1\.img"\) was not found/,
    confidence: 55,
  },
  {
    name: "stale: one spare describes an older generation",
    change: (directory) => bumpGeneration(`${directory}/alpha-s0.img`),
    state: "complete",
    reason: /stale spare: spare 1 on ".*alpha-s1\.img" describes generation 1, the newest is 2/,
    confidence: 85,
    check: (report) => assert.equal(setupNamed(report, "alpha").generation, 2),
  },
  {
    name: "conflict: a dd clone of a spare",
    change: (directory) => Deno.copyFile(`${directory}/alpha-s0.img`, `${directory}/clone.img`),
    state: "conflict",
    reason: /spare 0 .* is on 2 devices/,
    confidence: 35,
    check: (report, directory) => {
      const [conflict] = setupNamed(report, "alpha").conflicts;
      assert.equal(conflict?.kind, "cloned-spare");
      assert.deepEqual(conflict.devices.toSorted(), [
        `${directory}/alpha-s0.img`,
        `${directory}/clone.img`,
      ]);
      assert.match(conflict.action, /detach the other or wipe its metadata/);
      assert.equal(setupNamed(report, "alpha").spares[0]!.stale.length, 1);
    },
  },
  {
    name: "conflict: two setups have one name",
    change: async (directory) => {
      await makeImageSetup(directory, { name: "alpha", prefix: "other-", spareCount: 1 });
    },
    state: "conflict",
    reason: /setup name "alpha" is also used by/,
    confidence: 35,
    check: (report) => {
      const both = report.setups.filter((setup) => setup.name === "alpha");
      assert.equal(both.length, 2);
      for (const setup of both) {
        assert.equal(setup.state, "conflict");
        assert.equal(setup.conflicts[0]?.kind, "duplicate-name");
      }
    },
  },
  {
    name: "foreign: a file that is no spare, and a spare of another setup",
    change: async (directory) => {
      await Deno.writeFile(`${directory}/junk.img`, crypto.getRandomValues(new Uint8Array(65536)));
      const other = await Deno.makeTempDir({ prefix: "dm-remap-discover-other-" });
      await makeImageSetup(other, { name: "beta" });
      await Deno.rename(`${other}/beta-s1.img`, `${directory}/beta-s1.img`);
      await Deno.remove(other, { recursive: true });
    },
    state: "complete",
    reason: /weak identity/,
    confidence: 95,
    check: (report, directory) => {
      const junk = report.candidates.find((c) => c.path === `${directory}/junk.img`);
      assert.equal(junk?.status, "no-metadata");
      const beta = setupNamed(report, "beta");
      assert.equal(beta.state, "incomplete");
      assert.deepEqual(beta.spares.map((spare) => spare.found?.path), [
        undefined,
        `${directory}/beta-s1.img`,
      ]);
      assert.equal(setupNamed(report, "alpha").sparesFound, 2);
    },
  },
  {
    name: "main-missing: the main disk is gone",
    change: (directory) => Deno.remove(`${directory}/alpha-main.img`),
    state: "main-missing",
    reason: /the main disk \(file on device .*\) is not among the candidates/,
    confidence: 35,
  },
  {
    name: "main-mismatch: a file of the main disk's size, but not it",
    change: async (directory) => {
      // Made before the main disk goes, so it cannot take the main disk's inode number.
      await makeImage(`${directory}/impostor.img`, MAIN_BYTES);
      await Deno.remove(`${directory}/alpha-main.img`);
    },
    state: "main-mismatch",
    reason:
      /"[^"]*impostor\.img" has the main disk's kind and size but is not it: it is another file/,
    confidence: 35,
    check: (report) => assert.equal(setupNamed(report, "alpha").main.mismatches.length, 1),
  },
];

for (const scenario of SCENARIOS) {
  Deno.test(`discover() reports ${scenario.name}`, async () => {
    const directory = await Deno.makeTempDir({ prefix: "dm-remap-discover-" });
    try {
      await makeImageSetup(directory, { name: "alpha" });
      await scenario.change(directory);
      const report = await discoverIn(directory);
      const alpha = report.setups.find((setup) =>
        setup.name === "alpha" && setup.spares.some((s) => s.found?.path.includes("alpha-"))
      );
      assert.ok(alpha, "setup alpha is found");
      assert.equal(alpha.state, scenario.state, JSON.stringify(alpha.pointsLost));
      assert.equal(alpha.confidence, scenario.confidence, JSON.stringify(alpha.pointsLost));
      const reasons = alpha.pointsLost.map((lost) => lost.reason);
      if (scenario.reason) {
        assert.ok(
          reasons.some((reason) => scenario.reason!.test(reason)),
          `a reason matches ${scenario.reason}: ${reasons.join(" | ")}`,
        );
      }
      assert.equal(
        alpha.pointsLost.reduce((sum, lost) => sum + lost.points, 0),
        100 - alpha.confidence,
        "every point lost has its reason",
      );
      scenario.check?.(report, directory);
    } finally {
      await Deno.remove(directory, { recursive: true });
    }
  });
}

Deno.test("discover() finds the main disk at its recorded path outside the scan directories", async () => {
  const spares = await Deno.makeTempDir({ prefix: "dm-remap-discover-" });
  const mains = await Deno.makeTempDir({ prefix: "dm-remap-discover-main-" });
  try {
    const setup = await makeImageSetup(spares, { name: "alpha", mainDirectory: mains });
    const alpha = setupNamed(await discoverIn(spares), "alpha");
    assert.equal(alpha.state, "complete");
    assert.equal(alpha.main.path, setup.mainPath);
  } finally {
    await Deno.remove(spares, { recursive: true });
    await Deno.remove(mains, { recursive: true });
  }
});

Deno.test("discover() on workers writes nothing and reports the same as in process", async () => {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-discover-" });
  try {
    await makeImageSetup(directory, { name: "alpha" });
    await makeImageSetup(directory, { name: "beta", spareCount: 1 });
    await Deno.copyFile(`${directory}/beta-s0.img`, `${directory}/beta-clone.img`);
    const before = await hashFiles(directory);
    const pool = new ProbePool({ workerUrl: PROBE_WORKER, timeoutMs: 10_000 });
    const report = await discover({
      scanDirs: [directory],
      blockDevices: false,
      prober: (paths) => pool.probe(paths),
      lastStopOf: () => "clean",
    }).finally(() => pool.close());
    assert.deepEqual(await hashFiles(directory), before);
    const inProcess = await discoverIn(directory);
    assert.deepEqual(
      report.setups.map((setup) => [setup.name, setup.state, setup.confidence]),
      inProcess.setups.map((setup) => [setup.name, setup.state, setup.confidence]),
    );
    assert.deepEqual(report.setups.map((setup) => setup.state), ["complete", "conflict"]);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("ProbePool reports a probe that never answers as timed out, and goes on", async () => {
  const hanging = new URL("./_hanging_probe_worker.ts", import.meta.url);
  const startMs = performance.now();
  const pool = new ProbePool({ workerUrl: hanging, timeoutMs: 500, workersMax: 2 });
  const outcomes = await pool.probe(["/ok/1", "/hang/1", "/ok/2", "/hang/2", "/ok/3"]);
  const again = await pool.probe(["/ok/4", "/ok/1"]);
  pool.close();
  assert.deepEqual(again.map((outcome) => [outcome.path, outcome.timedOut]), [
    ["/ok/4", false],
    ["/ok/1", false],
  ]);
  const elapsedMs = performance.now() - startMs;
  assert.deepEqual(outcomes.map((outcome) => [outcome.path, outcome.timedOut]), [
    ["/ok/1", false],
    ["/hang/1", true],
    ["/ok/2", false],
    ["/hang/2", true],
    ["/ok/3", false],
  ]);
  for (const outcome of outcomes.filter((o) => o.timedOut)) {
    assert.ok(outcome.elapsedMs >= 500 && outcome.elapsedMs < 2_000, `${outcome.elapsedMs} ms`);
  }
  // The hanging probes never end: finishing at all shows nobody waited for them. (Under
  // `deno test` each worker is type-checked as it starts, which takes seconds, so the
  // total says little more.)
  assert.ok(elapsedMs < 120_000, `the whole probe took ${elapsedMs} ms`);
});

Deno.test("discover() reports a candidate whose probe timed out", async () => {
  const report = await discover({
    paths: ["/dev/dead"],
    scanDirs: [],
    prober: (paths) =>
      Promise.resolve(paths.map((path) => ({ path, elapsedMs: 2000, timedOut: true }))),
    lastStopOf: () => "clean",
  });
  assert.deepEqual(report.candidates, [{
    path: "/dev/dead",
    status: "timed-out",
    reason: "the probe did not answer in time",
    probeMs: 2000,
  }]);
});

Deno.test("discover() counts a loop device over a spare's file as the same storage, not a clone", async () => {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-discover-" });
  let loop: string | undefined;
  try {
    const setup = await makeImageSetup(directory, { name: "alpha" });
    loop = await losetup(setup.sparePaths[0]!);
    const report = await discoverIn(directory, [...setup.sparePaths, setup.mainPath, loop]);
    const alpha = setupNamed(report, "alpha");
    assert.equal(alpha.state, "complete", JSON.stringify(alpha.pointsLost));
    const candidate = report.candidates.find((c) => c.path === loop);
    assert.equal(candidate?.status, "same-storage");
    assert.match(candidate.reason!, /alpha-s0\.img/);
  } finally {
    if (loop) await run(["losetup", "-d", loop]);
    await Deno.remove(directory, { recursive: true });
  }
});

async function run(command: string[]): Promise<string> {
  const output = await new Deno.Command(command[0]!, { args: command.slice(1) }).output();
  const text = new TextDecoder().decode(output.stdout).trim();
  assert.equal(output.code, 0, `${command.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
  return text;
}

async function losetup(file: string): Promise<string> {
  return await run(["losetup", "--find", "--show", file]);
}

Deno.test("discover() over loop devices finds the main disk file behind the loop device", async () => {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-discover-" });
  const loops: string[] = [];
  try {
    const setup = await makeImageSetup(directory, { name: "alpha" });
    for (const file of [setup.mainPath, ...setup.sparePaths]) loops.push(await losetup(file));
    const report = await discoverIn(`${directory}/none`, loops);
    const alpha = setupNamed(report, "alpha");
    assert.equal(alpha.state, "complete", JSON.stringify(alpha.pointsLost));
    assert.deepEqual(alpha.spares.map((spare) => spare.found?.path), loops.slice(1));
    assert.equal(alpha.main.path, setup.mainPath);
  } finally {
    for (const loop of loops) await run(["losetup", "-d", loop]);
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("discover() takes points for invalid copies and for an unclean stop", async () => {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-discover-" });
  try {
    const setup = await makeImageSetup(directory, { name: "alpha" });
    // Copy 1 of spare 1 (sector 1024) overwritten: 4 of 5 copies stay valid.
    const file = await Deno.open(setup.sparePaths[1]!, { write: true });
    await file.seek(1024 * 512, Deno.SeekMode.Start);
    await file.write(new Uint8Array(512).fill(0xee));
    file.close();
    for (
      const [lastStop, confidence, reason] of [
        ["not-clean", 92, /the last serve did not stop cleanly/],
        ["clean", 94, /copies invalid: spare 1 on ".*alpha-s1\.img" has 4\/5 valid copies/],
      ] as const
    ) {
      const report = await discover({
        scanDirs: [directory],
        blockDevices: false,
        prober: probeInProcess,
        lastStopOf: () => lastStop,
      });
      const alpha = setupNamed(report, "alpha");
      assert.equal(alpha.state, "complete");
      assert.equal(alpha.confidence, confidence, JSON.stringify(alpha.pointsLost));
      assert.ok(alpha.pointsLost.some((lost) => reason.test(lost.reason)));
    }
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("discover() report keeps the documented shape of discover --json", async () => {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-discover-" });
  try {
    await makeImageSetup(directory, { name: "alpha" });
    await Deno.copyFile(`${directory}/alpha-s0.img`, `${directory}/clone.img`);
    const report = await discoverIn(directory);
    assert.deepEqual(Object.keys(report).sort(), ["candidates", "elapsedMs", "setups", "version"]);
    assert.equal(report.version, 1);
    const [setup] = report.setups;
    assert.deepEqual(Object.keys(setup!).sort(), [
      "confidence",
      "conflicts",
      "generation",
      "lastStop",
      "main",
      "name",
      "pointsLost",
      "spares",
      "sparesExpected",
      "sparesFound",
      "state",
      "uuid",
    ]);
    assert.deepEqual(Object.keys(setup!.spares[0]!).sort(), [
      "found",
      "index",
      "recordedPath",
      "stale",
      "state",
      "uuid",
    ]);
    assert.deepEqual(Object.keys(setup!.spares[0]!.found!).sort(), [
      "generation",
      "path",
      "sequence",
      "timestampMs",
      "validCopies",
    ]);
    assert.deepEqual(Object.keys(setup!.main).sort(), [
      "identity",
      "mismatches",
      "path",
      "recordedPath",
      "strength",
    ]);
    assert.deepEqual(Object.keys(setup!.conflicts[0]!).sort(), [
      "action",
      "devices",
      "explanation",
      "kind",
    ]);
    const spare = report.candidates.find((candidate) => candidate.status === "spare");
    assert.deepEqual(Object.keys(spare!).sort(), [
      "kind",
      "path",
      "probeMs",
      "setupUuid",
      "sizeBytes",
      "spareIndex",
      "status",
    ]);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("discover() takes points for a main disk known by its device number only", async () => {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-discover-" });
  let loop: string | undefined;
  try {
    await makeImage(`${directory}/main.img`, MAIN_BYTES);
    loop = await losetup(`${directory}/main.img`);
    const spare = `${directory}/s0.img`;
    await makeImage(spare, 32 * 1024 * 1024);
    const main = await openPath(loop, { readOnly: false });
    const device = (await openPath(spare, { readOnly: false })).device;
    try {
      await createSetup({
        name: "virtual",
        main,
        spares: [{ device, path: spare }],
        blockBytes: 4096,
      });
    } finally {
      await closeAll([main.device, device]);
    }
    const report = await discoverIn(directory, [spare, loop]);
    const virtual = setupNamed(report, "virtual");
    assert.deepEqual([virtual.state, virtual.confidence, virtual.main.path], [
      "complete",
      92,
      loop,
    ]);
    assert.deepEqual(virtual.pointsLost, [{
      points: 8,
      reason:
        "weak identity: the main disk is recognised by its device number (it has no serial or WWN) only",
    }]);
  } finally {
    if (loop) await run(["losetup", "-d", loop]);
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("discover() says a missing spare may be on a candidate whose probe timed out", async () => {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-discover-" });
  try {
    const setup = await makeImageSetup(directory, { name: "alpha" });
    const dead = setup.sparePaths[1]!;
    const report = await discover({
      scanDirs: [directory],
      blockDevices: false,
      prober: async (paths) =>
        (await probeInProcess(paths)).map((outcome) =>
          outcome.path === dead ? { path: dead, elapsedMs: 2000, timedOut: true } : outcome
        ),
      lastStopOf: () => "clean",
    });
    const alpha = setupNamed(report, "alpha");
    assert.equal(alpha.state, "incomplete");
    assert.ok(
      alpha.pointsLost.some((lost) =>
        lost.reason.endsWith(
          `was not found; it may be on a candidate whose probe timed out: ${dead}`,
        )
      ),
      JSON.stringify(alpha.pointsLost),
    );
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("discover() names the kernel device attached for a setup, found by its backend", async () => {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-discover-" });
  try {
    await makeImageSetup(directory, { name: "alpha" });
    await makeImageSetup(directory, { name: "beta", spareCount: 1 });
    const unattached = await discoverIn(directory);
    const alpha = setupNamed(unattached, "alpha");
    assert.equal(alpha.kernelDevice, undefined);
    const sysfs = `${directory}/sysfs`;
    await Deno.mkdir(`${sysfs}/block/nbd3`, { recursive: true });
    await Deno.writeTextFile(`${sysfs}/block/nbd3/backend`, `${nbdBackendOf(alpha.uuid)}\n`);
    const report = await discover({
      scanDirs: [directory],
      blockDevices: false,
      sysfsRoot: sysfs,
      prober: probeInProcess,
      lastStopOf: () => "clean",
    });
    assert.equal(setupNamed(report, "alpha").kernelDevice, "/dev/nbd3");
    assert.equal(setupNamed(report, "beta").kernelDevice, undefined);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("ProbePool gives a worker as long to start as a probe to answer, when that is longer", async () => {
  // Slow probes are asked for where loading is slow too (the boot units under emulation): a
  // worker that starts after PROBE_WORKER_START_MS_MAX must not fail the discovery then.
  const slow = new URL("./_slow_start_probe_worker.ts", import.meta.url);
  const pool = new ProbePool({ workerUrl: slow, timeoutMs: 60_000, workersMax: 1 });
  try {
    const outcomes = await pool.probe(["/slow/1"]);
    assert.deepEqual(outcomes.map((outcome) => [outcome.path, outcome.timedOut]), [
      ["/slow/1", false],
    ]);
  } finally {
    pool.close();
  }
});

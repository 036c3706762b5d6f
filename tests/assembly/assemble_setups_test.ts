/**
 * Assembly: which found setups are started, and that each is started once.
 *
 * Goal: a complete setup at or above the threshold is started; one that is
 * incomplete, conflicting, main-missing, main-mismatched or below the
 * threshold is refused with its reason; a running one is left alone; a dry
 * run starts and records nothing; two assemblies at once start each setup
 * once; `--incremental` records spares and starts only when all are seen.
 * Method: setups on image files, discovery in this thread, a starter that
 * records its calls instead of spawning `serve`.
 */

import assert from "node:assert/strict";
import {
  assembleSetups,
  type AssembleSetupsOptions,
  type StartRecord,
  withExclusiveLock,
} from "../../mod/assembly/assemble_setups.ts";
import type { AssemblyDecision } from "../../mod/assembly/assembly_plan.ts";
import { heldByAnotherProcess } from "../../mod/device/device_users.ts";
import { discover } from "../../mod/assembly/discover.ts";
import { probeInProcess } from "../../mod/assembly/probe_pool.ts";
import { openFileDevice } from "../../mod/device/file_device.ts";
import { hashFiles, MAIN_BYTES, makeImage, makeImageSetup } from "./_setups.ts";

/** A fresh directory of images and a runtime directory, and a starter that records its calls. */
async function scene() {
  const images = await Deno.makeTempDir({ prefix: "dm-remap-assemble-" });
  const runtime = await Deno.makeTempDir({ prefix: "dm-remap-assemble-run-" });
  const starts: AssemblyDecision[] = [];
  const options = (overrides: Partial<AssembleSetupsOptions> = {}): AssembleSetupsOptions => ({
    mode: { kind: "scan" },
    dryRun: false,
    threshold: 90,
    discover: (paths) =>
      discover({
        paths,
        scanDirs: [images],
        blockDevices: false,
        prober: probeInProcess,
        lastStopOf: () => "clean",
      }),
    starter: (decision) => {
      starts.push(decision);
      return Promise.resolve({ name: decision.name, pid: 4242 });
    },
    runtimeDirectory: runtime,
    // Every recorded start still runs: the recorded starter's "processes" never end.
    isStartAlive: () => Promise.resolve(true),
    ...overrides,
  });
  const cleanup = async () => {
    await Deno.remove(images, { recursive: true });
    await Deno.remove(runtime, { recursive: true });
  };
  return { images, runtime, starts, options, cleanup };
}

Deno.test("assembleSetups() --dry-run decides for each state and starts nothing", async () => {
  const { images, runtime, starts, options, cleanup } = await scene();
  try {
    await makeImageSetup(images, { name: "complete" });
    const incomplete = await makeImageSetup(images, { name: "incomplete" });
    await Deno.remove(incomplete.sparePaths[1]!);
    const cloned = await makeImageSetup(images, { name: "cloned" });
    await Deno.copyFile(cloned.sparePaths[0]!, `${images}/cloned-copy.img`);
    // Of a size of its own: the other setups' main disks are no candidates for it.
    const missing = await makeImageSetup(images, { name: "nomain", mainBytes: MAIN_BYTES / 2 });
    await Deno.remove(missing.mainPath);
    const mismatched = await makeImageSetup(images, { name: "mismatched" });
    await makeImage(`${images}/mismatched-other.img`, MAIN_BYTES);
    await Deno.remove(mismatched.mainPath);
    const before = await hashFiles(images);

    const outcome = await assembleSetups(options({ dryRun: true }));
    const rows = outcome.decisions.map((d) => [d.name, d.action, d.state, d.reasons[0]]);
    const expected: [string, string, string, RegExp][] = [
      ["cloned", "refuse", "conflict", /the setup is conflict/],
      ["complete", "start", "complete", /-5: weak identity/],
      ["incomplete", "refuse", "incomplete", /the setup is incomplete/],
      ["mismatched", "refuse", "main-mismatch", /the setup is main-mismatch/],
      ["nomain", "refuse", "main-missing", /the setup is main-missing/],
    ];
    assert.equal(rows.length, expected.length, JSON.stringify(rows));
    for (const [index, [name, action, state, reason]] of expected.entries()) {
      const row = rows[index]!;
      assert.deepEqual(row.slice(0, 3), [name, action, state]);
      assert.match(String(row[3]), reason);
    }
    const reasonsOf = (name: string) =>
      outcome.decisions.find((d) => d.name === name)!.reasons.join(" | ");
    assert.match(reasonsOf("cloned"), /what to do: keep the device/);
    assert.match(reasonsOf("incomplete"), /spare 1 .* was not found/);
    assert.match(reasonsOf("mismatched"), /mismatched-other\.img" has the main disk's kind/);
    assert.match(reasonsOf("nomain"), /is not among the candidates/);
    assert.deepEqual(starts, []);
    assert.deepEqual(outcome.started, {});
    assert.deepEqual(await hashFiles(images), before);
    assert.deepEqual([...Deno.readDirSync(runtime)].map((entry) => entry.name), ["assemble.lock"]);
  } finally {
    await cleanup();
  }
});

Deno.test("assembleSetups() starts a setup only at or above the threshold", async () => {
  const { images, starts, options, cleanup } = await scene();
  try {
    await makeImageSetup(images, { name: "alpha" });
    const refused = await assembleSetups(options({ threshold: 96 }));
    assert.equal(refused.decisions[0]?.action, "refuse");
    assert.match(refused.decisions[0]!.reasons[0]!, /confidence 95 is below the threshold 96/);
    assert.equal(starts.length, 0);
    const started = await assembleSetups(options({ threshold: 95 }));
    assert.equal(started.decisions[0]?.action, "start");
    assert.deepEqual(starts.map((decision) => decision.name), ["alpha"]);
    assert.deepEqual(starts[0]!.sparePaths, [`${images}/alpha-s0.img`, `${images}/alpha-s1.img`]);
    assert.equal(starts[0]!.mainPath, `${images}/alpha-main.img`);
  } finally {
    await cleanup();
  }
});

Deno.test("assembleSetups() run twice at once starts each setup exactly once", async () => {
  const { images, starts, options, cleanup } = await scene();
  try {
    await makeImageSetup(images, { name: "alpha" });
    await makeImageSetup(images, { name: "beta", spareCount: 1 });
    // A start that takes a while, as spawning does: without the lock the other run would
    // decide meanwhile, before the start is recorded, and start the setup again.
    const record = options().starter;
    const slowStarter: AssembleSetupsOptions["starter"] = async (decision) => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return await record(decision);
    };
    const outcomes = await Promise.all([
      assembleSetups(options({ starter: slowStarter })),
      assembleSetups(options({ starter: slowStarter })),
    ]);
    assert.deepEqual(starts.map((decision) => decision.name).sort(), ["alpha", "beta"]);
    const actions = outcomes.map((outcome) => outcome.decisions.map((d) => d.action).join(","));
    assert.deepEqual(actions.sort(), ["already-running,already-running", "start,start"]);
    const second = outcomes.find((outcome) => outcome.decisions[0]!.action !== "start")!;
    assert.match(second.decisions[0]!.reasons[0]!, /started by assemble as process 4242/);
  } finally {
    await cleanup();
  }
});

Deno.test("assembleSetups() starts again a setup whose recorded start has ended", async () => {
  const { images, starts, options, cleanup } = await scene();
  try {
    await makeImageSetup(images, { name: "alpha" });
    const ended = (_: StartRecord) => Promise.resolve(false);
    await assembleSetups(options({ isStartAlive: ended }));
    await assembleSetups(options({ isStartAlive: ended }));
    assert.equal(starts.length, 2);
  } finally {
    await cleanup();
  }
});

Deno.test("assembleSetups() leaves alone a setup whose spare another process holds", async () => {
  const { images, starts, options, cleanup } = await scene();
  try {
    const setup = await makeImageSetup(images, { name: "alpha" });
    assert.equal(heldByAnotherProcess(setup.sparePaths[1]!), false);
    // serve opens each file spare exclusively: an flock, which this open takes too.
    const held = await openFileDevice(setup.sparePaths[1]!, { exclusive: true });
    try {
      assert.equal(heldByAnotherProcess(setup.sparePaths[1]!), true);
      const outcome = await assembleSetups(options());
      assert.equal(outcome.decisions[0]?.action, "already-running");
      assert.match(
        outcome.decisions[0]!.reasons[0]!,
        /alpha-s1\.img" is held exclusively by another process/,
      );
      assert.equal(starts.length, 0);
    } finally {
      await held.close();
    }
  } finally {
    await cleanup();
  }
});

Deno.test("assembleSetups() by name or UUID assembles only those, and names the unknown", async () => {
  const { images, starts, options, cleanup } = await scene();
  try {
    const alpha = await makeImageSetup(images, { name: "alpha" });
    await makeImageSetup(images, { name: "beta" });
    const outcome = await assembleSetups(
      options({ mode: { kind: "named", names: [alpha.uuid, "gamma"] } }),
    );
    assert.deepEqual(outcome.decisions.map((d) => d.name), ["alpha"]);
    assert.deepEqual(outcome.notFound, ["gamma"]);
    assert.deepEqual(starts.map((decision) => decision.uuid), [alpha.uuid]);
  } finally {
    await cleanup();
  }
});

Deno.test("assembleSetups() --incremental records each spare and starts once all are seen", async () => {
  const { images, runtime, starts, options, cleanup } = await scene();
  try {
    const setup = await makeImageSetup(images, { name: "alpha", spareCount: 3 });
    await makeImage(`${images}/junk.img`, 1024 * 1024);
    const incremental = (device: string) =>
      assembleSetups(options({ mode: { kind: "incremental", device } }));

    const junk = await incremental(`${images}/junk.img`);
    assert.equal(junk.incremental?.outcome, "not-a-spare");
    assert.match(junk.incremental!.reason!, /no-metadata/);

    const first = await incremental(setup.sparePaths[2]!);
    assert.deepEqual([first.incremental?.seen, first.incremental?.expected], [[2], 3]);
    assert.deepEqual(first.decisions, []);
    const record = JSON.parse(await Deno.readTextFile(`${runtime}/incremental/${setup.uuid}.json`));
    assert.deepEqual(record.seen, { "2": setup.sparePaths[2] });

    const again = await incremental(setup.sparePaths[2]!);
    assert.deepEqual(again.incremental?.seen, [2]);
    await incremental(setup.sparePaths[0]!);
    assert.equal(starts.length, 0);

    const last = await incremental(setup.sparePaths[1]!);
    assert.deepEqual(last.incremental?.seen, [0, 1, 2]);
    assert.deepEqual(last.decisions.map((d) => [d.name, d.action]), [["alpha", "start"]]);
    assert.equal(starts.length, 1);

    const after = await incremental(setup.sparePaths[1]!);
    assert.deepEqual(after.decisions.map((d) => d.action), ["already-running"]);
    assert.equal(starts.length, 1);
  } finally {
    await cleanup();
  }
});

Deno.test("withExclusiveLock() runs one holder at a time", async () => {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-lock-" });
  try {
    const events: string[] = [];
    const hold = (name: string) =>
      withExclusiveLock(`${directory}/lock`, async () => {
        events.push(`${name} in`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        events.push(`${name} out`);
      });
    await Promise.all([hold("a"), hold("b")]);
    assert.ok(
      events.join() === "a in,a out,b in,b out" || events.join() === "b in,b out,a in,a out",
      events.join(),
    );
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("assembleSetups() leaves alone a setup whose serving marker names a live server", async () => {
  const { images, starts, options, cleanup } = await scene();
  try {
    await makeImageSetup(images, { name: "alpha" });
    const outcome = await assembleSetups(options({
      discover: async (paths) => {
        const report = await discover({
          paths,
          scanDirs: [images],
          blockDevices: false,
          prober: probeInProcess,
          lastStopOf: () => "serving",
        });
        for (const setup of report.setups) setup.servingPid = 777;
        return report;
      },
    }));
    assert.deepEqual(outcome.decisions.map((d) => [d.action, d.reasons]), [
      ["already-running", ["being served by process 777 (its spares' serving marker)"]],
    ]);
    assert.equal(starts.length, 0);
  } finally {
    await cleanup();
  }
});

Deno.test("assembleSetups() --incremental for every spare at once starts the setup once", async () => {
  const { images, runtime, starts, options, cleanup } = await scene();
  try {
    const setup = await makeImageSetup(images, { name: "alpha", spareCount: 3 });
    const outcomes = await Promise.all(
      setup.sparePaths.map((device) =>
        assembleSetups(options({ mode: { kind: "incremental", device } }))
      ),
    );
    assert.deepEqual(starts.map((decision) => decision.name), ["alpha"]);
    assert.deepEqual(
      outcomes.map((outcome) => outcome.incremental?.seen?.length).sort(),
      [1, 2, 3],
    );
    const record = JSON.parse(await Deno.readTextFile(`${runtime}/incremental/${setup.uuid}.json`));
    assert.deepEqual(Object.keys(record.seen).sort(), ["0", "1", "2"]);
  } finally {
    await cleanup();
  }
});

Deno.test("assembleSetups() reports a start that failed, records nothing for it, and starts the rest", async () => {
  const { images, runtime, starts, options, cleanup } = await scene();
  try {
    await makeImageSetup(images, { name: "alpha" });
    const beta = await makeImageSetup(images, { name: "beta" });
    const record = options().starter;
    const outcome = await assembleSetups(options({
      starter: (decision) =>
        decision.name === "alpha"
          ? Promise.reject(new Error("serve exited at once with code 2"))
          : record(decision),
    }));
    assert.deepEqual(outcome.decisions.map((d) => [d.name, d.action, d.reasons[0]]), [
      ["alpha", "start-failed", "serve exited at once with code 2"],
      [
        "beta",
        "start",
        "-5: weak identity: the main disk is recognised by a file's device and inode only",
      ],
    ]);
    assert.deepEqual(starts.map((decision) => decision.name), ["beta"]);
    assert.deepEqual([...Deno.readDirSync(`${runtime}/assembled`)].map((entry) => entry.name), [
      `${beta.uuid}.json`,
    ]);
  } finally {
    await cleanup();
  }
});

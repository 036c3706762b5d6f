/**
 * `dm-remap assemble` as users, udev and scripts run it.
 *
 * Goal: the command parses its modes, prints its decisions (table and JSON),
 * exits 1 when it refuses, records every decision in the setup's history,
 * and a dry run starts and writes nothing; the `serve` it would start is
 * this same program with the spares and main disk discovery found.
 * Method: setups made with `create` on image files, `assemble --dry-run`
 * run as a process; the command line is checked as a pure function.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { CLI_ENV, imageDirectory, runCli } from "./cli_process.ts";
import { hashFiles } from "../assembly/_setups.ts";
import {
  processStarter,
  SERVE_KERNEL_DEVICE_ARGS,
  serveCommandLine,
  systemdStarter,
} from "../../mod/cli/setup_starter.ts";
import type { AssemblyDecision } from "../../mod/assembly/assembly_plan.ts";

const MIB = 1024 * 1024;

Deno.test("dm-remap assemble --dry-run decides, records the decisions, and writes nothing", async () => {
  const images = await imageDirectory({
    "ga-main.img": 64 * MIB,
    "ga-s0.img": 32 * MIB,
    "ga-s1.img": 32 * MIB,
  });
  const name = `ga${crypto.randomUUID().slice(0, 8)}`;
  try {
    const created = await runCli([
      "create",
      name,
      "--main",
      images.file("ga-main.img"),
      "--spare",
      images.file("ga-s0.img"),
      "--spare",
      images.file("ga-s1.img"),
    ]);
    assert.equal(created.code, 0, created.stderr);
    const before = await hashFiles(images.path);

    const ready = await runCli(["assemble", name, "--dry-run", "--scan-dir", images.path]);
    assert.equal(ready.code, 0, ready.stderr);
    assert.match(
      ready.stdout,
      new RegExp(`^${name} \\(.*\\): would-start, complete, confidence 95`),
    );

    const strict = await runCli([
      "assemble",
      name,
      "--dry-run",
      "--json",
      "--threshold",
      "100",
      "--scan-dir",
      images.path,
    ]);
    assert.equal(strict.code, 1, strict.stderr);
    const outcome = JSON.parse(strict.stdout);
    assert.equal(outcome.version, 1);
    assert.equal(outcome.dryRun, true);
    assert.equal(outcome.decisions[0].action, "refuse");
    assert.match(outcome.decisions[0].reasons[0], /confidence 95 is below the threshold 100/);
    assert.deepEqual(outcome.decisions[0].sparePaths, [
      images.file("ga-s0.img"),
      images.file("ga-s1.img"),
    ]);

    const waiting = await runCli(["assemble", "--incremental", images.file("ga-s0.img")]);
    assert.equal(waiting.code, 0, waiting.stderr);
    assert.match(
      waiting.stdout,
      /spare 0 of ".*" \(.*\); seen 1 of 2 spares: waiting for the others/,
    );

    assert.deepEqual(await hashFiles(images.path), before);
    const history = new DatabaseSync(`${CLI_ENV.DM_REMAP_STATE_DIR}/${name}.events.sqlite`);
    const rows = history.prepare("SELECT type, message FROM events ORDER BY id").all();
    history.close();
    assert.deepEqual(rows.map((row) => row.type), [
      "discovered",
      "assembly-decision",
      "discovered",
      "assembly-decision",
      "incremental-seen",
    ]);
    assert.match(String(rows[1]!.message), /would-start \[.*ga-s0\.img, .*ga-s1\.img, .*ga-main/);
    assert.match(String(rows[3]!.message), /refuse .*confidence 95 is below the threshold 100/);
  } finally {
    await images.cleanup();
  }
});

Deno.test("dm-remap assemble takes exactly one mode", async () => {
  for (const args of [["assemble"], ["assemble", "--scan", "alpha"]]) {
    const run = await runCli(args);
    assert.equal(run.code, 2, args.join(" "));
    assert.match(run.stderr, /Give exactly one of --scan, --incremental <dev>, or setup names/);
  }
});

Deno.test("dm-remap assemble --export takes auto, ublk or nbd", async () => {
  const run = await runCli(["assemble", "--scan", "--dry-run", "--export", "iscsi"]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /--export "iscsi": give auto, ublk or nbd/);
});

Deno.test("serveCommandLine() runs this program's serve on the spares and main disk found, with the kernel device chosen", () => {
  const decision = {
    name: "alpha",
    sparePaths: ["/dev/sdb", "/dev/sdc"],
    mainPath: "/dev/disk/by-id/wwn-1",
  } as AssemblyDecision;
  const tail = [
    "serve",
    "alpha",
    "--spare",
    "/dev/sdb",
    "--spare",
    "/dev/sdc",
    "--main",
    "/dev/disk/by-id/wwn-1",
  ];
  assert.deepEqual(
    serveCommandLine(decision, {
      program: { execPath: "/usr/bin/deno", mainModule: "file:///opt/dm-remap/dm-remap.js" },
      kernelExport: "nbd",
    }),
    [
      "/usr/bin/deno",
      "run",
      "--allow-all",
      "/opt/dm-remap/dm-remap.js",
      ...tail,
      "--attach",
      "auto",
    ],
  );
  assert.deepEqual(
    serveCommandLine(decision, {
      program: { execPath: "/usr/bin/dm-remap", mainModule: "file:///x.ts" },
      kernelExport: "ublk",
    }),
    ["/usr/bin/dm-remap", ...tail, "--ublk"],
  );
  assert.deepEqual(SERVE_KERNEL_DEVICE_ARGS, { nbd: ["--attach", "auto"], ublk: ["--ublk"] });
});

Deno.test("processStarter() runs serve detached and logging, and fails a serve that exits at once", async () => {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-starter-" });
  const decision = { name: "alpha", sparePaths: ["/dev/sdb"] } as AssemblyDecision;
  const program = (script: string) => {
    const path = `${directory}/fake-dm-remap-${script.length}`;
    Deno.writeTextFileSync(path, `#!/bin/sh\n${script}\n`, { mode: 0o755 });
    return { execPath: path, mainModule: "file:///unused.ts" };
  };
  let pid: number | undefined;
  try {
    const lasting = processStarter({
      logDirectory: directory,
      program: program('echo "serving $*"; exec sleep 30'),
      earlyExitMs: 500,
      kernelExportOf: () => Promise.resolve({ kind: "ublk", reason: "test: ublk" }),
    });
    const started = await lasting(decision);
    pid = started.pid;
    assert.equal(started.name, "alpha");
    assert.deepEqual(started.kernelExport, { kind: "ublk", reason: "test: ublk" });
    const cmdline = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
    assert.deepEqual(cmdline.slice(0, 2), ["sleep", "30"]);
    // setsid: the serve leads a session of its own.
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const session = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[3]);
    assert.equal(session, pid);
    assert.match(
      await Deno.readTextFile(`${directory}/alpha.log`),
      /^serving serve alpha --spare \/dev\/sdb --ublk$/m,
    );

    const failing = processStarter({
      logDirectory: directory,
      program: program('echo "Unknown option --attach" >&2; exit 2'),
      earlyExitMs: 5_000,
      kernelExportOf: () => Promise.resolve({ kind: "nbd", reason: "test: nbd" }),
    });
    await assert.rejects(
      failing(decision),
      /serve \(nbd: test: nbd\) exited at once with code 2; the end of ".*alpha\.log": .*Unknown option --attach/,
    );
  } finally {
    if (pid !== undefined) Deno.kill(pid, "SIGKILL");
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("processStarter() gives serve the argv[0] asked for: '@dm-remap' for a root storage daemon", async () => {
  // The runtime itself with a module that waits: argv[0] survives only an exec of a binary.
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-argv0-" });
  const module = `${directory}/wait.ts`;
  await Deno.writeTextFile(module, "setTimeout(() => {}, 30_000);\n");
  let pid: number | undefined;
  try {
    const starter = processStarter({
      logDirectory: directory,
      program: { execPath: Deno.execPath(), mainModule: `file://${module}` },
      earlyExitMs: 500,
      argv0: "@dm-remap",
      kernelExportOf: () => Promise.resolve({ kind: "nbd", reason: "test" }),
    });
    pid = (await starter({ name: "rootfs", sparePaths: ["/dev/vdb"] } as AssemblyDecision)).pid;
    const cmdline = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
    assert.equal(cmdline[0], "@dm-remap");
    assert.deepEqual(cmdline.slice(1, 5), ["run", "--allow-all", module, "serve"]);
    assert.equal(await Deno.readLink(`/proc/${pid}/cwd`), "/");
  } finally {
    if (pid !== undefined) Deno.kill(pid, "SIGKILL");
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("systemdStarter() starts dm-remap@<name>.service with systemctl, and names systemctl's refusal", async () => {
  // A stand-in systemctl on PATH records its arguments: this host runs no systemd. The unit
  // itself is started by a real systemd in the boot-integration work (issue 19's guest).
  const bin = await Deno.makeTempDir({ prefix: "dm-remap-systemctl-" });
  const calls = `${bin}/calls`;
  await Deno.writeTextFile(
    `${bin}/systemctl`,
    `#!/bin/sh\necho "$@" >>"${calls}"\n` +
      `[ "$2" = "dm-remap@bad.service" ] && echo "Unit dm-remap@bad.service not found." >&2 && exit 5\n` +
      "exit 0\n",
  );
  await Deno.chmod(`${bin}/systemctl`, 0o755);
  const path = Deno.env.get("PATH");
  Deno.env.set("PATH", `${bin}:${path}`);
  try {
    const decision = { name: "vault" } as AssemblyDecision;
    assert.deepEqual(await systemdStarter(decision), {
      name: "vault",
      unit: "dm-remap@vault.service",
    });
    await assert.rejects(
      systemdStarter({ name: "bad" } as AssemblyDecision),
      /Cannot start "dm-remap@bad\.service": systemctl said: Unit dm-remap@bad\.service not found\./,
    );
    assert.equal(
      await Deno.readTextFile(calls),
      "start dm-remap@vault.service\nstart dm-remap@bad.service\n",
    );
  } finally {
    Deno.env.set("PATH", path ?? "");
    await Deno.remove(bin, { recursive: true });
  }
});

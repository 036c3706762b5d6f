/**
 * Never the wrong disk: the CLI's refusals, run as separate processes.
 *
 * Goal: every way of giving `create` or `serve` the wrong disk, or a disk
 * that is taken, ends with its exact one-line message and exit code, and
 * leaves every disk byte for byte as it was; the clean-stop flag tells a
 * clean stop from `kill -9`; a setup created from a relative path in one
 * directory is served by the systemd unit's own command line from `/`.
 * Method: one table row per case, each in a fresh directory of sparse
 * images: `prepare` sets the case up (a setup, a loop device, a running
 * serve, a taken port, an immutable file), then SHA-256 of every image is
 * taken, the command runs, and the hashes are taken again.
 */

import assert from "node:assert/strict";
import { deviceNumberOf } from "../../mod/device/storage_stack.ts";
import { attachLoopDevice, type LoopDevice } from "../device/fixtures.ts";
import { createSetup as createSetupOnDevices } from "../../mod/assembly/create.ts";
import { openFileDevice } from "../../mod/device/file_device.ts";
import {
  CLI_ENV,
  type CliRun,
  imageDirectory,
  runCli,
  type ServeProcess,
  startServe,
} from "./cli_process.ts";

const MIB = 1024 * 1024;
/** A refusal comes within this; a command still running after it was accepted by mistake. */
const REFUSAL_MS_MAX = 60_000;
const MAIN_TS = new URL("../../main.ts", import.meta.url).pathname;
const UNIT = new URL("../../systemd/dm-remap@.service", import.meta.url).pathname;

type Images = Awaited<ReturnType<typeof imageDirectory>>;

/** What a row's functions get: the images, and what `prepare` set up. */
interface Case {
  images: Images;
  /** The path of image `name`. */
  file: (name: string) => string;
  loop?: LoopDevice;
  serve?: ServeProcess;
  listener?: Deno.Listener;
  /** Undone after the row, whatever happened. */
  cleanups: (() => Promise<void> | void)[];
}

interface Row {
  name: string;
  prepare?: (c: Case) => Promise<void>;
  /** The command line, run in the images directory. */
  args: (c: Case) => string[];
  code: number;
  /** The last line of stderr: the refusal (serve may report the spares it read before it). */
  message: (c: Case) => string | RegExp;
}

/** `text` as a regular expression matching exactly it. */
function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** SHA-256 of every image file in the directory, by name. */
async function hashImages(images: Images): Promise<Record<string, string>> {
  const hashes: Record<string, string> = {};
  for await (const entry of Deno.readDir(images.path)) {
    if (entry.isFile && entry.name.endsWith(".img")) {
      hashes[entry.name] = await sha256(images.file(entry.name));
    }
  }
  return hashes;
}

/** `device 254:0, inode 123` of a file, as the messages give it. */
function fileIdentity(path: string): string {
  const info = Deno.statSync(path);
  return `device ${deviceNumberOf(info.dev)}, inode ${info.ino}`;
}

async function run(command: string, args: string[]): Promise<void> {
  const output = await new Deno.Command(command, { args, stderr: "piped" }).output();
  if (!output.success) {
    throw new Error(`${command} ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
  }
}

/** Makes a file immutable; a filesystem without chattr +i is a setup failure, not a skip. */
async function makeImmutable(c: Case, name: string): Promise<void> {
  await run("chattr", ["+i", c.file(name)]);
  c.cleanups.push(() => run("chattr", ["-i", c.file(name)]));
}

/** Creates setup `name` over main.img and spare0.img, by absolute paths. */
async function createSetup(c: Case, name: string): Promise<void> {
  const created = await runCli([
    "create",
    name,
    "--main",
    c.file("main.img"),
    "--spare",
    c.file("spare0.img"),
  ]);
  assert.equal(created.code, 0, created.stderr);
}

/** `serve` of the setup on spare0.img with private sockets in the images directory. */
function serveArgs(c: Case, extra: string[] = []): string[] {
  return [
    "serve",
    "--spare",
    c.file("spare0.img"),
    "--socket",
    c.file("nbd.sock"),
    "--api-socket",
    c.file("api.sock"),
    "--events-db",
    c.file("events.sqlite"),
    ...extra,
  ];
}

const SAME_FILE = (spare: string, c: Case) =>
  `dm-remap create: Cannot create setup "t": the main disk "./main.img" and spare "${spare}" are ` +
  `the same file (${fileIdentity(c.file("main.img"))}), so the spare's metadata and slots would ` +
  `overwrite the main disk's data. Give each spare a disk of its own; nothing was written`;

const EPERM_HINT =
  'operation not permitted: the file may be immutable or append-only (see "lsattr", ' +
  'undo with "chattr -i -a"), or a security policy forbids it';

const ROWS: Row[] = [
  {
    name: "create: the main disk as a spare under another spelling (./m.img and m.img)",
    args: () => ["create", "t", "--main", "./main.img", "--spare", "main.img"],
    code: 4,
    message: (c) => SAME_FILE("main.img", c),
  },
  {
    name: "create: the main disk as a spare by its absolute path",
    args: (c) => ["create", "t", "--main", "./main.img", "--spare", c.file("main.img")],
    code: 4,
    message: (c) => SAME_FILE(c.file("main.img"), c),
  },
  {
    name: "create: the main disk as a spare through a symbolic link",
    prepare: (c) => Deno.symlink("main.img", c.file("symlink.img")),
    args: () => ["create", "t", "--main", "./main.img", "--spare", "symlink.img"],
    code: 4,
    message: (c) => SAME_FILE("symlink.img", c),
  },
  {
    name: "create: the main disk as a spare through a hard link",
    prepare: (c) => Deno.link(c.file("main.img"), c.file("hardlink.img")),
    args: () => ["create", "t", "--main", "./main.img", "--spare", "hardlink.img"],
    code: 4,
    message: (c) => SAME_FILE("hardlink.img", c),
  },
  {
    name: "create: one spare given twice under two spellings",
    args: () => [
      "create",
      "t",
      "--main",
      "main.img",
      "--spare",
      "spare0.img",
      "--spare",
      "./spare0.img",
    ],
    code: 4,
    message: (c) =>
      `dm-remap create: Cannot create setup "t": spare "spare0.img" and spare "./spare0.img" are ` +
      `the same file (${fileIdentity(c.file("spare0.img"))}), so the two spares would overwrite ` +
      `each other. Give each spare a disk of its own; nothing was written`,
  },
  {
    name: "create: a loop device over the main file as the spare",
    prepare: async (c) => {
      c.loop = await attachLoopDevice(c.file("main.img"));
    },
    args: (c) => ["create", "t", "--main", "main.img", "--spare", c.loop!.path],
    code: 4,
    message: (c) =>
      `dm-remap create: Cannot create setup "t": spare "${c.loop!.path}" is a loop device over ` +
      `the main disk "main.img", so the spare's metadata and slots would overwrite the main ` +
      `disk's data. Give each spare a disk of its own; nothing was written`,
  },
  {
    name: "create: a loop device over the spare file as the main disk",
    prepare: async (c) => {
      c.loop = await attachLoopDevice(c.file("spare0.img"));
    },
    args: (c) => ["create", "t", "--main", c.loop!.path, "--spare", "spare0.img"],
    code: 4,
    message: (c) =>
      `dm-remap create: Cannot create setup "t": the main disk "${c.loop!.path}" is a loop ` +
      `device over spare "spare0.img", so the spare's metadata and slots would overwrite the ` +
      `main disk's data. Give each spare a disk of its own; nothing was written`,
  },
  {
    name: "create: a name another setup has",
    prepare: (c) => createSetup(c, "taken"),
    args: () => ["create", "taken", "--main", "other.img", "--spare", "spare1.img"],
    code: 2,
    message: (c) =>
      new RegExp(
        `^${escape('dm-remap create: Cannot create setup "taken": the name is taken by setup ')}` +
          `[0-9a-f-]{36}${
            escape(
              `, whose spares are "${c.file("spare0.img")}". Choose another name, or first ` +
                `remove that setup by wiping its spares`,
            )
          }$`,
      ),
  },
  {
    name: "create: an immutable spare (chattr +i)",
    prepare: (c) => makeImmutable(c, "spare0.img"),
    args: () => ["create", "t", "--main", "main.img", "--spare", "spare0.img"],
    code: 3,
    message: () => `dm-remap create: Cannot open "spare0.img": ${EPERM_HINT}`,
  },
  {
    name: "create: a read-only spare (chmod 0444), which root could write",
    prepare: (c) => Deno.chmod(c.file("spare0.img"), 0o444),
    args: () => ["create", "t", "--main", "main.img", "--spare", "spare0.img"],
    code: 3,
    message: () =>
      `dm-remap create: Cannot open "spare0.img": it is a read-only file (mode 0444) and would ` +
      `be written: make it writable ("chmod u+w") if it may be`,
  },
  {
    name: "serve: another file of the same size as the main disk",
    prepare: (c) => createSetup(c, "s1"),
    args: (c) => serveArgs(c, ["--main", c.file("other.img")]),
    code: 4,
    message: (c) =>
      `dm-remap serve: Device "${c.file("other.img")}" does not match the setup: it is not the ` +
      `main disk of setup "s1": it is another file (${fileIdentity(c.file("other.img"))}); the ` +
      `setup's main disk "${c.file("main.img")}" is ${fileIdentity(c.file("main.img"))}. Name ` +
      `the right one with --main; if the main disk was replaced by this one, pass --force to ` +
      `accept it and record its identity`,
  },
  {
    name: "serve: the spare given as the main disk through a symbolic link",
    prepare: async (c) => {
      await createSetup(c, "s2");
      await Deno.symlink("spare0.img", c.file("symlink.img"));
    },
    args: (c) => serveArgs(c, ["--main", "symlink.img"]),
    code: 4,
    message: (c) =>
      `dm-remap serve: Cannot serve setup "s2": the main disk "symlink.img" and spare ` +
      `"${c.file("spare0.img")}" are the same file (${fileIdentity(c.file("spare0.img"))}), so ` +
      `the spare's metadata and slots would overwrite the main disk's data. Give each spare a ` +
      `disk of its own; nothing was written`,
  },
  {
    name: "serve: a second serve of a setup being served",
    prepare: async (c) => {
      await createSetup(c, "s3");
      c.serve = tracked(c, await startServe(serveArgs(c).slice(1)));
    },
    args: (c) =>
      serveArgs(c, ["--socket", c.file("nbd2.sock"), "--api-socket", c.file("api2.sock")]),
    code: 69,
    message: (c) =>
      new RegExp(
        `^${escape(`dm-remap serve: Cannot open "${c.file("spare0.img")}"`)}: process ${
          c.serve!.pid
        } ` +
          `\\(.* serve --spare .*\\) holds an exclusive lock on it: a dm-remap serve is already ` +
          `using it; stop that process first$`,
      ),
  },
  {
    name: "serve: the NBD TCP port is taken",
    prepare: async (c) => {
      await createSetup(c, "s4");
      c.listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    },
    args: (c) => serveArgs(c, ["--tcp", `127.0.0.1:${(c.listener!.addr as Deno.NetAddr).port}`]),
    code: 69,
    message: (c) =>
      `dm-remap serve: Cannot serve NBD on "127.0.0.1:${
        (c.listener!.addr as Deno.NetAddr).port
      }": ` +
      `address in use: another program listens there; stop it or choose another port`,
  },
  {
    name: "serve: the NBD socket path is taken by a live socket",
    prepare: async (c) => {
      await createSetup(c, "s5");
      c.listener = Deno.listen({ transport: "unix", path: c.file("nbd.sock") });
    },
    args: (c) => serveArgs(c),
    code: 69,
    message: (c) =>
      `dm-remap serve: Cannot serve NBD on "${c.file("nbd.sock")}": another process answers on ` +
      "it; is `dm-remap serve` already running?",
  },
  {
    name: "serve: the main disk is no longer where it was recorded",
    prepare: async (c) => {
      await createSetup(c, "s8");
      await Deno.rename(c.file("main.img"), c.file("moved.img"));
    },
    args: (c) => serveArgs(c),
    code: 3,
    message: (c) =>
      `dm-remap serve: Cannot open "${c.file("main.img")}": the main disk of setup "s8" was ` +
      `recorded at this path, and nothing is there now: name it with --main`,
  },
  {
    name: "serve: an immutable main disk (chattr +i)",
    prepare: async (c) => {
      await createSetup(c, "s6");
      await makeImmutable(c, "main.img");
    },
    args: (c) => serveArgs(c),
    code: 3,
    message: (c) => `dm-remap serve: Cannot open "${c.file("main.img")}": ${EPERM_HINT}`,
  },
  {
    name: "serve: a read-only main disk (chmod 0444)",
    prepare: async (c) => {
      await createSetup(c, "s7");
      await Deno.chmod(c.file("main.img"), 0o444);
    },
    args: (c) => serveArgs(c),
    code: 3,
    message: (c) =>
      `dm-remap serve: Cannot open "${c.file("main.img")}": it is a read-only file (mode 0444) ` +
      `and would be written: make it writable ("chmod u+w") if it may be`,
  },
];

/** A fresh directory of images for one row: main and a same-size other, two spares. */
function freshImages(): Promise<Images> {
  return imageDirectory({
    "main.img": 16 * MIB,
    "other.img": 16 * MIB,
    "spare0.img": 16 * MIB,
    "spare1.img": 16 * MIB,
  });
}

function checkMessage(row: Row, c: Case, result: CliRun): void {
  const expected = row.message(c);
  const lines = result.stderr.replace(/\n$/, "").split("\n");
  assert.ok(!lines.some((line) => /^\s+at /.test(line)), `${row.name}: a stack trace`);
  const last = lines.at(-1)!;
  if (typeof expected === "string") assert.equal(last, expected, row.name);
  else assert.match(last, expected, row.name);
}

for (const row of ROWS) {
  Deno.test(`refusal: ${row.name}`, async () => {
    const images = await freshImages();
    const c: Case = { images, file: images.file, cleanups: [] };
    try {
      await row.prepare?.(c);
      const before = await hashImages(images);
      const result = await runCli(row.args(c), { cwd: images.path, timeoutMs: REFUSAL_MS_MAX });
      assert.equal(result.code, row.code, `${row.name}: ${result.stderr}`);
      checkMessage(row, c, result);
      assert.deepEqual(await hashImages(images), before, `${row.name}: a disk changed`);
    } finally {
      c.listener?.close();
      await c.loop?.detach();
      await cleanUp(c);
    }
  });
}

/** Registers a started serve to be killed after the test, whatever happened. */
function tracked(c: Case, serve: ServeProcess): ServeProcess {
  c.cleanups.push(async () => {
    serve.kill("SIGKILL");
    await serve.finished();
  });
  return serve;
}

async function cleanUp(c: Case): Promise<void> {
  for (const cleanup of c.cleanups) await cleanup();
  await c.images.cleanup();
}

/** `check --json` of a spare: its shutdown state. */
async function shutdownOf(spare: string): Promise<{ clean: boolean; shutdown: string }> {
  const check = await runCli(["check", spare, "--json"]);
  assert.equal(check.code, 0, check.stderr);
  const setup = JSON.parse(check.stdout).setup;
  return { clean: setup.clean, shutdown: setup.shutdown };
}

Deno.test("check: clean after create and after a clean stop, serving while served, not clean after kill -9", async () => {
  const images = await freshImages();
  const c: Case = { images, file: images.file, cleanups: [] };
  try {
    await createSetup(c, "k");
    const spare = c.file("spare0.img");
    assert.deepEqual(await shutdownOf(spare), { clean: true, shutdown: "clean" });
    const first = tracked(c, await startServe(serveArgs(c).slice(1)));
    assert.deepEqual(await shutdownOf(spare), { clean: false, shutdown: "serving" });
    first.kill("SIGKILL");
    await first.finished();
    assert.deepEqual(await shutdownOf(spare), { clean: false, shutdown: "not-clean" });
    const text = await runCli(["check", spare]);
    assert.match(text.stdout, new RegExp(`state: NOT CLEAN: process ${first.pid} on `));
    const second = tracked(c, await startServe(serveArgs(c).slice(1)));
    second.kill("SIGTERM");
    const stopped = await second.finished();
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.match(
      stopped.stderr,
      new RegExp(`the last serve \\(process ${first.pid} on .*\\) did not stop cleanly`),
    );
    assert.deepEqual(await shutdownOf(spare), { clean: true, shutdown: "clean" });
  } finally {
    await cleanUp(c);
  }
});

Deno.test("serve --force accepts a replaced main disk of the same size and records it; the old one is then refused", async () => {
  const images = await freshImages();
  const c: Case = { images, file: images.file, cleanups: [] };
  try {
    await createSetup(c, "f");
    const forced = tracked(
      c,
      await startServe(serveArgs(c, ["--main", c.file("other.img"), "--force"]).slice(1)),
    );
    forced.kill("SIGTERM");
    const run = await forced.finished();
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stderr,
      // Inside the structured log line's msg="…", so its quotes are escaped.
      /--force: accepted \\".*other\.img\\" as the main disk \(it is another file/,
    );
    const check = JSON.parse((await runCli(["check", c.file("spare0.img"), "--json"])).stdout);
    assert.equal(check.setup.clean, true);
    await Deno.writeFile(c.file("larger.img"), new Uint8Array());
    await Deno.truncate(c.file("larger.img"), 32 * MIB);
    const before = await hashImages(images);
    const old = await runCli(serveArgs(c, ["--main", c.file("main.img")]), {
      timeoutMs: REFUSAL_MS_MAX,
    });
    assert.equal(old.code, 4, old.stderr);
    assert.match(old.stderr, /main\.img" does not match the setup: .* it is another file/);
    const larger = await runCli(serveArgs(c, ["--main", c.file("larger.img"), "--force"]), {
      timeoutMs: REFUSAL_MS_MAX,
    });
    assert.equal(larger.code, 4, larger.stderr);
    assert.match(larger.stderr, /its size is 33554432 bytes; .* Name the right one with --main$/m);
    assert.deepEqual(await hashImages(images), before);
  } finally {
    await cleanUp(c);
  }
});

/**
 * The unit's ExecStart for instance `name`, with the CLI in place of `@SBIN@/dm-remap` (the
 * install step, scripts/install.sh, puts the wrapper's directory there).
 * Without `--export` (the kernel device, NBD or ublk): this host has neither nbd nor ublk_drv
 * (the attach runs in tests/vm, vm 8 and vm ublk 2); what is checked here is that the unit's
 * command line finds the setup from `/`.
 */
async function unitCommand(name: string): Promise<string[]> {
  const line = (await Deno.readTextFile(UNIT)).split("\n").find((text) =>
    text.startsWith("ExecStart=")
  );
  assert.ok(line, "the unit has an ExecStart line");
  const [program, ...args] = line.slice("ExecStart=".length).trim().split(/\s+/);
  assert.equal(program, "@SBIN@/dm-remap");
  assert.ok(args.includes("--export"), `the unit's serve chooses its kernel device: ${line}`);
  const served = args.filter((arg) => arg !== "--export").map((arg) => arg.replaceAll("%i", name));
  return ["run", "--allow-all", MAIN_TS, ...served];
}

Deno.test("the systemd unit's command line, run in /, serves a setup created from relative paths elsewhere", async () => {
  const images = await freshImages();
  const c: Case = { images, file: images.file, cleanups: [] };
  try {
    const created = await runCli(
      ["create", "unit", "--main", "main.img", "--spare", "spare0.img"],
      { cwd: images.path },
    );
    assert.equal(created.code, 0, created.stderr);
    assert.equal(
      created.stderr,
      `dm-remap create: note: the main disk "${await Deno.realPath(images.file("main.img"))}" is ` +
        "a plain file: it is recognised by its device and inode only, so a copy of it or a " +
        'restored file is refused until "dm-remap serve --force" accepts it\n',
    );
    const hint = /Serve it with: dm-remap serve (\S+) /.exec(created.stdout);
    assert.ok(hint, created.stdout);
    assert.equal(hint[1], "unit");
    const serve = tracked(
      c,
      await startServe([], { cwd: "/", command: await unitCommand("unit") }),
    );
    serve.kill("SIGTERM");
    const run = await serve.finished();
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, new RegExp(`${images.file("spare0.img")}: 5/5 copies valid`));
    const status = await runCli(["check", images.file("spare0.img"), "--json"]);
    assert.equal(JSON.parse(status.stdout).setup.clean, true);
  } finally {
    await cleanUp(c);
  }
});

Deno.test("serve records the identity layers that a setup from an older version lacks, then refuses another file", async () => {
  const images = await freshImages();
  const c: Case = { images, file: images.file, cleanups: [] };
  try {
    // What versions before the layers recorded: kind, size and fingerprint, nothing else.
    const main = await openFileDevice(c.file("main.img"), { readOnly: true });
    const spare = await openFileDevice(c.file("spare0.img"));
    try {
      await createSetupOnDevices({
        name: "old",
        main: {
          device: main,
          identity: { path: c.file("main.img"), kind: "file", sizeBytes: main.sizeBytes },
        },
        spares: [{ device: spare, path: c.file("spare0.img") }],
        blockBytes: 4096,
      });
    } finally {
      await main.close();
      await spare.close();
    }
    const upgraded = tracked(c, await startServe(serveArgs(c).slice(1)));
    upgraded.kill("SIGTERM");
    const run = await upgraded.finished();
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stderr,
      /recorded the main disk's identity in full \(this setup was made by an older version/,
    );
    const refused = await runCli(serveArgs(c, ["--main", c.file("other.img")]), {
      timeoutMs: REFUSAL_MS_MAX,
    });
    assert.equal(refused.code, 4, refused.stderr);
    assert.match(refused.stderr, /other\.img" does not match the setup: .* it is another file/);
  } finally {
    await cleanUp(c);
  }
});

Deno.test("serve with --tcp keeps its Unix sockets; status ignores the socket a killed serve left", async () => {
  const images = await freshImages();
  const c: Case = { images, file: images.file, cleanups: [] };
  try {
    await createSetup(c, "st");
    const serve = tracked(
      c,
      await startServe([
        "--spare",
        c.file("spare0.img"),
        "--events-db",
        c.file("events.sqlite"),
        "--tcp",
        "127.0.0.1:0",
        "--api-tcp",
        "127.0.0.1:0",
      ]),
    );
    const status = await runCli(["status"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^Setup "st" \(.*\): serving, OK$/m);
    serve.kill("SIGKILL");
    const run = await serve.finished();
    const addresses = (kind: string) =>
      run.stdout.split("\n").map((line) => line.trim()).filter((line) =>
        line.startsWith(`${kind} `)
      ).map((line) => line.slice(kind.length).trim());
    const runDir = CLI_ENV.DM_REMAP_RUN_DIR;
    const nbd = addresses("NBD");
    assert.equal(nbd.length, 2, run.stdout);
    assert.equal(nbd[0], `nbd+unix:///st?socket=${runDir}/st.nbd.sock`);
    assert.match(nbd[1]!, /^nbd:\/\/127\.0\.0\.1:\d+\/st$/);
    const api = addresses("API");
    assert.equal(api.length, 2, run.stdout);
    assert.equal(api[0], `${runDir}/st.api.sock`);
    assert.match(api[1]!, /^http:\/\/127\.0\.0\.1:\d+$/);
    const dead = await runCli(["status"]);
    assert.equal(dead.code, 69, dead.stderr);
    assert.equal(
      dead.stderr,
      `dm-remap status: Cannot read the status from "${CLI_ENV.DM_REMAP_RUN_DIR}": no dm-remap ` +
        `serve answers on a socket there: start one with "dm-remap serve <name>", or pass ` +
        "--api-socket or --api-url\n",
    );
  } finally {
    await cleanUp(c);
  }
});

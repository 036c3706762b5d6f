/**
 * `dm-remap stop` against real `serve` processes.
 *
 * Goal: a running server records itself under the run directory; `stop`
 * finds it there by name, has it stop with a detach request (a plain SIGTERM
 * is a restart), waits for its exit and reports it; `stop` refuses while the
 * setup's kernel device is mounted, naming the mount point, unless --force.
 * Method: image files served over a Unix socket by `serve` processes. This
 * host has no nbd module, so the kernel device is a loop device holding a
 * mounted ext4, written into the server's state file as the kernel attach
 * records its device.
 */

import assert from "node:assert/strict";
import { attachLoopDevice } from "../device/fixtures.ts";
import { CLI_ENV, imageDirectory, runCli, startServe } from "./cli_process.ts";

const MIB = 1024 * 1024;
const SETUPS_DIR = `${CLI_ENV.DM_REMAP_RUN_DIR}/setups`;

type Images = Awaited<ReturnType<typeof imageDirectory>>;

async function createSetup(images: Images, name: string): Promise<void> {
  const created = await runCli([
    "create",
    name,
    "--main",
    images.file("main.img"),
    "--spare",
    images.file("spare0.img"),
    "--backup-dir",
    images.file("backup"),
  ]);
  assert.equal(created.code, 0, created.stderr);
}

function serve(images: Images) {
  return startServe([
    "--spare",
    images.file("spare0.img"),
    "--socket",
    images.file("nbd.sock"),
    "--api-socket",
    images.file("api.sock"),
    "--events-db",
    images.file("events.sqlite"),
    "--backup-dir",
    images.file("backup"),
  ]);
}

/** The state files of live and stale servers, by setup name. */
async function stateFiles(): Promise<
  Map<string, { path: string; state: Record<string, unknown> }>
> {
  const files = new Map<string, { path: string; state: Record<string, unknown> }>();
  for await (const entry of Deno.readDir(SETUPS_DIR)) {
    if (!entry.name.endsWith(".json") || entry.name.endsWith(".stop.json")) continue;
    const path = `${SETUPS_DIR}/${entry.name}`;
    const state = JSON.parse(await Deno.readTextFile(path));
    files.set(state.name, { path, state });
  }
  return files;
}

function sh(command: string, args: string[]): Promise<Deno.CommandOutput> {
  return new Deno.Command(command, { args }).output();
}

Deno.test("stop ends a serve found by name, which hears a detach request; a plain SIGTERM is a restart", async () => {
  const images = await imageDirectory({ "main.img": 64 * MIB, "spare0.img": 32 * MIB });
  try {
    await createSetup(images, "life");
    const first = await serve(images);
    const recorded = (await stateFiles()).get("life");
    assert.ok(recorded, "serve records itself under the run directory");
    assert.equal((recorded.state.process as { pid: number }).pid, first.pid);
    assert.deepEqual(recorded.state.spares, [images.file("spare0.img")]);

    const stopped = await runCli(["stop", "life", "--json"], { timeoutMs: 60_000 });
    assert.equal(stopped.code, 0, stopped.stderr);
    const report = JSON.parse(stopped.stdout);
    assert.deepEqual(
      [report.name, report.uuid, report.pid, report.stopped, report.kernelDevice],
      ["life", recorded.state.uuid, first.pid, true, null],
    );
    const firstRun = await first.finished();
    assert.equal(firstRun.code, 0, firstRun.stderr);
    assert.match(firstRun.stderr, /SIGTERM \(stop asked by dm-remap stop/);
    assert.equal((await stateFiles()).has("life"), false, "a clean stop removes the record");

    const again = await runCli(["stop", "life"]);
    assert.equal(again.code, 69);
    assert.match(again.stderr, /No dm-remap serve runs setup "life"/);

    const second = await serve(images);
    second.kill("SIGTERM");
    const secondRun = await second.finished();
    assert.equal(secondRun.code, 0, secondRun.stderr);
    assert.match(secondRun.stderr, /SIGTERM \(a restart, a kernel device stays attached/);
  } finally {
    await images.cleanup();
  }
});

Deno.test("stop refuses while the setup's kernel device is mounted, naming the mount point, unless --force", async () => {
  const images = await imageDirectory({
    "main.img": 64 * MIB,
    "spare0.img": 32 * MIB,
    "kernel.img": 16 * MIB,
  });
  const mountPoint = await Deno.makeTempDir({ prefix: "dm-remap-stop-mnt-" });
  const loop = await attachLoopDevice(images.file("kernel.img"));
  let mounted = false;
  try {
    assert.equal((await sh("mkfs.ext4", ["-q", "-F", loop.path])).code, 0);
    assert.equal((await sh("mount", [loop.path, mountPoint])).code, 0);
    mounted = true;
    await createSetup(images, "busy");
    const server = await serve(images);
    const recorded = (await stateFiles()).get("busy")!;
    await Deno.writeTextFile(
      recorded.path,
      JSON.stringify({ ...recorded.state, kernelDevice: loop.path }),
    );

    const refused = await runCli(["stop", "busy"]);
    assert.equal(refused.code, 69, refused.stderr);
    assert.ok(refused.stderr.includes(`it is mounted on "${mountPoint}"`), refused.stderr);
    assert.match(refused.stderr, /--force/);
    assert.equal((await stateFiles()).has("busy"), true, "the server still runs");

    const forced = await runCli(["stop", "busy", "--force"], { timeoutMs: 60_000 });
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(
      forced.stdout,
      new RegExp(`Stopped setup "busy" .*, asked to detach ${loop.path}`),
    );
    const run = await server.finished();
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /stop asked by dm-remap stop/);
  } finally {
    if (mounted) await sh("umount", [mountPoint]);
    await loop.detach();
    await Deno.remove(mountPoint);
    await images.cleanup();
  }
});

Deno.test("POST /api/v1/stop over the API socket stops a serve cleanly; uid 65534 is refused", async () => {
  const images = await imageDirectory({ "main.img": 64 * MIB, "spare0.img": 32 * MIB });
  try {
    await createSetup(images, "viaapi");
    const server = await serve(images);
    const socket = images.file("api.sock");
    assert.equal((await Deno.stat(socket)).mode! & 0o777, 0o660);
    const curl = (prefix: string[]) =>
      sh(prefix[0]!, [
        ...prefix.slice(1),
        "curl",
        "-s",
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
        "--unix-socket",
        socket,
        "http://localhost/api/v1/stop",
      ]);
    // A process that is not root is refused by its credentials (the socket is opened to it here).
    await Deno.chmod(socket, 0o666);
    await Deno.chmod(socket.slice(0, socket.lastIndexOf("/")), 0o755);
    const refused = await curl(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]);
    assert.match(new TextDecoder().decode(refused.stdout), /\n403$/);
    assert.equal((await stateFiles()).has("viaapi"), true, "the server still runs");

    const asked = await curl(["env"]);
    const answer = new TextDecoder().decode(asked.stdout);
    assert.match(answer, /\n202$/);
    assert.equal(JSON.parse(answer.slice(0, answer.lastIndexOf("\n"))).pid, server.pid);
    const run = await server.finished();
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /POST \/api\/v1\/stop \(stop asked through the API/);
    assert.match(run.stderr, /stopped cleanly/);
    assert.equal((await stateFiles()).has("viaapi"), false, "a clean stop removes the record");
    const check = await runCli(["check", images.file("spare0.img")]);
    assert.match(check.stdout, /stopped cleanly/i);
  } finally {
    await images.cleanup();
  }
});

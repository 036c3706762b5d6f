/**
 * The boot tests' harness: a real Debian bookworm guest (systemd, udev, its own mkinitramfs with
 * dm-remap's hook; built by scripts/boot_vm_setup.sh) whose root filesystem is ext4 on the
 * remapped device. The setup "root" is created once on the template disks by a first VM (the VM
 * harness's busybox guest, `scenario_boot_create.sh`), so the main disk and the spare carry the
 * identity they have in the real guest (their virtio serials). Each boot gets qcow2 overlays of
 * the templates, so boots are independent and a power cut loses nothing of the templates.
 * The guest's checks come from a small disk (serial "check"): `tests/boot/guest/check_<name>.sh`,
 * run by dm-remap-boot-check.service once multi-user is reached.
 *
 * @module
 */

import assert from "node:assert/strict";
import { assertChecks, bootVm, createImage, toolsDisk, type VmDisk, type VmRun } from "../vm/vm.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
export const BOOT_CACHE = `${ROOT}tests/boot/.cache`;
const GUEST = `${ROOT}tests/boot/guest`;

async function run(command: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(command, { args, cwd: ROOT, stdin: "null" }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  if (!output.success) throw new Error(`${command} ${args.join(" ")} failed:\n${text}`);
  return text;
}

let prepared: Promise<void> | undefined;

/** Builds the guest (once per process) and the template disks with the setup on them. */
export function prepareBootGuest(): Promise<void> {
  prepared ??= (async () => {
    await run(`${ROOT}scripts/boot_vm_setup.sh`, []);
    // The disks follow the guest image and the first stage's script.
    const stamp = await Deno.readTextFile(`${BOOT_CACHE}/stamp`) +
      await Deno.readTextFile(`${ROOT}tests/vm/guest/scenario_boot_create.sh`) +
      await Deno.readTextFile(`${ROOT}tests/vm/guest/scenario_boot_create_defect.sh`);
    const disksStamp = await Deno.readTextFile(`${BOOT_CACHE}/disks/stamp`).catch(() => "");
    if (disksStamp === stamp) return;
    await Deno.remove(`${BOOT_CACHE}/disks`, { recursive: true }).catch(() => {});
    await Deno.mkdir(`${BOOT_CACHE}/disks`);
    await run("cp", ["--sparse=always", `${BOOT_CACHE}/root.img`, `${BOOT_CACHE}/disks/main.img`]);
    await run("cp", [
      "--sparse=always",
      `${BOOT_CACHE}/root.img`,
      `${BOOT_CACHE}/disks/defect-main.img`,
    ]);
    for (const serial of ["spare", "data-main", "data-spare", "defect-spare"]) {
      await createImage(`${BOOT_CACHE}/disks/${serial}.img`, 64);
    }
    const template = (serial: string) => ({ path: `${BOOT_CACHE}/disks/${serial}.img`, serial });
    const created = await bootVm({
      scenario: "boot_create",
      disks: [...["main", "spare", "data-main", "data-spare"].map(template), toolsDisk()],
      timeoutMs: 180_000,
    });
    assertChecks(created, ["create", "create_data"]);
    const createdDefect = await bootVm({
      scenario: "boot_create_defect",
      disks: [...["defect-main", "defect-spare"].map(template), toolsDisk()],
      timeoutMs: 180_000,
    });
    assertChecks(createdDefect, ["create_defect"]);
    await Deno.writeTextFile(`${BOOT_CACHE}/disks/stamp`, stamp);
  })();
  return prepared;
}

/**
 * The template disks, by serial: the root setup's, the "data" setup's, and those of a second
 * "root" setup whose main disk is a dm-linear device (for the grown defect).
 */
const DISK_SERIALS = [
  "main",
  "spare",
  "data-main",
  "data-spare",
  "defect-main",
  "defect-spare",
] as const;

/**
 * One guest's disks: overlays of the templates, kept across the boots of one test; disposing
 * removes them.
 */
export interface GuestDisks extends AsyncDisposable {
  directory: string;
  main: VmDisk;
  spare: VmDisk;
  dataMain: VmDisk;
  dataSpare: VmDisk;
  defectMain: VmDisk;
  defectSpare: VmDisk;
}

/** Fresh overlays of the template disks in a new directory. */
export async function newGuestDisks(): Promise<GuestDisks> {
  await prepareBootGuest();
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-boot-" });
  const disks: Record<string, VmDisk> = {};
  for (const serial of DISK_SERIALS) {
    const path = `${directory}/${serial}.qcow2`;
    await run("qemu-img", [
      "create",
      "-q",
      "-f",
      "qcow2",
      "-F",
      "raw",
      "-b",
      `${BOOT_CACHE}/disks/${serial}.img`,
      path,
    ]);
    disks[serial] = { path, serial, format: "qcow2" };
  }
  return {
    directory,
    main: disks.main!,
    spare: disks.spare!,
    dataMain: disks["data-main"]!,
    dataSpare: disks["data-spare"]!,
    defectMain: disks["defect-main"]!,
    defectSpare: disks["defect-spare"]!,
    [Symbol.asyncDispose]: () => Deno.remove(directory, { recursive: true }),
  };
}

/** How to boot the guest. */
export interface GuestBootOptions {
  /**
   * Runs tests/boot/guest/check_<name>.sh for each name, in order, once multi-user is reached,
   * after the checks of root on the remapped device (unless `rootChecks` is false); then the
   * guest powers off cleanly.
   */
  checks: string[];
  /** @default true */
  rootChecks?: boolean;
  /** Files put beside the check scripts (/run/check/<name> in the guest). */
  files?: Record<string, string>;
  /** The initramfs: the guest's mkinitramfs's or its dracut's. @default "initramfs-tools" */
  initramfs?: "initramfs-tools" | "dracut";
  /** Extra kernel command line words (rd.dm_remap=0, rd.dm_remap.uuid=...). */
  commandLine?: string;
  /** @default the main disk and the spare */
  disks?: VmDisk[];
  onLine?: (line: string) => "kill" | undefined;
  /** @default 600_000 */
  timeoutMs?: number;
  monitorPath?: string;
}

/** Boots the Debian guest once on `disks`. */
export async function bootGuest(disks: GuestDisks, options: GuestBootOptions): Promise<VmRun> {
  const checkTree = await Deno.makeTempDir({ prefix: "dm-remap-boot-check-" });
  const checkImage = `${disks.directory}/check.img`;
  try {
    await Deno.copyFile(`${GUEST}/lib.sh`, `${checkTree}/lib.sh`);
    const lines = [". /run/check/lib.sh", ...(options.rootChecks === false ? [] : ["root_checks"])];
    for (const name of options.checks) {
      await Deno.copyFile(`${GUEST}/check_${name}.sh`, `${checkTree}/check_${name}.sh`);
      lines.push(`. /run/check/check_${name}.sh`);
    }
    lines.push("done_and_poweroff");
    await Deno.writeTextFile(`${checkTree}/run.sh`, lines.join("\n") + "\n");
    for (const [name, text] of Object.entries(options.files ?? {})) {
      await Deno.writeTextFile(`${checkTree}/${name}`, text);
    }
    await run("mke2fs", ["-q", "-F", "-t", "ext4", "-d", checkTree, checkImage, "8M"]);
  } finally {
    await Deno.remove(checkTree, { recursive: true });
  }
  return await bootVm({
    scenario: options.checks.join("+"),
    disks: [
      ...(options.disks ?? [disks.main, disks.spare]),
      { path: checkImage, serial: "check", readOnly: true },
    ],
    memoryMiB: 2560,
    timeoutMs: options.timeoutMs ?? 600_000,
    onLine: options.onLine,
    monitorPath: options.monitorPath,
    system: {
      kernelPath: `${BOOT_CACHE}/vmlinuz`,
      initrdPath: options.initramfs === "dracut"
        ? `${BOOT_CACHE}/initrd-dracut.img`
        : `${BOOT_CACHE}/initrd.img`,
      commandLine: "console=ttyS0 root=/dev/nbd0 rootfstype=ext4 rw panic=-1 " +
        "initramfs.runsize=50% rd.dm_remap.timeout=240 systemd.show_status=0 " +
        (options.commandLine ?? ""),
    },
  });
}

/** The seconds from the initramfs script's start to the root device attached, as it printed them. */
export function assemblyTimeOf(run: VmRun): { startS: number; endS: number } | undefined {
  const match = run.log.match(/dm-remap: assembled in the initramfs from ([\d.]+)s to ([\d.]+)s/);
  return match ? { startS: Number(match[1]), endS: Number(match[2]) } : undefined;
}

/** What the initramfs prints for each spare its udev rule recognised. */
export const UDEV_RECOGNISED = /dm-remap: udev recognised \/dev\/vd[a-z]+ as a dm-remap spare/;

/** The checks of root on the remapped device every boot reports (guest/lib.sh root_checks). */
export const ROOT_CHECKS = [
  "root_on_nbd",
  "server_is_root_daemon",
  "server_oom_score_adj",
  "server_daemon_steps",
  "server_locked_memory",
  "unit_active",
  "unit_main_pid_is_server",
  "no_initramfs_files_open",
  "system_state",
  "no_nbd_errors",
];

const FSYNCED_MARK = /DMREMAP-FSYNCED (\S+) ([0-9a-f]{64})/;
/** Files written before the power is cut. */
const FILES_BEFORE_CUT = 4;

/** Boots with the writer, cuts the power after some fsynced files, returns them. */
export async function bootAndCut(
  disks: GuestDisks,
  checks: string[],
  files: Record<string, string>,
) {
  const fsynced: string[] = [];
  const run = await bootGuest(disks, {
    checks: [...checks, "write"],
    files,
    onLine: (line) => {
      const match = line.match(FSYNCED_MARK);
      if (match) fsynced.push(`${match[1]} ${match[2]}`);
      return fsynced.length >= FILES_BEFORE_CUT ? "kill" : undefined;
    },
  });
  assert.ok(run.killed, `the power was not cut:\n${run.log}`);
  assertChecks(run, [...ROOT_CHECKS, "writer_started"], { done: false });
  return { run, fsynced };
}

/** The check each guest check script reports (tests/boot/guest/check_<name>.sh). */
const CHECK_REPORTS: Record<string, string> = {
  clean: "previous_stop_was_clean",
  replayed: "server_replayed_after_power_cut",
  verify: "fsynced_files_verify",
};

/** How one boot of {@link bootSeries} went. */
export interface SeriesBoot {
  boot: number;
  powerCut: boolean;
  /** What the guest checked of the boot before (tests/boot/guest/check_<name>.sh). */
  checks: string[];
  ok: boolean;
  seconds?: number;
  assembly?: { startS: number; endS: number };
  timeline?: string;
  error?: string;
  /** Files fsynced by this boot and the ones before it, which the next boot verifies. */
  fsyncedFiles: number;
}

/**
 * Boots the guest `boots` times on one set of disks, every other boot cut mid-write (qemu
 * SIGKILL), the first one clean. Each boot checks what the boot before left: after a cut, that
 * the server replayed; after a clean power-off, that the setup was stopped cleanly; and that every
 * file fsynced so far reads back. After each boot the host checks the marker the boot left on the
 * spare (clean, or still serving after a cut) and runs e2fsck -fn on the main disk.
 *
 * @param onBoot Called after each boot, with how it went.
 * @param keepGoing Whether a failed boot is followed by the rest. @default false
 */
export async function bootSeries(
  boots: number,
  onBoot: (boot: SeriesBoot) => void,
  keepGoing = false,
): Promise<SeriesBoot[]> {
  await using disks = await newGuestDisks();
  const fsynced: string[] = [];
  const outcomes: SeriesBoot[] = [];
  for (let index = 1; index <= boots; index++) {
    const powerCut = index % 2 === 0;
    const previous = outcomes.at(-1);
    const checks = [
      ...(previous === undefined ? [] : previous.powerCut ? ["replayed"] : ["clean"]),
      ...(fsynced.length > 0 ? ["verify"] : []),
    ];
    const files = { "fsynced.txt": fsynced.join("\n") + "\n" };
    const expected = checks.map((name) => CHECK_REPORTS[name]!);
    const outcome: SeriesBoot = { boot: index, powerCut, checks, ok: false, fsyncedFiles: 0 };
    try {
      let run: VmRun;
      if (powerCut) {
        const cut = await bootAndCut(disks, checks, files);
        run = cut.run;
        assertChecks(run, expected, { done: false });
        fsynced.push(...cut.fsynced);
      } else {
        run = await bootGuest(disks, { checks, files });
        assertChecks(run, [...ROOT_CHECKS, ...expected]);
      }
      outcome.seconds = Math.round(run.durationMs / 1000);
      outcome.assembly = assemblyTimeOf(run);
      const timeline = run.checks.find((check) => check.check === "boot_timeline");
      outcome.timeline = timeline && String(timeline.detail);
      assert.ok(outcome.assembly, "the initramfs reported its assembly time");
      assert.match(run.log, UDEV_RECOGNISED, "the initramfs's udev labelled the spare");
      // A clean power-off had the shutdown hook stop the server once root was read-only; a
      // cut leaves the server's marker, which the next boot's check tells from a clean stop.
      assert.equal(await spareShutdownState(disks), powerCut ? "serving" : "clean");
      await fsckMain(disks);
      outcome.ok = true;
    } catch (error) {
      outcome.error = (error as Error).message;
    }
    outcome.fsyncedFiles = fsynced.length;
    outcomes.push(outcome);
    onBoot(outcome);
    if (!outcome.ok && !keepGoing) break;
  }
  return outcomes;
}

/**
 * e2fsck -fn of the main disk's content (an overlay converted to raw). After a power cut the
 * journal holds what the next mount replays: it is replayed on the copy first (e2fsck -E
 * journal_only), or -n would report the blocks the journal still owes as bitmap differences.
 */
export async function fsckMain(disks: GuestDisks): Promise<string> {
  const raw = `${disks.directory}/main.raw`;
  await run("qemu-img", ["convert", "-O", "raw", disks.main.path, raw]);
  try {
    const replay = await new Deno.Command("e2fsck", { args: ["-E", "journal_only", "-y", raw] })
      .output();
    // 0: nothing to replay; 1: replayed.
    assert.ok(
      replay.code <= 1,
      `e2fsck -E journal_only failed (${replay.code}):\n${textOf(replay)}`,
    );
    const fsck = await new Deno.Command("e2fsck", { args: ["-fn", raw] }).output();
    assert.equal(fsck.code, 0, `e2fsck -fn is not clean:\n${textOf(fsck)}`);
    return textOf(fsck);
  } finally {
    await Deno.remove(raw);
  }
}

function textOf(output: Deno.CommandOutput): string {
  return new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
}

/**
 * How the last boot left the root setup's metadata, read on the host from the spare (an overlay
 * converted to raw) with `dm-remap check --json`: "clean" once a server stopped cleanly (it
 * removed its serving marker); a marker left by the guest's server (a power cut) reads as
 * "serving", since the host cannot tell whether that other machine still runs it.
 */
export async function spareShutdownState(
  disks: GuestDisks,
  spare: VmDisk = disks.spare,
): Promise<string> {
  const raw = `${disks.directory}/spare.raw`;
  await run("qemu-img", ["convert", "-O", "raw", spare.path, raw]);
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", `${ROOT}main.ts`, "check", raw, "--json"],
      cwd: ROOT,
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(output.stdout);
    assert.ok(output.success, text + new TextDecoder().decode(output.stderr));
    return (JSON.parse(text) as { setup: { shutdown: string } }).setup.shutdown;
  } finally {
    await Deno.remove(raw);
  }
}

/**
 * Sends commands to qemu's human monitor at `path`, one line each (`drive_add`, `device_add`).
 *
 * @returns What the monitor answered.
 */
export async function monitorCommands(path: string, commands: string[]): Promise<string> {
  const connection = await Deno.connect({ transport: "unix", path });
  let answer = "";
  const reading = (async () => {
    const buffer = new Uint8Array(4096);
    for (;;) {
      const count = await connection.read(buffer).catch(() => null);
      if (count === null) break;
      answer += new TextDecoder().decode(buffer.subarray(0, count));
    }
  })();
  for (const command of commands) {
    await connection.write(new TextEncoder().encode(command + "\n"));
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  connection.close();
  await reading;
  return answer;
}

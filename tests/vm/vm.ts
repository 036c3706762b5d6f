/**
 * The host side of the VM harness: builds the artefacts (scripts/vm_setup.sh), packs the
 * bundle and the guest scripts into a second cpio, boots Debian's kernel under
 * qemu-system-x86_64 (TCG) with virtio disks backed by image files, and parses the
 * `DMREMAP-RESULT {json}` lines the guest prints on its serial console.
 *
 * @module
 */

const ROOT = new URL("../../", import.meta.url).pathname;
const CACHE = `${ROOT}tests/vm/.cache`;
/**
 * The kernels a boot can take: each has a cache (kernel, base initrd) and the
 * script that builds it. The tools image is bookworm's cache's for both.
 */
const KERNELS = {
  /** Debian bookworm's 6.1 kernel (scripts/vm_setup.sh): every scenario but ublk's. */
  bookworm: { cache: CACHE, setup: "scripts/vm_setup.sh" },
  /** Debian trixie's 6.12 kernel with ublk_drv (scripts/vm_setup_trixie.sh). */
  trixie: { cache: `${ROOT}tests/vm/.cache-trixie`, setup: "scripts/vm_setup_trixie.sh" },
} as const;
/** Which kernel a boot runs. */
export type VmKernel = keyof typeof KERNELS;
const GUEST = `${ROOT}tests/vm/guest`;
const RESULT_MARK = "DMREMAP-RESULT ";
const DONE_MARK = "DMREMAP-DONE";
/** The first line the harness's /init prints: the kernel booted and our code runs. */
const INIT_MARK = "init: started";
/**
 * How long the harness's kernel may take to reach /init before the boot counts as stalled.
 * It takes seconds, also beside other VMs; a CI run once saw a boot print nothing in 240 s
 * (cause unknown), which failed the scenario before any of its code ran.
 */
const INIT_DEADLINE_MS = 120_000;
/** A file that gets a live copy of every guest's console (for watching a slow boot), if set. */
const CONSOLE_COPY = Deno.env.get("DM_REMAP_VM_CONSOLE");

/** One check the guest reported. */
export interface GuestCheck {
  check: string;
  ok: boolean;
  detail: unknown;
}

/** A finished boot. */
export interface VmRun {
  checks: GuestCheck[];
  /** The guest printed DMREMAP-DONE (the scenario ran to its end). */
  done: boolean;
  /** Everything the serial console printed. */
  log: string;
  /** The host killed the VM (from `onLine` or on timeout). */
  killed: boolean;
  timedOut: boolean;
  /**
   * The harness's kernel did not reach /init, on both boots: it stalled or ended first
   * (`bootVm` boots a second time then: the guest had run none of the scenario and written
   * nothing).
   */
  initNotReached: boolean;
  /** How many times qemu was started: 2 when the first boot did not reach /init. */
  boots: number;
  durationMs: number;
}

/**
 * A disk given to the guest, found there by its serial. Virtio disks have no SMART; the
 * emulated IDE, AHCI and NVMe disks answer it (qemu's `ide-hd` and `nvme` devices).
 */
export interface VmDisk {
  path: string;
  serial: string;
  readOnly?: boolean;
  /** @default "virtio" */
  bus?: "virtio" | "ide" | "ahci" | "nvme";
  /** An IDE/AHCI disk's `rotation_rate`: 1 makes it report a solid-state disk. */
  rotationRate?: number;
  /** @default "raw" */
  format?: "raw" | "qcow2";
}

/** How to boot. */
export interface BootOptions {
  /** Runs /guest/scenario_<scenario>.sh in the guest. */
  scenario: string;
  disks: VmDisk[];
  /** @default 240_000 */
  timeoutMs?: number;
  /** Sees every console line; returning "kill" kills qemu with SIGKILL at once. */
  onLine?: (line: string) => "kill" | undefined;
  /** @default 1536 */
  memoryMiB?: number;
  /** Text the guest reads as $PARAMS (a small disk with serial "params"). */
  params?: string;
  /** @default "bookworm" */
  kernel?: VmKernel;
  /**
   * Another system to boot instead of the harness's busybox initrd (the boot tests' Debian
   * guest): its kernel, initramfs and whole command line. `scenario` is then not used.
   */
  system?: { kernelPath: string; initrdPath: string; commandLine: string };
  /** @default INIT_DEADLINE_MS (120 s) */
  initDeadlineMs?: number;
  /** Where qemu's monitor listens (a unix socket path), for `device_add`. */
  monitorPath?: string;
}

const prepared = new Map<VmKernel, Promise<string>>();

/** Builds (once per process and kernel) the initrd with this work tree's bundle and guest scripts. */
export function prepareVm(kernel: VmKernel = "bookworm"): Promise<string> {
  let initrd = prepared.get(kernel);
  if (initrd === undefined) {
    initrd = buildInitrd(kernel);
    prepared.set(kernel, initrd);
  }
  return initrd;
}

async function run(command: string, args: string[], options: { cwd?: string } = {}) {
  const output = await new Deno.Command(command, {
    args,
    cwd: options.cwd ?? ROOT,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  const text = decoder.decode(output.stdout) + decoder.decode(output.stderr);
  if (output.code !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed (${output.code}):\n${text}`);
  }
  return text;
}

async function buildInitrd(kernel: VmKernel): Promise<string> {
  const { cache, setup } = KERNELS[kernel];
  await run(`${ROOT}${setup}`, []);
  const staging = await Deno.makeTempDir({ prefix: "dm-remap-vm-" });
  try {
    await Deno.mkdir(`${staging}/guest`);
    await run(Deno.execPath(), ["bundle", "--output", `${staging}/guest/dm-remap.js`, "main.ts"]);
    for await (const entry of Deno.readDir(GUEST)) {
      if (entry.isFile && entry.name !== "init") {
        await Deno.copyFile(`${GUEST}/${entry.name}`, `${staging}/guest/${entry.name}`);
      }
    }
    await run("sh", [
      "-c",
      "find guest -print0 | sort -z | cpio --null -o -H newc --quiet --owner 0:0 > overlay.cpio",
    ], { cwd: staging });
    const base = await Deno.readFile(`${cache}/initrd.cpio`);
    const overlay = await Deno.readFile(`${staging}/overlay.cpio`);
    const initrd = new Uint8Array(base.length + overlay.length);
    initrd.set(base, 0);
    initrd.set(overlay, base.length);
    // One per module that boots VMs (deno test --parallel runs the VM and boot tests in one
    // process): each removes its own when it unloads.
    const path = await Deno.makeTempFile({ dir: cache, prefix: "initrd-run-", suffix: ".cpio" });
    await Deno.writeFile(path, initrd);
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(path);
      } catch { /* already gone */ }
    });
    return path;
  } finally {
    await Deno.remove(staging, { recursive: true });
  }
}

/** Creates a sparse image file of `sizeMiB`. */
export async function createImage(path: string, sizeMiB: number): Promise<void> {
  const file = await Deno.open(path, { create: true, write: true, truncate: true });
  try {
    await file.truncate(sizeMiB * 1024 * 1024);
  } finally {
    file.close();
  }
}

/** The tools disk every boot gets (read-only). */
export function toolsDisk(): VmDisk {
  return { path: `${CACHE}/tools.img`, serial: "tools", readOnly: true };
}

/**
 * Boots the VM and collects what the scenario reported. A boot of the harness's own kernel
 * that has not reached /init within INIT_DEADLINE_MS is killed, and one that ended before it,
 * made once more; either says so on stderr.
 */
export async function bootVm(options: BootOptions): Promise<VmRun> {
  const first = await bootOnce(options);
  if (!first.initNotReached) return { ...first, boots: 1 };
  const initDeadlineMs = options.initDeadlineMs ?? INIT_DEADLINE_MS;
  console.error(
    `vm ${options.scenario}: the kernel did not reach /init (deadline ${
      initDeadlineMs / 1000
    } s; console: ${JSON.stringify(first.log.slice(-400))}); booting it once more`,
  );
  return { ...await bootOnce(options), boots: 2 };
}

async function bootOnce(options: BootOptions): Promise<Omit<VmRun, "boots">> {
  const kernel = options.kernel ?? "bookworm";
  const initrd = options.system?.initrdPath ?? await prepareVm(kernel);
  const drives: string[] = [];
  const disks = [...options.disks];
  let paramsPath: string | undefined;
  if (options.params !== undefined) {
    paramsPath = await Deno.makeTempFile({ prefix: "dm-remap-vm-params-" });
    const text = new TextEncoder().encode(options.params);
    const padded = new Uint8Array(Math.ceil((text.length + 1) / 4096) * 4096);
    padded.set(text);
    await Deno.writeFile(paramsPath, padded);
    disks.push({ path: paramsPath, serial: "params", readOnly: true });
  }
  let ahciPorts = 0;
  let idePorts = 0;
  disks.forEach((disk, index) => {
    // cache=unsafe: the host outlives every "power cut" (we kill qemu, not the host), so
    // whatever qemu has written to the image file survives, as on a disk with a volatile
    // cache whose flushes all completed; guest flushes cost nothing under TCG.
    drives.push(
      "-drive",
      `file=${disk.path},if=none,id=d${index},format=${
        disk.format ?? "raw"
      },cache=unsafe,aio=threads` +
        (disk.readOnly ? ",readonly=on" : ""),
    );
    const rotation = disk.rotationRate === undefined ? "" : `,rotation_rate=${disk.rotationRate}`;
    switch (disk.bus ?? "virtio") {
      case "virtio":
        drives.push("-device", `virtio-blk-pci,drive=d${index},serial=${disk.serial}`);
        break;
      case "ide":
        // The PIIX IDE controller of the default machine: ide.0 and ide.1, one disk each here.
        drives.push(
          "-device",
          `ide-hd,drive=d${index},bus=ide.${idePorts++},serial=${disk.serial}${rotation}`,
        );
        break;
      case "ahci":
        if (ahciPorts === 0) drives.push("-device", "ahci,id=ahci0");
        drives.push(
          "-device",
          `ide-hd,drive=d${index},bus=ahci0.${ahciPorts++},serial=${disk.serial}${rotation}`,
        );
        break;
      case "nvme":
        drives.push("-device", `nvme,drive=d${index},serial=${disk.serial}`);
        break;
    }
  });
  const started = performance.now();
  const child = new Deno.Command("qemu-system-x86_64", {
    args: [
      "-accel",
      "tcg,thread=multi",
      "-cpu",
      "max",
      "-smp",
      "2",
      "-m",
      String(options.memoryMiB ?? 1536),
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-serial",
      "stdio",
      "-no-reboot",
      "-kernel",
      options.system?.kernelPath ?? `${KERNELS[kernel].cache}/vmlinuz`,
      "-initrd",
      initrd,
      "-append",
      options.system?.commandLine ??
        `console=ttyS0 loglevel=1 panic=-1 dmremap.scenario=${options.scenario}`,
      ...(options.monitorPath ? ["-monitor", `unix:${options.monitorPath},server,nowait`] : []),
      ...drives,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let log = "";
  let killed = false;
  let timedOut = false;
  const kill = () => {
    if (killed) return;
    killed = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, options.timeoutMs ?? 240_000);
  // Only the harness's /init prints INIT_MARK; another system is watched by its own tests.
  let reachedInit = options.system !== undefined;
  const initTimer = setTimeout(() => {
    if (reachedInit) return;
    timedOut = true;
    kill();
  }, options.initDeadlineMs ?? INIT_DEADLINE_MS);
  const checks: GuestCheck[] = [];
  let done = false;
  const decoder = new TextDecoder();
  const stderrText = new Response(child.stderr).text();
  let pending = "";
  for await (const chunk of child.stdout) {
    pending += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline).replace(/\r$/, "");
      pending = pending.slice(newline + 1);
      log += line + "\n";
      if (CONSOLE_COPY !== undefined) {
        Deno.writeTextFileSync(CONSOLE_COPY, line + "\n", { append: true });
      }
      const mark = line.indexOf(RESULT_MARK);
      if (mark >= 0) checks.push(parseCheck(line.slice(mark + RESULT_MARK.length)));
      if (line.includes(DONE_MARK)) done = true;
      if (line.includes(INIT_MARK)) reachedInit = true;
      if (!killed && options.onLine?.(line) === "kill") kill();
    }
  }
  log += pending;
  await child.status;
  clearTimeout(timer);
  clearTimeout(initTimer);
  if (paramsPath) await Deno.remove(paramsPath);
  const stderr = await stderrText;
  if (stderr.trim()) log += `\n[qemu stderr]\n${stderr}`;
  // Stalled before /init, or ended before it: a kernel that oopsed or panicked (TCG once hit
  // an int3 in a timer softirq at 1.2 s) ends qemu early.
  const initNotReached = !reachedInit;
  const durationMs = performance.now() - started;
  return { checks, done, log, killed, timedOut, initNotReached, durationMs };
}

function parseCheck(text: string): GuestCheck {
  try {
    const value = JSON.parse(text) as GuestCheck;
    if (typeof value.check === "string" && typeof value.ok === "boolean") return value;
  } catch { /* reported below */ }
  return { check: "unparsable-result-line", ok: false, detail: text };
}

/**
 * Throws unless the boot finished and reported every check in `expected`, all ok; the
 * message carries the whole guest log.
 */
export function assertChecks(run: VmRun, expected: string[], options: { done?: boolean } = {}) {
  const problems: string[] = [];
  if (run.initNotReached) {
    problems.push("the kernel did not reach /init, on either boot");
  } else if ((options.done ?? true) && !run.done) {
    problems.push(run.timedOut ? "the VM timed out" : "the guest did not print DMREMAP-DONE");
  }
  for (const check of run.checks) {
    if (!check.ok) problems.push(`check "${check.check}" failed: ${JSON.stringify(check.detail)}`);
  }
  const seen = new Set(run.checks.map((check) => check.check));
  for (const name of expected) {
    if (!seen.has(name)) problems.push(`check "${name}" was never reported`);
  }
  if (problems.length > 0) {
    // The problems come last as well: a CI log that keeps only the tail still shows them.
    throw new Error(
      `${problems[0]}\n----- guest log (${
        (run.durationMs / 1000).toFixed(1)
      } s) -----\n${run.log}` +
        `----- end of guest log; the problems: -----\n${problems.join("\n")}`,
    );
  }
}

/**
 * How `assemble` starts a setup: under systemd (not in an initrd), `systemctl start
 * dm-remap@<name>.service`, so the unit owns the daemon; otherwise a `serve`
 * of this same program, detached in a session of its own, its output
 * appended to `<runtime dir>/<name>.log`.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import type { AssemblyDecision } from "../assembly/assembly_plan.ts";
import type { KernelExportDecision, KernelExportKind } from "../assembly/kernel_export_choice.ts";
import type { SetupStarter, StartRecord } from "../assembly/assemble_setups.ts";
import { assert } from "../assert.ts";
import { UsageError } from "../errors.ts";

/**
 * The flags `assemble` gives the `serve` it starts, so the kernel device is
 * made by the server itself: `/dev/nbdN`, or `/dev/ublkbN` with the default
 * queues. One table, so it follows `serve`'s flags.
 */
export const SERVE_KERNEL_DEVICE_ARGS: Readonly<Record<KernelExportKind, readonly string[]>> = {
  nbd: ["--attach", "auto"],
  ublk: ["--ublk"],
};

/**
 * Whether `assemble` starts setups as systemd units: systemd runs (sd_booted(3)
 * checks the directory), `systemctl` is there, and this is not an initrd
 * (systemd's own test: `/etc/initrd-release`). An initrd run by systemd
 * (dracut's) has none of the real system's units: there the server starts
 * directly, as a root storage daemon, and the real system's unit adopts it
 * after switch_root.
 *
 * @param root The tree the paths are looked up in (a test's). @default "/"
 */
export async function startsUnits(root = "/"): Promise<boolean> {
  if (!await exists(`${root}run/systemd/system`) || await exists(`${root}etc/initrd-release`)) {
    return false;
  }
  return await commandSucceeds(["systemctl", "--version"]);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** The systemd unit that serves a setup. */
export function unitOf(setupName: string): string {
  return `dm-remap@${setupName}.service`;
}

/** Starts the setup's unit; the unit's `serve` finds the setup by name. */
export const systemdStarter: SetupStarter = async (decision) => {
  const unit = unitOf(decision.name);
  const output = await new Deno.Command("systemctl", {
    args: ["start", unit],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new UsageError(
      `Cannot start "${unit}": systemctl said: ${new TextDecoder().decode(output.stderr).trim()}`,
    );
  }
  return { name: decision.name, unit };
};

/**
 * The command line that runs `serve` for a decision with this program: the
 * compiled binary itself, or the runtime with the main module (`main.ts` or
 * the bundle). The spares and main disk are named as discovery found them.
 */
export function serveCommandLine(
  decision: AssemblyDecision,
  context: { program: { execPath: string; mainModule: string }; kernelExport: KernelExportKind },
): string[] {
  const { program } = context;
  const runtime = program.execPath.split("/").at(-1)!;
  const self = runtime === "deno" || runtime.startsWith("deno.")
    ? [program.execPath, "run", "--allow-all", new URL(program.mainModule).pathname]
    : [program.execPath];
  const spares = decision.sparePaths.flatMap((path) => ["--spare", path]);
  const main = decision.mainPath === undefined ? [] : ["--main", decision.mainPath];
  return [
    ...self,
    "serve",
    decision.name,
    ...spares,
    ...main,
    ...SERVE_KERNEL_DEVICE_ARGS[context.kernelExport],
  ];
}

/** Options for {@link processStarter}. */
export interface ProcessStarterOptions {
  /** Where the log `<name>.log` goes (the runtime directory). */
  logDirectory: string;
  /** The program to run. @default this one: `Deno.execPath()` and `Deno.mainModule` */
  program?: { execPath: string; mainModule: string };
  /** How long a `serve` that exits at once is waited for, to report it. @default SERVE_EARLY_EXIT_MS */
  earlyExitMs?: number;
  /**
   * The `serve`'s argv[0]: "@dm-remap" in the initramfs makes it a root storage
   * daemon, which systemd's killing sprees spare. @default the program's path
   */
  argv0?: string;
  /** The kernel device each setup gets (`kernel_export_choice.ts`). */
  kernelExportOf: (decision: AssemblyDecision) => Promise<KernelExportDecision>;
}

/** How long `assemble` watches a `serve` it started for an exit at once (a refusal, a bad flag). */
export const SERVE_EARLY_EXIT_MS = 1_500;

/**
 * A starter that runs `serve` detached, logging to `<logDirectory>/<name>.log`.
 * A `serve` that exits within {@link SERVE_EARLY_EXIT_MS} (it refused the
 * disks, or a flag) fails the start, with the end of its log.
 */
export function processStarter(options: ProcessStarterOptions): SetupStarter {
  return async (decision) => {
    const kernelExport = await options.kernelExportOf(decision);
    const argv = serveCommandLine(decision, {
      program: options.program ?? { execPath: Deno.execPath(), mainModule: Deno.mainModule },
      kernelExport: kernelExport.kind,
    });
    const log = `${options.logDirectory}/${decision.name}.log`;
    // detached: a session of its own (setsid), so the terminal's hangup or Ctrl-C does not reach
    // it. node:child_process, unlike Deno.Command, sets argv[0]. The working directory is "/", so
    // a serve started in the initramfs keeps no directory of it in use.
    const logFd = openSync(log, "a");
    const child = spawn(argv[0]!, argv.slice(1), {
      argv0: options.argv0 ?? argv[0]!,
      cwd: "/",
      detached: true,
      stdio: ["ignore", logFd, logFd],
    });
    closeSync(logFd);
    child.unref();
    const status = new Promise<number>((resolve) => {
      child.on("exit", (code, signal) => resolve(code ?? (signal === null ? 1 : 128)));
      child.on("error", () => resolve(127));
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stillRunning = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), options.earlyExitMs ?? SERVE_EARLY_EXIT_MS);
    });
    const exited = await Promise.race([status, stillRunning]);
    clearTimeout(timer);
    if (exited !== undefined) {
      const tail = (await Deno.readTextFile(log).catch(() => "")).trim().split("\n").slice(-5);
      throw new Error(
        `serve (${kernelExport.kind}: ${kernelExport.reason}) exited at once with code ` +
          `${exited}; the end of "${log}": ${tail.join(" | ")}`,
      );
    }
    assert(child.pid !== undefined, "a running child has a pid");
    return { name: decision.name, pid: child.pid, kernelExport };
  };
}

/** Whether what a start record names still runs: its unit is active, or its serve is alive. */
export async function isStartAlive(record: StartRecord): Promise<boolean> {
  if (record.unit !== undefined) {
    return await commandSucceeds(["systemctl", "is-active", "--quiet", record.unit]);
  }
  try {
    // A reused pid runs something else: the command line must be this setup's serve.
    const words = (await Deno.readTextFile(`/proc/${record.pid}/cmdline`)).split("\0");
    return words.includes("serve") && words.includes(record.name);
  } catch {
    return false;
  }
}

async function commandSucceeds(argv: string[]): Promise<boolean> {
  try {
    const output = await new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      stdout: "null",
      stderr: "null",
    }).output();
    return output.success;
  } catch {
    return false;
  }
}

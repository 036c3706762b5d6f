/**
 * Whether this kernel can serve a ublk device, read from what the kernel
 * shows (so a test can point it at a fake root): `kernel.io_uring_disabled`,
 * `/dev/ublk-control` (ublk_drv loaded or built in), and the installed
 * modules of the running kernel (`/lib/modules/<release>/modules.dep` names
 * `ublk_drv.ko`: `modprobe ublk_drv` loads it).
 *
 * @module
 */

/** What this kernel offers for ublk. */
export type UblkSupport =
  /** `/dev/ublk-control` exists: ublk_drv is loaded (or built in). */
  | { kind: "loaded" }
  /** ublk_drv is installed for the running kernel but not loaded: `modprobe ublk_drv` loads it. */
  | { kind: "loadable"; modulePath: string }
  /** No ublk here; `reason` says why and what to do. */
  | { kind: "absent"; reason: string };

/** Where {@link ublkSupportOf} looks. */
export interface UblkSupportRoot {
  /** The directory holding `dev`, `proc`, `lib/modules`: "/" on a real system. @default "/" */
  rootDir?: string;
  /** The running kernel's release (`uname -r`). @default `Deno.osRelease()` */
  kernelRelease?: string;
}

/** The control device's path under the root. */
export const UBLK_CONTROL_PATH = "/dev/ublk-control";

/** The module's file as modules.dep names it (compressed or not). */
const UBLK_MODULE_ENTRY = /^(\S*\/ublk_drv\.ko(?:\.[a-z]+)?):/m;

/** What the kernel under `root` offers for ublk. */
export function ublkSupportOf(root: UblkSupportRoot = {}): UblkSupport {
  const rootDir = (root.rootDir ?? "/").replace(/\/$/, "");
  const release = root.kernelRelease ?? Deno.osRelease();
  const disabled = readText(`${rootDir}/proc/sys/kernel/io_uring_disabled`)?.trim();
  // Kernels before 6.6 have no such switch: io_uring is then on.
  if (disabled !== undefined && disabled !== "0") {
    return {
      kind: "absent",
      reason: `io_uring is disabled (sysctl kernel.io_uring_disabled=${disabled}); ` +
        "set it to 0 or use the NBD export",
    };
  }
  try {
    Deno.statSync(`${rootDir}${UBLK_CONTROL_PATH}`);
    return { kind: "loaded" };
  } catch { /* not loaded: is it installed? */ }
  const modulesDep = readText(`${rootDir}/lib/modules/${release}/modules.dep`);
  const entry = modulesDep === undefined ? undefined : UBLK_MODULE_ENTRY.exec(modulesDep)?.[1];
  if (entry !== undefined) return { kind: "loadable", modulePath: entry };
  return {
    kind: "absent",
    reason: `${UBLK_CONTROL_PATH} is missing: the kernel has no ublk_drv (modprobe ublk_drv; ` +
      `kernel ${release} lists no such module: it needs Linux 6.0 or later with ` +
      "CONFIG_BLK_DEV_UBLK); use the NBD export",
  };
}

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/** `modprobe ublk_drv`: undefined when it loaded, else why not. */
export async function loadUblkModule(): Promise<string | undefined> {
  try {
    const output = await new Deno.Command("modprobe", {
      args: ["ublk_drv"],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (output.success) return undefined;
    return `modprobe ublk_drv failed: ${new TextDecoder().decode(output.stderr).trim()}`;
  } catch (error) {
    return `modprobe ublk_drv could not run: ${(error as Error).message}`;
  }
}

/**
 * Which kernel device `assemble` gives a setup it starts: `/dev/ublkbN`
 * (ublk, io_uring) when the kernel has ublk_drv, `/dev/nbdN` otherwise; the
 * operator's `--export` (or the configuration's `export`) overrides `auto`.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import type { UblkSupport } from "../sys/ublk_support.ts";

/** What the operator may ask for. */
export const KERNEL_EXPORT_CHOICES = ["auto", "ublk", "nbd"] as const;

/** `auto`, `ublk` or `nbd`. */
export type KernelExportChoice = typeof KERNEL_EXPORT_CHOICES[number];

/**
 * `--export auto|ublk|nbd` of `assemble` and `serve`, or undefined when not given.
 *
 * @throws {UsageError} When the value is none of them.
 */
export function exportOption(value: string | undefined): KernelExportChoice | undefined {
  if (value === undefined) return undefined;
  const choice = KERNEL_EXPORT_CHOICES.find((each) => each === value);
  if (choice === undefined) throw new UsageError(`--export "${value}": give auto, ublk or nbd`);
  return choice;
}

/** The kernel device a setup gets. */
export type KernelExportKind = "ublk" | "nbd";

/** The device chosen, and why (shown by `assemble` and kept in the history). */
export interface KernelExportDecision {
  kind: KernelExportKind;
  reason: string;
}

/** Options for {@link decideKernelExport}. */
export interface DecideKernelExportOptions {
  choice: KernelExportChoice;
  /** What the kernel offers (`ublkSupportOf()`). */
  support: UblkSupport;
  /**
   * Loads ublk_drv (`modprobe ublk_drv`) when it is installed but not loaded;
   * resolves to undefined on success or to why it failed.
   */
  loadModule: () => Promise<string | undefined>;
  /**
   * The setup's `/dev/nbdN` still attached (`attachedNbdDevices()`): a
   * previous server left it, the kernel holding its I/O for the next one.
   */
  attachedNbd?: string;
}

/**
 * Decides the kernel device. `auto` takes ublk when ublk_drv is loaded, or
 * installed and loads; NBD otherwise (NBD works on every kernel the program
 * supports). An explicit `ublk` is kept even where the kernel lacks it: the
 * `serve` started then refuses with the reason, and nothing is written.
 * Whatever the choice, a setup whose `/dev/nbdN` is still attached gets NBD:
 * the new server takes that device back (a filesystem on it, root perhaps,
 * waits for it); `dm-remap stop` detaches it, and the next start chooses.
 */
export async function decideKernelExport(
  options: DecideKernelExportOptions,
): Promise<KernelExportDecision> {
  const { choice, support } = options;
  if (options.attachedNbd !== undefined) {
    return {
      kind: "nbd",
      reason: `${options.attachedNbd} of this setup is still attached: NBD takes it back`,
    };
  }
  if (choice === "nbd") return { kind: "nbd", reason: "NBD asked for (export nbd)" };
  const asked = choice === "ublk" ? "ublk asked for (export ublk)" : undefined;
  if (support.kind === "loaded") {
    return { kind: "ublk", reason: asked ?? "auto: ublk_drv is loaded (/dev/ublk-control)" };
  }
  if (support.kind === "loadable") {
    const failure = await options.loadModule();
    if (failure === undefined) {
      return {
        kind: "ublk",
        reason: asked ?? `auto: ublk_drv loaded from ${support.modulePath}`,
      };
    }
    if (asked !== undefined) return { kind: "ublk", reason: `${asked}; ${failure}` };
    return { kind: "nbd", reason: `auto: NBD, as ${failure}` };
  }
  if (asked !== undefined) return { kind: "ublk", reason: `${asked}; ${support.reason}` };
  return { kind: "nbd", reason: `auto: NBD, as ${support.reason}` };
}

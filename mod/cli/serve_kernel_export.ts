/**
 * `serve --export [auto|ublk|nbd]`: a kernel device of the kind `assemble`
 * would choose, decided by the same function (`decideKernelExport`), so the
 * systemd unit (`serve NAME --export --adopt`) and `assemble` never disagree.
 * A bare `--export` takes the configuration's `export` for the setup, else
 * `auto`: ublk when the kernel has ublk_drv (loaded, or installed and loaded
 * with modprobe), NBD otherwise. The decision becomes `--ublk` or
 * `--attach auto`, whose defaults then apply.
 *
 * @module
 */

import {
  decideKernelExport,
  exportOption,
  type KernelExportDecision,
  type KernelExportKind,
} from "../assembly/kernel_export_choice.ts";
import type { ConfigValues } from "../config/config_values.ts";
import type { UblkSupport } from "../sys/ublk_support.ts";
import type { OptionValue } from "./command.ts";
import { stringOption } from "./options.ts";
import { EXPORT_AS_CONFIGURED, kernelExportChoiceOf, type SetupKeys } from "./service_settings.ts";

/** `serve`'s flags that make each kind of kernel device. */
const KERNEL_DEVICE_FLAGS: Readonly<Record<KernelExportKind, Record<string, OptionValue>>> = {
  nbd: { attach: "auto" },
  ublk: { ublk: true },
};

/** Options for {@link resolveServeExport}. */
export interface ResolveServeExportOptions {
  /** The setup whose section of the configuration may say `export`. */
  keys: SetupKeys;
  config: ConfigValues | undefined;
  /** What the kernel offers (`ublkSupportOf()`). */
  support: UblkSupport;
  /** `modprobe ublk_drv`: undefined when it loaded, else why not. */
  loadModule: () => Promise<string | undefined>;
  /** The setup's `/dev/nbdN` a previous server left attached, if any. */
  attachedNbd?: string;
}

/**
 * `serve`'s flags with `--export` replaced by the flags of the kernel device
 * it resolves to, and the decision; the flags unchanged without `--export`.
 *
 * @throws {UsageError} When `--export` names no choice.
 */
export async function resolveServeExport(
  values: Record<string, OptionValue>,
  options: ResolveServeExportOptions,
): Promise<{ values: Record<string, OptionValue>; decision?: KernelExportDecision }> {
  const asked = stringOption(values.export);
  if (asked === undefined) return { values };
  const choice = asked === EXPORT_AS_CONFIGURED
    ? kernelExportChoiceOf(options.config, options.keys) ?? "auto"
    : exportOption(asked)!;
  const decision = await decideKernelExport({
    choice,
    support: options.support,
    loadModule: options.loadModule,
    attachedNbd: options.attachedNbd,
  });
  const { export: _asked, ...rest } = values;
  return { values: { ...rest, ...KERNEL_DEVICE_FLAGS[decision.kind] }, decision };
}

/**
 * `dm-remap stop <name|uuid> [--force] [--timeout SECONDS] [--json]`: stops
 * the running `serve` of a setup and has it detach its kernel device.
 *
 * The server is found by its runtime state under the run directory. While
 * its kernel device is in use (mounted, something stacked on it, opened by
 * another process or claimed exclusively) the stop is refused, naming the
 * user, unless `--force`. A plain SIGTERM (systemd restarting the unit)
 * leaves the kernel device attached for the next server; this command first
 * writes a stop request naming the server, so the server knows to detach.
 *
 * @module
 */

import { deviceInUseReason } from "../../device/device_users.ts";
import { UnavailableError } from "../../errors.ts";
import { findRunningSetup, stopServer } from "../../service/stop_server.ts";
import type { CommandInput } from "../command.ts";
import { integerOption, onePositional, RUN_DIR, stringOption } from "../options.ts";

/** How long `stop` waits for the server to exit, by default. */
const STOP_TIMEOUT_SECONDS_DEFAULT = 60;
/** The longest wait `--timeout` may ask for. */
const STOP_TIMEOUT_SECONDS_MAX = 3600;

/** Stops one running setup; exit 0 once its server has exited. */
export async function stopCommand({ values, positionals, output }: CommandInput): Promise<number> {
  const setup = onePositional(positionals, "setup name or UUID", true)!;
  const timeoutSeconds = integerOption("timeout", stringOption(values.timeout), {
    min: 1,
    max: STOP_TIMEOUT_SECONDS_MAX,
  }) ?? STOP_TIMEOUT_SECONDS_DEFAULT;
  const { state } = await findRunningSetup(RUN_DIR, setup);
  const kernelDevice = state.kernelDevice;
  if (kernelDevice !== undefined && values.force !== true) {
    const use = deviceInUseReason(kernelDevice, { exceptPids: [state.process.pid] });
    if (use !== undefined) {
      throw new UnavailableError(
        `Setup "${state.name}" is in use: ${kernelDevice}: ${use}. Stop that user first ` +
          `(unmount it), or pass --force to detach it anyway (its users then get I/O errors)`,
      );
    }
  }
  const { waitedMs } = await stopServer(RUN_DIR, state, { timeoutMs: timeoutSeconds * 1000 });
  if (values.json) {
    output.out(JSON.stringify({
      name: state.name,
      uuid: state.uuid,
      pid: state.process.pid,
      kernelDevice: kernelDevice ?? null,
      stopped: true,
      waitedMs,
    }));
    return 0;
  }
  output.out(
    `Stopped setup "${state.name}" (process ${state.process.pid}) in ${waitedMs} ms` +
      (kernelDevice ? `, asked to detach ${kernelDevice}` : ""),
  );
  return 0;
}

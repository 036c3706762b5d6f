/**
 * `dm-remap serve (<name> | --spare <dev>...)`: assemble from the disks and
 * serve until SIGTERM/SIGINT.
 *
 * @module
 */

import { openSpares } from "../../assembly/assemble.ts";
import { READ_RETRIES_MAX } from "../../constants.ts";
import type { Device } from "../../device/device.ts";
import { closeAll, openPath, resolveSparePaths } from "../devices.ts";
import type { CommandInput } from "../mod.ts";
import {
  BACKUP_DIR,
  integerOption,
  listOption,
  onePositional,
  RUN_DIR,
  stringOption,
  tcpOption,
} from "../options.ts";
import { startServing, untilSignal } from "../serving.ts";
import { STATE_DIR } from "../options.ts";

/** The event history lives with the setup's state, where it survives reboots. */
async function defaultEventsPath(setupName: string): Promise<string> {
  await Deno.mkdir(STATE_DIR, { recursive: true });
  return `${STATE_DIR}/${setupName}.events.sqlite`;
}

/** Serves a setup in the foreground; systemd runs it as a simple service. */
export async function serveCommand({ values, positionals, output }: CommandInput): Promise<number> {
  const name = onePositional(positionals, "setup name", false);
  const resolved = await resolveSparePaths(
    name,
    listOption(values.spare),
    listOption(values["scan-dir"]),
  );
  const readRetries = integerOption("read-retries", stringOption(values["read-retries"]), {
    min: 0,
    max: READ_RETRIES_MAX,
  });
  const nbdTcp = tcpOption("tcp", stringOption(values.tcp));
  const apiTcp = tcpOption("api-tcp", stringOption(values["api-tcp"]));
  // Listen before anything starts, so a stop request during startup is not lost.
  const stopRequested = untilSignal();
  const devices: Device[] = [];
  try {
    const direct = values.buffered !== true;
    for (const path of resolved.sparePaths) {
      devices.push((await openPath(path, { readOnly: false, direct })).device);
    }
    const spares = await openSpares(devices);
    const setupName = spares.description.setup.name;
    for (const report of spares.reports) {
      const repaired = report.copies.filter((copy) => copy.repaired).length;
      output.err(
        `dm-remap[${setupName}]: ${report.device}: ${report.validCopies}/5 copies valid` +
          (repaired > 0 ? `, ${repaired} repaired` : ""),
      );
    }
    const mainPath = stringOption(values.main) ?? spares.description.main.path;
    const main = await openPath(mainPath, { readOnly: false, direct });
    devices.push(main.device);
    const nbdUnixPath = stringOption(values.socket) ??
      (nbdTcp ? undefined : `${RUN_DIR}/${setupName}.nbd.sock`);
    const apiUnixPath = stringOption(values["api-socket"]) ??
      (apiTcp ? undefined : `${RUN_DIR}/${setupName}.api.sock`);
    for (const path of [nbdUnixPath, apiUnixPath]) {
      if (path) await Deno.mkdir(path.slice(0, path.lastIndexOf("/")) || "/", { recursive: true });
    }
    const serving = await startServing({
      main,
      spares,
      exportName: stringOption(values["export-name"]) ?? setupName,
      nbdUnixPath,
      nbdTcp,
      apiUnixPath,
      apiTcp,
      readRetries,
      eventsPath: stringOption(values["events-db"]) ?? await defaultEventsPath(setupName),
      backupDir: stringOption(values["backup-dir"]) ?? BACKUP_DIR,
      output,
    });
    output.out(
      `dm-remap[${setupName}]: serving ${serving.engine.sizeBytes} bytes, ${serving.engine.remapCount} remaps`,
    );
    for (const address of serving.nbdAddresses) output.out(`  NBD  ${address}`);
    for (const address of serving.apiAddresses) output.out(`  API  ${address}`);
    const signal = await stopRequested;
    output.err(
      `dm-remap[${setupName}]: ${signal}: finishing in-flight requests, flushing, writing metadata`,
    );
    await serving.stop();
    output.err(`dm-remap[${setupName}]: stopped cleanly`);
    return 0;
  } catch (error) {
    await closeAll(devices);
    throw error;
  }
}

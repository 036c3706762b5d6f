/**
 * `dm-remap serve (<name> | --spare <dev>...)`: assemble from the disks and
 * serve until SIGTERM/SIGINT.
 *
 * Nothing is written before every check has passed: the spares are opened
 * exclusively (a second `serve` of the setup is refused, naming the process
 * that serves it), read without repair, the main disk is found and compared
 * with them by what it is, and its identity with the recorded one. Only then
 * are stale copies repaired and the setup served.
 *
 * @module
 */

import { checkMainIdentity, openSpares, recordMainIdentity } from "../../assembly/assemble.ts";
import { checkDistinctDisks } from "../../assembly/distinct_disks.ts";
import { mainIdentityOf, missingLayers } from "../../assembly/identity.ts";
import type { Device } from "../../device/device.ts";
import { DeviceOpenError } from "../../errors.ts";
import { shutdownStateOf } from "../../service/serving_marker.ts";
import { SetupService } from "../../service/setup_service.ts";
import type { CommandInput } from "../command.ts";
import { closeAll, openPath, type ProbedPath, probePath, resolveSparePaths } from "../devices.ts";
import { listOption, onePositional, stringOption } from "../options.ts";
import { parseServeFlags, serveSettings } from "../service_settings.ts";
import { untilSignal } from "../stop_signal.ts";

/** Serves a setup in the foreground; systemd runs it as a simple service. */
export async function serveCommand({ values, positionals, output }: CommandInput): Promise<number> {
  const name = onePositional(positionals, "setup name", false);
  const resolved = await resolveSparePaths(
    name,
    listOption(values.spare),
    listOption(values["scan-dir"]),
  );
  const flags = parseServeFlags(values);
  const force = values.force === true;
  // Listen before anything starts, so a stop request during startup is not lost.
  const stopRequested = untilSignal();
  const devices: Device[] = [];
  try {
    const direct = values.buffered !== true;
    const spareProbes: ProbedPath[] = [];
    for (const path of resolved.sparePaths) spareProbes.push(await probePath(path));
    const spareDisks = spareProbes.map((probe) => ({
      role: "spare" as const,
      path: probe.given,
      stack: probe.stack,
    }));
    checkDistinctDisks(
      name === undefined ? "serve the setup" : `serve setup "${name}"`,
      spareDisks,
    );
    const spareDevices: Device[] = [];
    for (const path of resolved.sparePaths) {
      spareDevices.push((await openPath(path, { readOnly: false, direct })).device);
      devices.push(spareDevices.at(-1)!);
    }
    // Read without repair first: nothing is written until the main disk is known to be right.
    const unrepaired = await openSpares(spareDevices, { repair: false });
    const setupName = unrepaired.description.setup.name;
    const mainPath = stringOption(values.main) ?? unrepaired.description.main.path;
    const mainProbe = await probePath(mainPath).catch((error) => {
      if (values.main !== undefined || !(error instanceof DeviceOpenError)) throw error;
      if (error.code !== "ENOENT") throw error;
      throw new DeviceOpenError(
        mainPath,
        `the main disk of setup "${setupName}" was recorded at this path, and nothing is there ` +
          `now: name it with --main`,
        "ENOENT",
        error,
      );
    });
    checkDistinctDisks(`serve setup "${setupName}"`, [
      { role: "main", path: mainPath, stack: mainProbe.stack },
      ...spareDisks,
    ]);
    const mismatch = checkMainIdentity(unrepaired.description, mainProbe.identity, { force });
    const main = await openPath(mainPath, { readOnly: false, direct });
    devices.push(main.device);
    const spares = await openSpares(spareDevices);
    const last = spares.description.setup.serving;
    if (last !== undefined && shutdownStateOf(last) === "not-clean") {
      output.err(
        `dm-remap[${setupName}]: the last serve (process ${last.pid} on ${last.host}) did not ` +
          `stop cleanly; its remaps were replayed from the log`,
      );
    }
    for (const report of spares.reports) {
      const repaired = report.copies.filter((copy) => copy.repaired).length;
      output.err(
        `dm-remap[${setupName}]: ${report.device}: ${report.validCopies}/5 copies valid` +
          (repaired > 0 ? `, ${repaired} repaired` : ""),
      );
    }
    if (mismatch !== undefined || missingLayers(spares.description.main, main.identity)) {
      await recordMainIdentity(spares, await mainIdentityOf(main.identity));
      output.err(
        mismatch === undefined
          ? `dm-remap[${setupName}]: recorded the main disk's identity in full (this setup was ` +
            `made by an older version, which recorded its size and serial only)`
          : `dm-remap[${setupName}]: --force: accepted "${main.identity.path}" as the main disk ` +
            `(${mismatch.reason}) and recorded its identity`,
      );
    }
    const serving = new SetupService({ main, spares }, {
      settings: serveSettings(flags, setupName),
      log: (line) => output.err(line),
    });
    await serving.start();
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

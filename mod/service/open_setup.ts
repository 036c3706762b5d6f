/**
 * Opening a setup's disks to serve it, with every check before any write:
 * the spares are opened exclusively (a second `serve` of the setup is refused,
 * naming the process that serves it) and read without repair, the main disk
 * is found and compared with them by what it is, and its identity with the
 * recorded one. Only then are stale copies repaired and, with `force` or for
 * a setup an older version made, the main disk's identity recorded.
 *
 * @module
 */

import { checkMainIdentity, openSpares, recordMainIdentity } from "../assembly/assemble.ts";
import { checkDistinctDisks } from "../assembly/distinct_disks.ts";
import { mainIdentityOf, missingLayers } from "../assembly/identity.ts";
import { closeAll, openPath, type ProbedPath, probePath } from "../assembly/open_path.ts";
import type { Device } from "../device/device.ts";
import { DeviceOpenError } from "../errors.ts";
import { shutdownStateOf } from "./serving_marker.ts";
import type { SetupDisks } from "./setup_service.ts";

/** Which disks to open, as the command line named them. */
export interface ServedDiskPaths {
  /** The setup's name, when the user gave one (for messages). */
  name: string | undefined;
  sparePaths: string[];
  /** @default the path the spares record */
  mainPath?: string;
  /** Accept a main disk whose identity does not match the recorded one, and record it. */
  force: boolean;
  /** Open with O_DIRECT (`serve` without `--buffered`). */
  direct: boolean;
}

/** The opened disks and the setup's name. */
export interface OpenedSetup extends SetupDisks {
  setupName: string;
}

/**
 * Opens a setup's disks for serving; on any failure, closes what it opened.
 *
 * @param log Receives what happened that the operator should know (repairs, an unclean stop).
 * @throws {DeviceOpenError | SetupMismatchError | UsageError} When a disk is missing, is not the
 * recorded one, or two names are one disk; nothing is written then.
 */
export async function openSetupForServing(
  paths: ServedDiskPaths,
  log: (line: string) => void,
): Promise<OpenedSetup> {
  const devices: Device[] = [];
  try {
    return await openChecked(paths, devices, log);
  } catch (error) {
    await closeAll(devices);
    throw error;
  }
}

async function openChecked(
  paths: ServedDiskPaths,
  devices: Device[],
  log: (line: string) => void,
): Promise<OpenedSetup> {
  const spareProbes: ProbedPath[] = [];
  for (const path of paths.sparePaths) spareProbes.push(await probePath(path));
  const spareDisks = spareProbes.map((probe) => ({
    role: "spare" as const,
    path: probe.given,
    stack: probe.stack,
  }));
  checkDistinctDisks(
    paths.name === undefined ? "serve the setup" : `serve setup "${paths.name}"`,
    spareDisks,
  );
  const spareDevices: Device[] = [];
  for (const path of paths.sparePaths) {
    spareDevices.push((await openPath(path, { readOnly: false, direct: paths.direct })).device);
    devices.push(spareDevices.at(-1)!);
  }
  // Read without repair first: nothing is written until the main disk is known to be right.
  const unrepaired = await openSpares(spareDevices, { repair: false, allowMissing: true });
  const setupName = unrepaired.description.setup.name;
  const mainPath = paths.mainPath ?? unrepaired.description.main.path;
  const mainProbe = await probePath(mainPath).catch((error) => {
    if (paths.mainPath !== undefined || !(error instanceof DeviceOpenError)) throw error;
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
  const mismatch = checkMainIdentity(unrepaired.description, mainProbe.identity, {
    force: paths.force,
  });
  const main = await openPath(mainPath, { readOnly: false, direct: paths.direct });
  devices.push(main.device);
  const spares = await openSpares(spareDevices, { allowMissing: true });
  const last = spares.description.setup.serving;
  if (last !== undefined && shutdownStateOf(last) === "not-clean") {
    log(
      `dm-remap[${setupName}]: the last serve (process ${last.pid} on ${last.host}) did not ` +
        `stop cleanly; its remaps were replayed from the log`,
    );
  }
  for (const report of spares.reports) {
    const repaired = report.copies.filter((copy) => copy.repaired).length;
    log(
      `dm-remap[${setupName}]: ${report.device}: ${report.validCopies}/5 copies valid` +
        (repaired > 0 ? `, ${repaired} repaired` : ""),
    );
  }
  if (mismatch !== undefined || missingLayers(spares.description.main, main.identity)) {
    await recordMainIdentity(spares, await mainIdentityOf(main.identity));
    log(
      mismatch === undefined
        ? `dm-remap[${setupName}]: recorded the main disk's identity in full (this setup was ` +
          `made by an older version, which recorded its size and serial only)`
        : `dm-remap[${setupName}]: --force: accepted "${main.identity.path}" as the main disk ` +
          `(${mismatch.reason}) and recorded its identity`,
    );
  }
  return { main, spares, setupName };
}

/**
 * The {@link SetupControl} of a running setup: what the API's mutating
 * routes do, carried out by the service's own parts. A metadata repair runs
 * in the engine, between its other metadata writes; a stop is handed to
 * whoever runs the service (`serve` stops it as on SIGTERM), after the same
 * in-use check `dm-remap stop` makes; a reload too (`serve` reloads as on
 * SIGHUP).
 *
 * @module
 */

import type {
  MetadataRepair,
  ReloadOutcome,
  SetupControl,
  SpareAdded,
  SpareAddRequest,
  StopAccepted,
  StopRequestOptions,
} from "../api/control.ts";
import type { SpareMigrationStatus } from "../api/status.ts";
import { checkJoiningSpare } from "../assembly/add_spare.ts";
import type { OpenedSpares } from "../assembly/assemble.ts";
import { checkDistinctDisks } from "../assembly/distinct_disks.ts";
import { openPath, probePath } from "../assembly/open_path.ts";
import { deviceInUseReason } from "../device/device_users.ts";
import { storageKeyOf } from "../device/storage_stack.ts";
import { UnavailableError, UsageError } from "../errors.ts";
import type { RemapDevice } from "../remap/remap_device.ts";
import type { SpareMember } from "../remap/spare_set.ts";
import { migrationStatusOf } from "./status_source.ts";

/** What the control acts on. */
export interface SetupControlParts {
  engine: RemapDevice;
  /** The spares as opened; their reports are updated after a repair, so the status shows it. */
  spares: OpenedSpares;
  /** The kernel device the server attached, if any. */
  kernelDevice: () => string | undefined;
  /** Told of each spare whose copies a repair rewrote (the `metadata-repaired` event). */
  onRepaired: (event: { spareIndex: number; repairs: string[] }) => void;
  /** Begins the stop; undefined when nothing can stop this service from the API. */
  onStopRequested?: (request: { detach: boolean }) => void;
  /** Reloads the configuration; undefined when this service has no configuration file. */
  onReloadRequested?: () => Promise<ReloadOutcome>;
  /** The main disk's path, to refuse it (or what lies on it) as a spare. */
  mainPath: string;
  /** Told of a spare that joined, so the data plane's workers can reach it. */
  onSpareJoined: (spare: SpareMember) => void;
}

/** The control over a running engine. */
export function setupControlOf(parts: SetupControlParts): SetupControl {
  const { engine, spares } = parts;
  let stopRequested: StopAccepted | undefined;
  return {
    async repairMetadata(): Promise<MetadataRepair> {
      const repairs = await engine.repairMetadata();
      const result: MetadataRepair = { spares: [], repairedCopies: 0 };
      for (const repair of repairs) {
        const copies = repair.copies.map((copy) => ({
          copyIndex: copy.copyIndex,
          sector: copy.sector,
          valid: copy.valid,
          ...(copy.reason === undefined ? {} : { reason: copy.reason }),
          ...(copy.sequence === undefined ? {} : { sequence: copy.sequence }),
          winner: copy.winner,
          repaired: copy.repaired,
        }));
        const repairedCopies = copies.filter((copy) => copy.repaired).length;
        const report = spares.reports[repair.spareIndex]!;
        if (repair.error === undefined) {
          // Every copy now holds the current state.
          report.copies = repair.copies.map((copy) => ({ ...copy, valid: true }));
          report.validCopies = report.copies.length;
        }
        result.spares.push({
          index: repair.spareIndex,
          path: engine.spares[repair.spareIndex]!.device.name,
          copies,
          repairedCopies,
          ...(repair.error === undefined ? {} : { error: repair.error }),
        });
        result.repairedCopies += repairedCopies;
        if (repairedCopies > 0) {
          parts.onRepaired({
            spareIndex: repair.spareIndex,
            repairs: copies.filter((copy) => copy.repaired).map((copy) =>
              `copy ${copy.copyIndex}: ${
                copy.reason ?? "stale"
              }: rewritten (POST /api/v1/metadata/repair)`
            ),
          });
        }
      }
      return result;
    },
    async addSpare(request: SpareAddRequest): Promise<SpareAdded> {
      const setupName = spares.description.setup.name;
      const probe = await probePath(request.path);
      checkDistinctDisks(`add "${request.path}" to setup "${setupName}"`, [
        { role: "main", path: parts.mainPath, stack: (await probePath(parts.mainPath)).stack },
        ...await Promise.all(
          engine.spares.filter((spare) => spare.store !== undefined).map(async (spare) => ({
            role: "spare" as const,
            path: spare.device.name,
            stack: (await probePath(spare.device.name)).stack,
          })),
        ),
        { role: "spare", path: request.path, stack: probe.stack },
      ]);
      // Exclusive: a disk mounted or held by another process is refused as in use.
      const direct = engine.spares.find((spare) => spare.store !== undefined)?.device
        .directAccess?.()?.direct ?? true;
      const opened = await openPath(probe.given, { readOnly: false, direct });
      try {
        const layout = await checkJoiningSpare({
          setupName,
          blockBytes: engine.blockBytes,
          device: opened.device,
          path: request.path,
          members: engine.spares.map((spare) => ({
            index: spare.index,
            state: spare.state,
            layout: spare.layout,
            slotsUsed: engine.slotsUsedOf(spare.index),
          })),
          force: request.force,
        });
        const index = await engine.addSpare({
          device: opened.device,
          path: opened.identity.path,
          layout,
        });
        parts.onSpareJoined(engine.spares[index]!);
        return { index, path: opened.identity.path, slotCount: layout.slotCount };
      } catch (error) {
        // Not a member yet: the device is this command's to close.
        if (engine.spares.every((spare) => spare.device !== opened.device)) {
          await opened.device.close();
        }
        throw error;
      }
    },
    async removeSpare(request: { path: string }): Promise<SpareMigrationStatus> {
      const key = await storageKeyOf(request.path);
      let index: number | undefined;
      for (const spare of engine.spares) {
        if (spare.store === undefined || spare.state === "removed") continue;
        if (key !== undefined && await storageKeyOf(spare.device.name) === key) index = spare.index;
      }
      if (index === undefined) {
        throw new UsageError(
          `Cannot remove "${request.path}" from setup "${spares.description.setup.name}": it is ` +
            `not one of its spares (${
              engine.spares.filter((spare) =>
                spare.store !== undefined && spare.state !== "removed"
              )
                .map((spare) => `"${spare.device.name}"`).join(", ")
            })`,
        );
      }
      const migration = await engine.removeSpare(index);
      return migrationStatusOf(migration)!;
    },
    requestStop(options: StopRequestOptions): StopAccepted {
      const stop = parts.onStopRequested;
      if (stop === undefined) {
        throw new UnavailableError(
          "Cannot stop this setup through its API: it is not run by `dm-remap serve`",
        );
      }
      if (stopRequested !== undefined) return stopRequested;
      const kernelDevice = parts.kernelDevice();
      if (kernelDevice !== undefined && options.detach && !options.force) {
        const use = deviceInUseReason(kernelDevice, { exceptPids: [Deno.pid] });
        if (use !== undefined) {
          throw new UnavailableError(
            `Setup is in use: ${kernelDevice}: ${use}. Stop that user first (unmount it), or ` +
              `send {"force": true} to detach it anyway (its users then get I/O errors)`,
          );
        }
      }
      stopRequested = { stopping: true, pid: Deno.pid, kernelDevice: kernelDevice ?? null };
      // After this answer is written: the stop closes the API that writes it.
      setTimeout(() => stop({ detach: options.detach }), 0);
      return stopRequested;
    },
    reload(): Promise<ReloadOutcome> {
      if (parts.onReloadRequested === undefined) {
        throw new UnavailableError(
          "Cannot reload this setup's configuration through its API: it is not run by " +
            "`dm-remap serve`",
        );
      }
      return parts.onReloadRequested();
    },
  };
}

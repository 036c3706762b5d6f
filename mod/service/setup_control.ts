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
  StopAccepted,
  StopRequestOptions,
} from "../api/control.ts";
import type { OpenedSpares } from "../assembly/assemble.ts";
import { deviceInUseReason } from "../device/device_users.ts";
import { UnavailableError } from "../errors.ts";
import type { RemapDevice } from "../remap/remap_device.ts";

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

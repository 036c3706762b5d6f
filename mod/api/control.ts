/**
 * What the API's mutating routes may ask of a running setup. Like the
 * {@link StatusSource}, it is injected: the API never sees devices, and the
 * service decides how each request is carried out.
 *
 * @module
 */

import type { CopyHealth, SpareMigrationStatus } from "./status.ts";

/** What a metadata repair found and did on one spare. */
export interface SpareMetadataRepair {
  index: number;
  path: string;
  /** The five copies as they were found; `repaired` marks those rewritten. */
  copies: CopyHealth[];
  /** Copies rewritten. */
  repairedCopies: number;
  /** Why the spare could not be repaired; it has failed. */
  error?: string;
}

/** The answer of `POST /api/v1/metadata/repair`. */
export interface MetadataRepair {
  /** Every spare that is not failed, in index order. */
  spares: SpareMetadataRepair[];
  /** Copies rewritten on all spares. */
  repairedCopies: number;
}

/** What `POST /api/v1/stop` asks. */
export interface StopRequestOptions {
  /** Detach the kernel device too, as `dm-remap stop` does. @default true */
  detach: boolean;
  /** Detach it even while mounted or open. @default false */
  force: boolean;
}

/** The answer of `POST /api/v1/stop`: the stop has begun. */
export interface StopAccepted {
  stopping: true;
  /** The process that stops. */
  pid: number;
  /** The kernel device that will be detached, if any. */
  kernelDevice: string | null;
}

/** The answer of `POST /api/v1/reload`: what reading the configuration file again did. */
export interface ReloadOutcome {
  /** The file read. */
  file: string;
  /** False when the file did not check: the running configuration stays. */
  reloaded: boolean;
  /** Changed keys that took effect at once. */
  applied: string[];
  /** Changed keys that take effect only after a restart. */
  needsRestart: string[];
  /** Why the file was refused (each problem with its line and column), when it was. */
  problems?: string;
}

/** What `POST /api/v1/spares/add` asks. */
export interface SpareAddRequest {
  /** The device or file to add. */
  path: string;
  /** Overwrite it even when it holds a filesystem or another setup's metadata. @default false */
  force: boolean;
}

/** The answer of `POST /api/v1/spares/add`: the spare joined the pool. */
export interface SpareAdded {
  index: number;
  /** Its canonical path, as the setup records it. */
  path: string;
  slotCount: number;
}

/** The changes a running setup offers its API. */
export interface SetupControl {
  /** Rewrites stale or invalid metadata copies from the current state. */
  repairMetadata(): Promise<MetadataRepair>;
  /**
   * Begins an orderly stop, as `dm-remap stop` does; the answer is sent
   * before the API itself stops.
   *
   * @throws {UnavailableError} When the kernel device is in use and `force` is not set.
   */
  requestStop(options: StopRequestOptions): StopAccepted;
  /**
   * Reads the configuration file again, as SIGHUP does: applies what can
   * change live and names what needs a restart; a file that does not check
   * changes nothing.
   *
   * @throws {UnavailableError} When no configuration can be reloaded now
   *   (not run by `dm-remap serve`, or starting or stopping).
   */
  reload(): Promise<ReloadOutcome>;
  /**
   * Adds a spare to the pool (`dm-remap spare add`), checked as `create` checks one.
   *
   * @throws {RefusedError} When it holds data, is one of the setup's disks, or does not fit.
   */
  addSpare(request: SpareAddRequest): Promise<SpareAdded>;
  /**
   * Starts removing the spare at `path` (identified by what it is, not by the
   * path's text): its blocks move to the others in the background.
   *
   * @returns The migration's progress as it starts.
   * @throws {RefusedError} When the other spares lack room (saying how much).
   */
  removeSpare(request: { path: string }): Promise<SpareMigrationStatus>;
}

/**
 * What one discovery candidate is: its identity, the storage it lies on, and
 * the dm-remap metadata copies it carries. Runs inside a probe worker
 * (`probe_pool.ts`), so a device whose read never returns stalls only that
 * worker, never the command.
 *
 * Read only: the path is opened `O_RDONLY` without `O_EXCL` (a device that a
 * running `serve` holds is still probed), its five copy regions are read and
 * decoded, and nothing is repaired or written.
 *
 * @module
 */

import { openFileDevice } from "../device/file_device.ts";
import { readCopies } from "../metadata/spare_store.ts";
import { compareCopies, type ValidCopy } from "../metadata/superblock.ts";
import type { ProbedIdentity } from "./identity.ts";
import { probePath } from "./open_path.ts";

/** What a probe found on one candidate. */
export interface CandidateProbe {
  path: string;
  /** Absent when the path could not be examined (`error` says why). */
  identity?: ProbedIdentity;
  /**
   * What storage it is: a loop device's backing file, else the node itself
   * (`StorageNode.key`), so a loop device and its image file count as one.
   */
  storageKey?: string;
  /** Copies that passed every check, out of five. */
  validCopies: number;
  /** Why the other copies failed, one reason per copy. */
  invalidReasons: string[];
  /** The newest valid copy: this spare's metadata. */
  winner?: ValidCopy;
  /** Why the path could not be examined or opened. */
  error?: string;
}

/**
 * Probes one candidate without writing to it.
 *
 * @returns What was found; failures are reported in `error`, never thrown.
 */
export async function probeCandidate(path: string): Promise<CandidateProbe> {
  const probe: CandidateProbe = { path, validCopies: 0, invalidReasons: [] };
  try {
    const probed = await probePath(path);
    probe.identity = probed.identity;
    const loop = probed.stack.below.find((link) => link.via === "loop");
    probe.storageKey = loop?.node.key ?? probed.stack.top.key;
  } catch (error) {
    probe.error = (error as Error).message;
    return probe;
  }
  let device;
  try {
    device = await openFileDevice(path, { readOnly: true });
  } catch (error) {
    probe.error = (error as Error).message;
    return probe;
  }
  try {
    const copies = await readCopies(device);
    const valid = copies.filter((copy): copy is ValidCopy => copy.valid);
    probe.validCopies = valid.length;
    probe.invalidReasons = copies.flatMap((copy) => copy.valid ? [] : [copy.reason]);
    probe.winner = valid.sort((a, b) => compareCopies(a.header, b.header))[0];
  } finally {
    await device.close();
  }
  return probe;
}

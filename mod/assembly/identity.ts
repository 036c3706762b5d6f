/**
 * The main disk's identity: what the setup records so that assembly can tell
 * the right disk from another one, checked layer by layer.
 *
 * | layer     | recorded for                 | compared                                    |
 * | --------- | ---------------------------- | ------------------------------------------- |
 * | kind/size | every main disk              | always                                      |
 * | hardware  | disks with a serial or WWN   | serial and WWN, and a partition's place     |
 * | file      | image files                  | device number and inode must be equal       |
 * | number    | block devices without serial | device number, or one of the by-id links    |
 *
 * A disk with a serial or WWN is recognised by it wherever the kernel puts
 * it (`/dev/sdb` today, `/dev/sdc` after a reboot). A file is recognised by
 * its device and inode: a copy of it, or another file of the same size, is
 * another disk. A block device without a serial (a virtual disk, a dm device)
 * has only its device number: that is weak, and `create` says so. The
 * contents are never used: the client keeps writing them.
 *
 * @module
 */

import type { DeviceIdentity } from "../device/probe_device_identity.ts";
import type { MainIdentity } from "../metadata/superblock.ts";

/** What a probe of the main device found, and where. */
export interface ProbedIdentity extends DeviceIdentity {
  path: string;
}

/** How strongly a recorded identity tells one disk from another. */
export type IdentityStrength = "hardware" | "file" | "device-number" | "size-only";

/**
 * SHA-256 (hex) over the stable identity material. The path is left out: it
 * changes between boots (`/dev/sdb` becomes `/dev/sdc`), the serial does not.
 */
export async function fingerprintOf(identity: DeviceIdentity): Promise<string> {
  const material = JSON.stringify([
    identity.kind,
    identity.sizeBytes,
    identity.serial ?? "",
    identity.wwn ?? "",
    identity.model ?? "",
  ]);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(material));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** The identity record stored in the metadata. */
export async function mainIdentityOf(identity: ProbedIdentity): Promise<MainIdentity> {
  return { ...identity, fingerprint: await fingerprintOf(identity) };
}

/** The strongest layer an identity has. */
export function identityStrengthOf(identity: DeviceIdentity): IdentityStrength {
  if (identity.serial || identity.wwn) return "hardware";
  if (identity.kind === "file" && identity.inode !== undefined) return "file";
  if (identity.deviceNumber !== undefined) return "device-number";
  return "size-only";
}

/**
 * The identity in one line, and a warning when it is weak.
 *
 * @returns `description` always; `warning` when nothing hardware-based identifies the disk.
 */
export function describeIdentity(
  identity: ProbedIdentity,
): { description: string; warning?: string } {
  const strength = identityStrengthOf(identity);
  if (strength === "hardware") {
    const parts = [
      identity.serial && `serial "${identity.serial}"`,
      identity.wwn && `WWN "${identity.wwn}"`,
      identity.model && `model "${identity.model}"`,
      ...(identity.byId ?? []).map((link) => `by-id ${link}`),
    ].filter(Boolean);
    return { description: `${parts.join(", ")}, ${identity.sizeBytes} bytes` };
  }
  if (strength === "file") {
    return {
      description: `file on device ${identity.deviceNumber}, inode ${identity.inode}, ` +
        `${identity.sizeBytes} bytes`,
      warning: `the main disk "${identity.path}" is a plain file: it is recognised by its ` +
        `device and inode only, so a copy of it or a restored file is refused until ` +
        `"dm-remap serve --force" accepts it`,
    };
  }
  return {
    description:
      `block device ${identity.deviceNumber}, no serial or WWN, ${identity.sizeBytes} bytes`,
    warning: `the main disk "${identity.path}" has no serial number or WWN: it is recognised by ` +
      `its device number and size only, which another disk can take after a reboot; ` +
      `use a disk with a serial, or its /dev/disk/by-id name, where you can`,
  };
}

/** Why a probed device is not the recorded main disk. */
export interface IdentityMismatch {
  /** What differs, in words. */
  reason: string;
  /**
   * Whether the device could take the main disk's place: same kind and size,
   * another identity (a replaced disk, a restored file), which `--force` accepts.
   */
  replaceable: boolean;
}

/**
 * Why a probed device is not the recorded main disk, or `undefined` when it is.
 * Kind and size always count; then the strongest layer the setup recorded.
 * A layer the setup did not record (a setup from an older version) is not
 * compared: {@link missingLayers} says which, so it can be recorded.
 */
export function identityMismatch(
  recorded: MainIdentity,
  probed: ProbedIdentity,
): IdentityMismatch | undefined {
  const theMain = `the setup's main disk "${recorded.path}"`;
  if (recorded.kind !== probed.kind) {
    return {
      reason: `it is a ${kindName(probed.kind)}; ${theMain} is a ${kindName(recorded.kind)}`,
      replaceable: false,
    };
  }
  if (recorded.sizeBytes !== probed.sizeBytes) {
    return {
      reason: `its size is ${probed.sizeBytes} bytes; ${theMain} has ${recorded.sizeBytes}`,
      replaceable: false,
    };
  }
  const reason = layerMismatch(recorded, probed, theMain);
  return reason === undefined ? undefined : { reason, replaceable: true };
}

/** The strongest recorded layer's difference, for a device of the right kind and size. */
function layerMismatch(
  recorded: MainIdentity,
  probed: ProbedIdentity,
  theMain: string,
): string | undefined {
  switch (identityStrengthOf(recorded)) {
    case "hardware":
      if (recorded.serial !== probed.serial || recorded.wwn !== probed.wwn) {
        return `it has serial "${probed.serial ?? "-"}" and WWN "${probed.wwn ?? "-"}"; ` +
          `${theMain} has serial "${recorded.serial ?? "-"}" and WWN "${recorded.wwn ?? "-"}"`;
      }
      return partitionMismatch(recorded, probed, theMain);
    case "file":
      if (recorded.deviceNumber === probed.deviceNumber && recorded.inode === probed.inode) {
        return undefined;
      }
      return `it is another file (device ${probed.deviceNumber}, inode ${probed.inode}); ` +
        `${theMain} is device ${recorded.deviceNumber}, inode ${recorded.inode}`;
    case "device-number": {
      const sameLink = (recorded.byId ?? []).some((link) => probed.byId?.includes(link));
      if (recorded.deviceNumber === probed.deviceNumber || sameLink) return undefined;
      return `it is device ${probed.deviceNumber}; ${theMain} was device ` +
        `${recorded.deviceNumber} (it has no serial or WWN, so only its device number and ` +
        `size identify it)`;
    }
    case "size-only":
      return undefined;
  }
}

/**
 * Whether the probe found identity layers that the setup has not recorded
 * (a setup made by an older version, which recorded only size and serial).
 */
export function missingLayers(recorded: MainIdentity, probed: ProbedIdentity): boolean {
  return recorded.deviceNumber === undefined && probed.deviceNumber !== undefined;
}

/** Two partitions of one disk share its serial: they differ in number and start. */
function partitionMismatch(
  recorded: MainIdentity,
  probed: ProbedIdentity,
  theMain: string,
): string | undefined {
  if (recorded.partition === undefined) return undefined;
  const where = (partition: ProbedIdentity["partition"]) =>
    partition === undefined
      ? "the whole disk"
      : `partition ${partition.number} (from sector ${partition.startSector})`;
  if (
    recorded.partition.number === probed.partition?.number &&
    recorded.partition.startSector === probed.partition?.startSector
  ) return undefined;
  return `it is ${where(probed.partition)}; ${theMain} is ${where(recorded.partition)} ` +
    `of the same disk`;
}

function kindName(kind: "file" | "block"): string {
  return kind === "file" ? "file" : "block device";
}

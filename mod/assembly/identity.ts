/**
 * The main disk's identity: what the setup records so that assembly can tell
 * the right disk from another one of the same size.
 *
 * @module
 */

import type { DeviceIdentity } from "../device/probe_device_identity.ts";
import type { MainIdentity } from "../metadata/superblock.ts";

/** What a probe of the main device found, and where. */
export interface ProbedIdentity extends DeviceIdentity {
  path: string;
}

/**
 * SHA-256 (hex) over the stable identity material. The path is left out: it
 * changes between boots (`/dev/sdb` becomes `/dev/sdc`), the serial does not.
 */
export async function fingerprintOf(identity: ProbedIdentity): Promise<string> {
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

/**
 * Why a probed device is not the recorded main disk, or `undefined` when it is.
 * Size always counts; serial and WWN count when the setup recorded them.
 */
export async function identityMismatch(
  recorded: MainIdentity,
  probed: ProbedIdentity,
): Promise<string | undefined> {
  if (recorded.sizeBytes !== probed.sizeBytes) {
    return `size is ${probed.sizeBytes} bytes, the setup's main disk has ${recorded.sizeBytes}`;
  }
  if ((recorded.serial || recorded.wwn) && recorded.fingerprint !== await fingerprintOf(probed)) {
    return `serial/WWN ${probed.serial ?? "-"}/${probed.wwn ?? "-"} differ from the recorded ` +
      `${recorded.serial ?? "-"}/${recorded.wwn ?? "-"}`;
  }
  return undefined;
}

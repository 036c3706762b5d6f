/**
 * Group names to numbers, from `/etc/group`, as `getgrnam(3)` reads it on a
 * machine without NSS modules: the API's socket group is named in the
 * configuration and checked against a peer's numeric groups.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/** Where group names are defined. */
export const GROUP_FILE = "/etc/group";

/**
 * The number of a group given by name or number.
 *
 * @param group A name from {@link GROUP_FILE}, or a number, taken as it is.
 * @param path The group file. @default GROUP_FILE
 * @returns The group's number.
 * @throws {UsageError} When no group has that name, or the number is not a valid gid.
 */
export async function groupIdOf(group: string | number, path = GROUP_FILE): Promise<number> {
  if (typeof group === "number") {
    if (!Number.isInteger(group) || group < 0 || group > 0xfffffffe) {
      throw new UsageError(`Cannot use group ${group}: a group number is from 0 to 4294967294`);
    }
    return group;
  }
  const text = await Deno.readTextFile(path);
  for (const line of text.split("\n")) {
    const [name, , gid] = line.split(":");
    if (name === group && gid !== undefined && /^[0-9]+$/.test(gid)) return Number(gid);
  }
  throw new UsageError(
    `Cannot find group "${group}" in ${path}: create it (groupadd ${group}) or name another`,
  );
}

/**
 * Reading sysfs attributes, for the modules of `device/` that identify disks.
 *
 * @module
 */

/** A sysfs attribute, trimmed; undefined when missing or empty. */
export async function readAttribute(path: string): Promise<string | undefined> {
  try {
    const text = (await Deno.readTextFile(path)).trim();
    return text === "" ? undefined : text;
  } catch {
    return undefined;
  }
}

/**
 * Who is using a file or block device, named so that a refusal can say which
 * process to stop: the holder of a lock (`/proc/locks`), the processes that
 * have it open (`/proc/PID/fd`, as fuser does), the device-mapper or md
 * devices stacked on a disk (`holders` in sysfs) and where it is mounted.
 *
 * Everything here only reads procfs and sysfs, synchronously, because it runs
 * while an open is being refused.
 *
 * @module
 */

import { PROCESSES_SEARCHED_MAX } from "../constants.ts";
import { ERRNO, FileDescriptor, OPEN_FLAGS, openPath } from "../sys/libc.ts";
import { deviceNumberOf } from "./storage_stack.ts";

/** A process found using a device. */
export interface DeviceUser {
  pid: number;
  /** Its command line, shortened. */
  command: string;
}

/** The longest command line quoted in a message. */
const COMMAND_CHARS_MAX = 120;

/** Options for the functions of this module. */
export interface DeviceUsersOptions {
  /** Where procfs is mounted. @default "/proc" */
  procRoot?: string;
  /** Where sysfs is mounted. @default "/sys" */
  sysfsRoot?: string;
  /** Processes not to count as users (besides this one), e.g. the device's own server. @default none */
  exceptPids?: readonly number[];
}

/**
 * The processes that hold a `flock` or POSIX lock on a file, from `/proc/locks`.
 *
 * @param info The file's `stat`: its device and inode identify it.
 */
export function lockHoldersOf(
  info: Deno.FileInfo,
  options: DeviceUsersOptions = {},
): DeviceUser[] {
  const procRoot = options.procRoot ?? "/proc";
  const text = readText(`${procRoot}/locks`) ?? "";
  const [major, minor] = deviceNumberOf(info.dev).split(":").map(Number);
  const pids = new Set<number>();
  for (const line of text.split("\n")) {
    // "1: FLOCK  ADVISORY  WRITE 1234 fe:00:2146823 0 EOF"; waiters carry "->" after the id.
    const fields = line.replace("->", "").trim().split(/\s+/);
    const where = /^([0-9a-f]+):([0-9a-f]+):(\d+)$/.exec(fields[5] ?? "");
    const pid = Number(fields[4]);
    if (!where || !(pid > 0) || pid === Deno.pid) continue;
    if (
      parseInt(where[1]!, 16) === major && parseInt(where[2]!, 16) === minor &&
      Number(where[3]) === info.ino
    ) {
      pids.add(pid);
    }
  }
  return [...pids].map((pid) => ({ pid, command: commandOf(pid, procRoot) }));
}

/**
 * The other processes that have a file or block device open, by the identity
 * of what their descriptors point at (device and inode, or the device number).
 */
export function openersOf(info: Deno.FileInfo, options: DeviceUsersOptions = {}): DeviceUser[] {
  const procRoot = options.procRoot ?? "/proc";
  const users: DeviceUser[] = [];
  let searched = 0;
  for (const process of readDirNames(procRoot)) {
    const pid = Number(process);
    if (!Number.isInteger(pid) || pid === Deno.pid || options.exceptPids?.includes(pid)) continue;
    if (++searched > PROCESSES_SEARCHED_MAX) break;
    for (const fd of readDirNames(`${procRoot}/${pid}/fd`)) {
      let target: Deno.FileInfo;
      try {
        target = Deno.statSync(`${procRoot}/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (sameObject(info, target)) {
        users.push({ pid, command: commandOf(pid, procRoot) });
        break;
      }
    }
  }
  return users;
}

/**
 * Why a block device is busy, in words: the devices stacked on it, where it
 * is mounted, and the processes that have it open.
 *
 * @returns A phrase like `it is mounted on "/mnt"`, or `undefined` when nothing was found.
 */
export function busyReasonOf(
  info: Deno.FileInfo,
  options: DeviceUsersOptions = {},
): string | undefined {
  const sysfsRoot = options.sysfsRoot ?? "/sys";
  const procRoot = options.procRoot ?? "/proc";
  if (info.rdev === null) return undefined;
  const number = deviceNumberOf(info.rdev);
  const reasons: string[] = [];
  const holders = readDirNames(`${sysfsRoot}/dev/block/${number}/holders`);
  if (holders.length > 0) {
    reasons.push(`${holders.map((name) => `/dev/${name}`).join(", ")} is stacked on it`);
  }
  const mounts = (readText(`${procRoot}/self/mountinfo`) ?? "").split("\n")
    .map((line) => line.split(" "))
    .filter((fields) => fields[2] === number)
    .map((fields) => `"${fields[4]}"`);
  if (mounts.length > 0) reasons.push(`it is mounted on ${mounts.join(", ")}`);
  const users = openersOf(info, options);
  if (users.length > 0) reasons.push(describeUsers(users, "has it open"));
  return reasons.length > 0 ? reasons.join("; ") : undefined;
}

/**
 * Whether another process holds a device exclusively: an `flock` on a file
 * (`serve` takes one on each file spare), `O_EXCL` on a block device. The
 * check takes the lock for an instant and releases it; it writes nothing.
 */
export function heldByAnotherProcess(path: string): boolean {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    return false;
  }
  const flags = info.isBlockDevice ? OPEN_FLAGS.O_RDONLY | OPEN_FLAGS.O_EXCL : OPEN_FLAGS.O_RDONLY;
  const fd = openPath(path, flags);
  if (fd === -ERRNO.EBUSY) return true;
  if (fd < 0) return false;
  const descriptor = new FileDescriptor(fd);
  try {
    return info.isFile && descriptor.lockExclusive() === -ERRNO.EAGAIN;
  } finally {
    descriptor.close();
  }
}

/**
 * Why a block device node is in use, in words ({@link busyReasonOf}, or a
 * holder that leaves no trace in procfs or sysfs but makes `O_EXCL` fail),
 * or undefined when nothing uses it or the node is gone. This process, and
 * `exceptPids`, do not count.
 */
export function deviceInUseReason(
  path: string,
  options: DeviceUsersOptions = {},
): string | undefined {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    return undefined;
  }
  return busyReasonOf(info, options) ??
    (heldByAnotherProcess(path) ? "it is claimed exclusively by another program" : undefined);
}

/** `process 1234 (cmd …) <doing>`, for one or more processes. */
export function describeUsers(users: readonly DeviceUser[], doing: string): string {
  const list = users.map((user) => `process ${user.pid} (${user.command})`);
  return `${list.join(" and ")} ${doing}`;
}

function sameObject(a: Deno.FileInfo, b: Deno.FileInfo): boolean {
  if (a.isBlockDevice) return b.isBlockDevice === true && a.rdev === b.rdev;
  return b.isFile === a.isFile && a.dev === b.dev && a.ino === b.ino;
}

function commandOf(pid: number, procRoot: string): string {
  const raw = readText(`${procRoot}/${pid}/cmdline`);
  if (raw === undefined) return "command unknown";
  const command = raw.replace(/\0+$/, "").replaceAll("\0", " ");
  return command.length > COMMAND_CHARS_MAX
    ? `${command.slice(0, COMMAND_CHARS_MAX - 1)}…`
    : command;
}

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

function readDirNames(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((entry) => entry.name);
  } catch {
    return [];
  }
}

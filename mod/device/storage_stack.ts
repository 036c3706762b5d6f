/**
 * What a path is, and what it lies on: the identity of a file (device and
 * inode) or block device (device number), and the storage below it, so that
 * two paths are compared by what they are and never by their text.
 *
 * The stack below a device is found in sysfs and procfs, nearest first:
 *
 * | link         | from                      | to                                   |
 * | ------------ | ------------------------- | ------------------------------------ |
 * | `partition`  | a partition               | its whole disk (`partition` in sysfs)|
 * | `stacked`    | a device-mapper or md dev | each device in its `slaves/`         |
 * | `loop`       | a loop device             | its backing file (LOOP_GET_STATUS64) |
 * | `filesystem` | a file                    | the block device holding its fs      |
 *
 * {@link overlapOf} says whether two devices can share sectors: the same
 * file or device under two names, one lying on the other (a partition of a
 * disk, a loop device over a file, a dm or md device over a disk), two loop
 * devices over one file, or a dm/md device over a whole device that holds the
 * other's partition or filesystem. Two partitions of one disk, two files in
 * one filesystem, and two dm devices over one disk (LVM volumes) are not
 * counted: their extents are disjoint by construction.
 *
 * @module
 */

import { STORAGE_STACK_NODES_MAX } from "../constants.ts";
import { DeviceOpenError } from "../errors.ts";
import { loopBackingOf } from "../sys/libc.ts";
import { readAttribute } from "./_sysfs.ts";

/** One file or block device in a stack. */
export interface StorageNode {
  /** `file M:m:INODE` or `block M:m`: equal exactly when the objects are the same. */
  key: string;
  kind: "file" | "block";
  /** `major:minor`: of the filesystem's device for a file, of the device itself for a block device. */
  deviceNumber: string;
  /** A file's inode number. */
  inode?: number;
  /** What to call it in a message: the path given, or `/dev/NAME`. */
  label: string;
}

/** How a node lies on the one below it. */
export type StorageLinkKind = "partition" | "stacked" | "loop" | "filesystem";

/** A node below the top, and the link by which it was first reached. */
export interface StorageLink {
  node: StorageNode;
  via: StorageLinkKind;
  /** The key of the node above it. */
  above: string;
}

/** A device and the storage below it. */
export interface StorageStack {
  top: StorageNode;
  /** Every node below, nearest first, each once. */
  below: StorageLink[];
}

/** Options for {@link storageStackOf}. */
export interface StorageStackOptions {
  /** Where sysfs is mounted; tests point it at a fake tree. @default "/sys" */
  sysfsRoot?: string;
}

/** `major:minor` of a `dev_t` as glibc encodes it (`gnu_dev_major`, `gnu_dev_minor`). */
export function deviceNumberOf(dev: number): string {
  const value = BigInt(dev);
  const major = ((value >> 8n) & 0xfffn) | ((value >> 32n) & ~0xfffn);
  const minor = (value & 0xffn) | ((value >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/**
 * The identity of `path` and everything it lies on.
 *
 * @param path A file or block device; symbolic links are followed.
 * @throws {DeviceOpenError} When the path is missing or neither a file nor a block device.
 */
export async function storageStackOf(
  path: string,
  options: StorageStackOptions = {},
): Promise<StorageStack> {
  const sysfsRoot = options.sysfsRoot ?? "/sys";
  const info = await statDevicePath(path);
  const top = nodeOfInfo(info, path);
  const below: StorageLink[] = [];
  const seen = new Set([top.key]);
  const work = [{ node: top, devicePath: path }];
  for (let next = work.shift(); next !== undefined; next = work.shift()) {
    const links = next.node.kind === "file"
      ? await filesystemBelow(next.node, sysfsRoot)
      : await linksBelow(next.node, next.devicePath, sysfsRoot);
    for (const link of links) {
      if (seen.has(link.node.key) || seen.size >= STORAGE_STACK_NODES_MAX) continue;
      seen.add(link.node.key);
      below.push(link);
      work.push({ node: link.node, devicePath: link.node.label });
    }
  }
  return { top, below };
}

/**
 * The key of what `path` is (see {@link StorageNode.key}), without the stack
 * below it, or undefined when it cannot be examined.
 */
export async function storageKeyOf(path: string): Promise<string | undefined> {
  try {
    return nodeOfInfo(await statDevicePath(path), path).key;
  } catch {
    return undefined;
  }
}

/**
 * Whether two devices can share sectors, as a sentence about them, or
 * `undefined` when they cannot.
 *
 * @param a A device and what to call it, e.g. `spare "/dev/sdc"`.
 * @param b The other.
 */
export function overlapOf(
  a: { name: string; stack: StorageStack },
  b: { name: string; stack: StorageStack },
): string | undefined {
  const top = a.stack.top;
  if (top.key === b.stack.top.key) {
    const what = top.kind === "file"
      ? `the same file (device ${top.deviceNumber}, inode ${top.inode})`
      : `the same block device (device number ${top.deviceNumber})`;
    return `${a.name} and ${b.name} are ${what}`;
  }
  const aOnB = chainTo(a.stack, b.stack.top.key);
  if (aOnB) return `${a.name} ${aOnB.verb} ${b.name}${aOnB.through}`;
  const bOnA = chainTo(b.stack, top.key);
  if (bOnA) return `${b.name} ${bOnA.verb} ${a.name}${bOnA.through}`;
  for (const link of a.stack.below) {
    const other = b.stack.below.find((candidate) => candidate.node.key === link.node.key);
    if (!other) continue;
    if (link.node.kind === "file") {
      return `${a.name} and ${b.name} are both loop devices over the file "${link.node.label}"`;
    }
    if ((link.via === "stacked") !== (other.via === "stacked")) {
      return `${a.name} and ${b.name} both lie on ${link.node.label}, which a device-mapper or md ` +
        `device maps whole, so they may share sectors`;
    }
  }
  return undefined;
}

/** How `stack`'s top lies on the node `key`, as a verb phrase, or undefined when it does not. */
function chainTo(
  stack: StorageStack,
  key: string,
): { verb: string; through: string } | undefined {
  const chain: StorageLink[] = [];
  let current = stack.below.find((link) => link.node.key === key);
  while (current) {
    chain.unshift(current);
    const above = current.above;
    current = stack.below.find((link) => link.node.key === above);
  }
  if (chain.length === 0) return undefined;
  const phrases: Record<StorageLinkKind, string> = {
    partition: "is a partition of",
    stacked: "is a device-mapper or md device stacked on",
    loop: "is a loop device over",
    filesystem: "is a file in the filesystem on",
  };
  if (chain.length === 1) return { verb: phrases[chain[0]!.via], through: "" };
  const through = chain.slice(0, -1).map((link) => link.node.label).join(", then ");
  return { verb: "lies on", through: ` (through ${through})` };
}

function nodeOfInfo(info: Deno.FileInfo, label: string): StorageNode {
  return info.isFile
    ? fileNode(deviceNumberOf(info.dev), info.ino!, label)
    : blockNode(deviceNumberOf(info.rdev!), label);
}

function fileNode(deviceNumber: string, inode: number, label: string): StorageNode {
  return { key: `file ${deviceNumber}:${inode}`, kind: "file", deviceNumber, inode, label };
}

function blockNode(deviceNumber: string, label: string): StorageNode {
  return { key: `block ${deviceNumber}`, kind: "block", deviceNumber, label };
}

/**
 * `stat` of a path that must be a regular file or a block device (links followed).
 *
 * @throws {DeviceOpenError} When it is missing, cannot be examined, or is something else.
 */
export async function statDevicePath(path: string): Promise<Deno.FileInfo> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new DeviceOpenError(path, "no such file or device: check the path", "ENOENT", error);
    }
    throw new DeviceOpenError(
      path,
      `it cannot be examined: ${(error as Error).message}`,
      "EACCES",
      error,
    );
  }
  if (info.isFile || (info.isBlockDevice && info.rdev !== null)) return info;
  throw new DeviceOpenError(
    path,
    "it is neither a regular file nor a block device: give a disk or image path",
    "EINVAL",
  );
}

/** The block device holding a file's filesystem, when sysfs knows it (tmpfs has none). */
async function filesystemBelow(file: StorageNode, sysfsRoot: string): Promise<StorageLink[]> {
  const holder = await namedBlockNode(file.deviceNumber, sysfsRoot);
  return holder ? [{ node: holder, via: "filesystem", above: file.key }] : [];
}

/** A block device number as a node labelled `/dev/NAME`, when sysfs knows it. */
async function namedBlockNode(
  deviceNumber: string,
  sysfsRoot: string,
): Promise<StorageNode | undefined> {
  try {
    const directory = await Deno.realPath(`${sysfsRoot}/dev/block/${deviceNumber}`);
    return blockNode(deviceNumber, `/dev/${basename(directory)}`);
  } catch {
    return undefined;
  }
}

/** The links one hop below a block device: its disk, its slaves, its backing file. */
async function linksBelow(
  node: StorageNode,
  devicePath: string,
  sysfsRoot: string,
): Promise<StorageLink[]> {
  let directory: string;
  try {
    directory = await Deno.realPath(`${sysfsRoot}/dev/block/${node.deviceNumber}`);
  } catch {
    return [];
  }
  const links: StorageLink[] = [];
  const lower: [StorageLinkKind, string][] = [];
  if (await readAttribute(`${directory}/partition`) !== undefined) {
    lower.push(["partition", `${directory}/../dev`]);
  }
  for (const slave of await readDirNames(`${directory}/slaves`)) {
    lower.push(["stacked", `${directory}/slaves/${slave}/dev`]);
  }
  for (const [via, attribute] of lower) {
    const deviceNumber = await readAttribute(attribute);
    const found = deviceNumber && await namedBlockNode(deviceNumber, sysfsRoot);
    if (found) links.push({ node: found, via, above: node.key });
  }
  // A bound loop device has a backing file; an unbound one has no loop/ directory or no file.
  const backingPath = await readAttribute(`${directory}/loop/backing_file`);
  if (backingPath !== undefined) {
    const backing = loopBackingNode(devicePath, backingPath);
    if (backing) links.push({ node: backing, via: "loop", above: node.key });
  }
  return links;
}

/** The file behind a loop device, by LOOP_GET_STATUS64 on its node; its path from sysfs. */
function loopBackingNode(devicePath: string, backingPath: string): StorageNode | undefined {
  const backing = loopBackingOf(devicePath);
  if (typeof backing === "number") return undefined;
  return fileNode(
    deviceNumberOf(backing.device),
    backing.inode,
    backingPath.replace(/ \(deleted\)$/, ""),
  );
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

async function readDirNames(path: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(path)) names.push(entry.name);
  } catch {
    return [];
  }
  return names.sort();
}

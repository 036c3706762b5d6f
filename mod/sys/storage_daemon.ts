/**
 * What a daemon serving the root filesystem does for itself (systemd.io,
 * "Storage Daemons for the Root File System"; mdmon does the same): its own
 * writes may not wait on the memory reclaim that waits on it
 * (`PR_SET_IO_FLUSHER`), the OOM killer never picks it (`oom_score_adj`
 * -1000), and its code is never evicted, since reading it back could need the
 * very filesystem it serves (`mlock` of every mapped file). The '@' in argv[0]
 * that spares it from systemd's killing sprees is set by whoever starts it; it
 * is read here.
 *
 * Not `mlockall(MCL_CURRENT)`: V8 gives back pages of its heap with
 * `madvise(MADV_DONTNEED)`, which fails with EINVAL on locked memory, and then
 * aborts the process ("Fatal error: Check failed: 0 == ret"; seen with
 * Deno 2.9.6 under strace, also with `MCL_ONFAULT`). So only file-backed
 * mappings are locked: the program, its runtime and libraries, which V8 never
 * discards. The anonymous heap stays unlocked; it can only be paged out to
 * swap, and an appliance keeps swap off the remapped device.
 *
 * @module
 */

import { callSync } from "./libc.ts";

const SYMBOLS = {
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  mlock: { parameters: ["usize", "usize"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** linux/prctl.h, since Linux 5.6. */
const PR_SET_IO_FLUSHER = 57;
const PR_GET_IO_FLUSHER = 58;

/** What each step did: "ok" or why it failed. */
export interface StorageDaemonReport {
  ioFlusher: string;
  oomScoreAdj: string;
  /** `mlock` of every file-backed mapping ("ok", or the errno and the file it failed on). */
  mappedFilesLocked: string;
}

/** One file-backed range of this process's address space. */
export interface FileMapping {
  start: bigint;
  end: bigint;
  path: string;
}

/**
 * The file-backed mappings in the text of /proc/PID/maps: those with an inode and a path,
 * but not devices (a ublk queue's command buffer is mapped from /dev and is no page cache).
 */
export function fileMappings(maps: string): FileMapping[] {
  const mappings: FileMapping[] = [];
  for (const line of maps.split("\n")) {
    const match = line.match(/^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ (\d+)\s+(\/.*)$/);
    if (match === null) continue;
    const [, start = "", end = "", inode = "0", path = ""] = match;
    if (inode === "0" || path.startsWith("/dev/")) continue;
    mappings.push({ start: BigInt(`0x${start}`), end: BigInt(`0x${end}`), path });
  }
  return mappings;
}

/** Locks each file-backed mapping of this process into memory; stops at the first refusal. */
function lockMappedFiles(libc: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"]): string {
  for (const mapping of fileMappings(Deno.readTextFileSync("/proc/self/maps"))) {
    const result = callSync(() => libc.mlock(mapping.start, mapping.end - mapping.start));
    if (result < 0) return `errno ${-result} (${mapping.path})`;
  }
  return "ok";
}

/** Whether this process's argv[0] starts with '@' (read from /proc/self/cmdline). */
export function hasRootStorageDaemonName(): boolean {
  try {
    const cmdline = Deno.readFileSync("/proc/self/cmdline");
    return cmdline[0] === "@".charCodeAt(0);
  } catch {
    return false;
  }
}

/**
 * Sets `PR_SET_IO_FLUSHER` and `oom_score_adj` -1000, and locks the mapped
 * files into memory. Each step is tried even if another fails (the first two
 * need CAP_SYS_RESOURCE, the lock CAP_IPC_LOCK or a large RLIMIT_MEMLOCK).
 *
 * @returns What each step did.
 */
export function becomeRootStorageDaemon(): StorageDaemonReport {
  const libc = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  const flusher = callSync(() => libc.prctl(PR_SET_IO_FLUSHER, 1n, 0n, 0n, 0n));
  let oomScoreAdj = "ok";
  try {
    Deno.writeTextFileSync("/proc/self/oom_score_adj", "-1000");
  } catch (error) {
    oomScoreAdj = (error as Error).message;
  }
  return {
    ioFlusher: flusher < 0 ? `errno ${-flusher}` : "ok",
    oomScoreAdj,
    mappedFilesLocked: lockMappedFiles(libc),
  };
}

/** Whether `PR_SET_IO_FLUSHER` is set on this process (`PR_GET_IO_FLUSHER`). */
export function isIoFlusher(): boolean {
  const libc = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  return callSync(() => libc.prctl(PR_GET_IO_FLUSHER, 0n, 0n, 0n, 0n)) === 1;
}

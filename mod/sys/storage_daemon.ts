/**
 * What a daemon serving the root filesystem does for itself (systemd.io,
 * "Storage Daemons for the Root File System"; mdmon does the same): its
 * memory stays resident (`mlockall`), its own writes may not wait on the
 * memory reclaim that waits on it (`PR_SET_IO_FLUSHER`), and the OOM killer
 * never picks it (`oom_score_adj` -1000). The '@' in argv[0] that spares it
 * from systemd's killing sprees is set by whoever starts it; it is read here.
 *
 * @module
 */

import { callSync } from "./libc.ts";

const SYMBOLS = {
  mlockall: { parameters: ["i32"], result: "i32" },
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

const MCL_CURRENT = 1;
const MCL_FUTURE = 2;
/** linux/prctl.h, since Linux 5.6. */
const PR_SET_IO_FLUSHER = 57;
const PR_GET_IO_FLUSHER = 58;

/** What each step did: "ok" or why it failed. */
export interface StorageDaemonReport {
  mlockall: string;
  ioFlusher: string;
  oomScoreAdj: string;
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
 * Locks memory, sets `PR_SET_IO_FLUSHER` and `oom_score_adj` -1000. Each step
 * is tried even if another fails (they need root / CAP_SYS_RESOURCE).
 *
 * @returns What each step did.
 */
export function becomeRootStorageDaemon(): StorageDaemonReport {
  const libc = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  const locked = callSync(() => libc.mlockall(MCL_CURRENT | MCL_FUTURE));
  const flusher = callSync(() => libc.prctl(PR_SET_IO_FLUSHER, 1n, 0n, 0n, 0n));
  let oomScoreAdj = "ok";
  try {
    Deno.writeTextFileSync("/proc/self/oom_score_adj", "-1000");
  } catch (error) {
    oomScoreAdj = (error as Error).message;
  }
  return {
    mlockall: locked < 0 ? `errno ${-locked}` : "ok",
    ioFlusher: flusher < 0 ? `errno ${-flusher}` : "ok",
    oomScoreAdj,
  };
}

/** Whether `PR_SET_IO_FLUSHER` is set on this process (`PR_GET_IO_FLUSHER`). */
export function isIoFlusher(): boolean {
  const libc = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  return callSync(() => libc.prctl(PR_GET_IO_FLUSHER, 0n, 0n, 0n, 0n)) === 1;
}

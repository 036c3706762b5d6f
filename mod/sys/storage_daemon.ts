/**
 * What a daemon serving the root filesystem does for itself (systemd.io,
 * "Storage Daemons for the Root File System"; mdmon does the same): its own
 * writes may not wait on the memory reclaim that waits on it
 * (`PR_SET_IO_FLUSHER`), and the OOM killer never picks it (`oom_score_adj`
 * -1000). The '@' in argv[0] that spares it from systemd's killing sprees is
 * set by whoever starts it; it is read here.
 *
 * Not `mlockall`: Deno's V8 aborts the process ("Fatal error: Check failed:
 * 0 == ret") after `mlockall(MCL_CURRENT)`, with or without `MCL_FUTURE` and
 * `MCL_ONFAULT` (tried with Deno 2.9.6: the runtime frees pages of its heap
 * with calls that fail on locked memory). A server that aborts is worse than
 * one whose pages can be swapped; the guests have no swap.
 *
 * @module
 */

import { callSync } from "./libc.ts";

const SYMBOLS = {
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** linux/prctl.h, since Linux 5.6. */
const PR_SET_IO_FLUSHER = 57;
const PR_GET_IO_FLUSHER = 58;

/** What each step did: "ok" or why it failed. */
export interface StorageDaemonReport {
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
 * Sets `PR_SET_IO_FLUSHER` and `oom_score_adj` -1000. Each step is tried even
 * if the other fails (they need CAP_SYS_RESOURCE).
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
  };
}

/** Whether `PR_SET_IO_FLUSHER` is set on this process (`PR_GET_IO_FLUSHER`). */
export function isIoFlusher(): boolean {
  const libc = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  return callSync(() => libc.prctl(PR_GET_IO_FLUSHER, 0n, 0n, 0n, 0n)) === 1;
}

/**
 * A disk that really fails: a file whose chosen byte ranges answer EIO (or
 * ENOSPC) from the kernel, for tests of the device and remap layers against
 * errors made outside this project.
 *
 * Method: nbdkit's sh plugin serves a sparse backing file over NBD, and
 * nbdfuse mounts that as a FUSE file. For every request the plugin reads the
 * bad-range list from a file, so {@link FailingDisk.setBadRanges} takes effect
 * on the next request, while mounted. A request that touches a bad range fails
 * as a whole, like a disk's failing command. Everything else behaves as a
 * normal writable disk: reads, writes, flush, zero (fallocate), trim (punch).
 *
 * Open the file with direct I/O (`openFileDevice(disk.path, { direct: true })`):
 * through the page cache, a read the kernel cached before a range turned bad
 * would still succeed, and readahead would spread one bad range's errors to
 * its neighbours. FUSE accepts direct I/O at any alignment.
 *
 * Each request forks the plugin script (a few milliseconds), so keep the I/O
 * in tests small. Needs nbdkit, nbdfuse, fusermount3, bash, dd and fallocate
 * (scripts/setup.sh installs them); a missing one fails the test.
 *
 * @example
 * ```ts ignore
 * import { startFailingDisk } from "./failing_disk.ts";
 * await using disk = await startFailingDisk({
 *   sizeBytes: 4 * 1024 * 1024,
 *   badRanges: [{ offsetBytes: 1024 * 1024, lengthBytes: 4096, fail: "read" }],
 * });
 * // open disk.path with { direct: true }; reads of [1 MiB, 1 MiB + 4 KiB) fail with EIO
 * ```
 *
 * @module
 */

import type { ByteRange } from "../../mod/device/device.ts";
import type { FailOn } from "../../mod/fault/fault_model.ts";

export type { FailOn };

/** A byte range that fails reads, writes (including zeroing) or both, and with which error. */
export interface FailingRange extends ByteRange {
  fail: FailOn;
  /** The error the kernel reports. @default "EIO" */
  error?: "EIO" | "ENOSPC";
}

/** A request the disk failed: one FUSE request, which may span several blocks. */
export interface InjectedError extends ByteRange {
  operation: "read" | "write";
}

/** Options for {@link startFailingDisk}. */
export interface FailingDiskOptions {
  /** Size of the disk; a multiple of 512. */
  sizeBytes: number;
  /** Ranges that fail from the start. @default [] */
  badRanges?: readonly FailingRange[];
}

/** A running failing disk. */
export interface FailingDisk extends AsyncDisposable {
  /** The FUSE file to open as a device. */
  readonly path: string;
  /** The sparse file behind it: read or prepare data here without faults. */
  readonly backingPath: string;
  readonly sizeBytes: number;
  /** Replaces the bad ranges; the next request sees the new list. */
  setBadRanges(ranges: readonly FailingRange[]): Promise<void>;
  /** The requests it failed so far, oldest first: proof that a fault was hit, and when. */
  injectedErrors(): Promise<InjectedError[]>;
  /** Unmounts (lazily if something still holds the file), waits for nbdkit, removes the files. */
  stop(): Promise<void>;
}

/** How long nbdfuse may take to mount before the start counts as failed. */
const START_MS_MAX = 10_000;
/** How long nbdfuse may take to exit after the unmount. */
const STOP_MS_MAX = 5_000;
/** The tail of nbdfuse's and nbdkit's stderr kept for error messages. */
const STDERR_BYTES_MAX = 8192;
const POLL_MS = 20;

/**
 * Starts nbdkit behind nbdfuse and returns the failing file.
 *
 * @throws {Error} When a tool is missing or the mount does not appear in time.
 */
export async function startFailingDisk(options: FailingDiskOptions): Promise<FailingDisk> {
  if (
    !Number.isSafeInteger(options.sizeBytes) || options.sizeBytes <= 0 ||
    options.sizeBytes % 512 !== 0
  ) {
    throw new RangeError(
      `Cannot start a failing disk: size ${options.sizeBytes} is not a positive multiple of 512`,
    );
  }
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-failing-disk-" });
  const files = {
    backing: `${directory}/backing.img`,
    ranges: `${directory}/bad_ranges`,
    injections: `${directory}/injected_errors`,
    script: `${directory}/plugin.sh`,
    mount: `${directory}/mnt`,
  };
  await Deno.writeFile(files.backing, new Uint8Array());
  await Deno.truncate(files.backing, options.sizeBytes);
  await writeRanges(files.ranges, options.badRanges ?? []);
  await Deno.writeTextFile(files.injections, "");
  await Deno.writeTextFile(files.script, pluginScript(files, options.sizeBytes), { mode: 0o755 });
  await Deno.mkdir(files.mount);

  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("nbdfuse", {
      args: [
        `${files.mount}/disk`,
        "--command",
        "nbdkit",
        "-s",
        "--exit-with-parent",
        "sh",
        files.script,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    await Deno.remove(directory, { recursive: true });
    throw new Error(
      `Cannot start a failing disk: nbdfuse did not run (run scripts/setup.sh): ${error}`,
      { cause: error },
    );
  }
  const stderr = collectTail(child.stderr);
  const disk = new RunningDisk({ files, child, stderr, sizeBytes: options.sizeBytes, directory });
  try {
    await waitForMount(disk, child);
  } catch (error) {
    await disk.stop();
    const log = await stderr.text();
    throw new Error(`Cannot start a failing disk: ${(error as Error).message}: ${log}`, {
      cause: error,
    });
  }
  return disk;
}

interface RunningDiskState {
  files: { backing: string; ranges: string; injections: string; mount: string };
  child: Deno.ChildProcess;
  stderr: { text(): Promise<string> };
  sizeBytes: number;
  directory: string;
}

class RunningDisk implements FailingDisk {
  readonly path: string;
  readonly backingPath: string;
  readonly sizeBytes: number;
  readonly #state: RunningDiskState;
  #stopping: Promise<void> | undefined;

  constructor(state: RunningDiskState) {
    this.#state = state;
    this.path = `${state.files.mount}/disk`;
    this.backingPath = state.files.backing;
    this.sizeBytes = state.sizeBytes;
  }

  setBadRanges(ranges: readonly FailingRange[]): Promise<void> {
    return writeRanges(this.#state.files.ranges, ranges);
  }

  async injectedErrors(): Promise<InjectedError[]> {
    const lines = (await Deno.readTextFile(this.#state.files.injections)).split("\n");
    return lines.filter((line) => line !== "").map((line) => {
      const [operation, offset, length] = line.split(" ");
      return {
        operation: operation as InjectedError["operation"],
        offsetBytes: Number(offset),
        lengthBytes: Number(length),
      };
    });
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #stop(): Promise<void> {
    const { child, files, directory } = this.#state;
    if (!await run("fusermount3", ["-u", files.mount])) {
      // Something still has the file open, or the mount never appeared: detach it
      // anyway, and stop nbdfuse, which would otherwise serve until the file is closed.
      await run("fusermount3", ["-u", "-z", files.mount]);
      killQuietly(child, "SIGTERM");
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exited = await Promise.race([
      child.status.then(() => true),
      new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), STOP_MS_MAX)),
    ]);
    clearTimeout(timer);
    if (!exited) {
      killQuietly(child, "SIGKILL");
      await child.status;
    }
    await this.#state.stderr.text();
    await Deno.remove(directory, { recursive: true });
  }
}

async function waitForMount(disk: RunningDisk, child: Deno.ChildProcess): Promise<void> {
  let exited = false;
  child.status.then(() => exited = true);
  for (let waitedMs = 0; waitedMs < START_MS_MAX; waitedMs += POLL_MS) {
    if (exited) throw new Error("nbdfuse exited before mounting");
    try {
      const info = await Deno.stat(disk.path);
      if (info.size === disk.sizeBytes) return;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  throw new Error(`the mount did not appear within ${START_MS_MAX} ms`);
}

/** Writes the list atomically (rename), so the plugin never reads half of it. */
async function writeRanges(path: string, ranges: readonly FailingRange[]): Promise<void> {
  const lines = ranges.map((range) => {
    if (!Number.isSafeInteger(range.offsetBytes) || !Number.isSafeInteger(range.lengthBytes)) {
      throw new RangeError(
        `Cannot set a bad range: offset ${range.offsetBytes}, length ${range.lengthBytes}`,
      );
    }
    return `${range.offsetBytes} ${range.lengthBytes} ${range.fail} ${range.error ?? "EIO"}\n`;
  });
  await Deno.writeTextFile(`${path}.new`, lines.join(""));
  await Deno.rename(`${path}.new`, path);
}

/** Signals a child that may have exited already. */
function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
  }
}

/** Runs a command to completion; true when it exits 0. */
async function run(command: string, args: string[]): Promise<boolean> {
  const { success } = await new Deno.Command(command, { args, stdout: "null", stderr: "null" })
    .output();
  return success;
}

/** Reads a stream to its end, keeping the last {@link STDERR_BYTES_MAX} bytes. */
function collectTail(stream: ReadableStream<Uint8Array>): { text(): Promise<string> } {
  const decoder = new TextDecoder();
  let tail = "";
  const done = (async () => {
    for await (const chunk of stream) {
      tail = (tail + decoder.decode(chunk, { stream: true })).slice(-STDERR_BYTES_MAX);
    }
  })();
  return { text: () => done.then(() => tail) };
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * The nbdkit sh plugin. Bad-range lines are `offset length read|write|both ERRNO`;
 * `zero` counts as a write; `trim` never fails (it is advisory).
 */
function pluginScript(
  files: { backing: string; ranges: string; injections: string },
  sizeBytes: number,
): string {
  return `#!/bin/bash
backing=${shellQuote(files.backing)}
ranges=${shellQuote(files.ranges)}
injections=${shellQuote(files.injections)}
# Prints the error to inject for an operation ($1: read|write) on [$2, $2 + $3) and
# records the injection (one short O_APPEND write: whole lines, even from parallel
# requests), or returns 1.
injected() {
  local end=$(( $2 + $3 )) offset length fail error
  while read -r offset length fail error; do
    [[ -n $offset ]] || continue
    if (( $2 < offset + length && offset < end )) && [[ $fail == both || $fail == "$1" ]]; then
      echo "$1 $2 $3" >> "$injections"
      echo "$error"
      return 0
    fi
  done < "$ranges"
  return 1
}
case "$1" in
  get_size) echo ${sizeBytes} ;;
  thread_model) echo parallel ;;
  can_write|can_flush|can_trim|can_zero) exit 0 ;;
  flush) exit 0 ;;
  pread)
    if error=$(injected read "$4" "$3"); then echo "$error injected read error" >&2; exit 1; fi
    exec dd if="$backing" iflag=skip_bytes,count_bytes skip="$4" count="$3" bs=1M status=none ;;
  pwrite)
    if error=$(injected write "$4" "$3"); then cat >/dev/null; echo "$error injected write error" >&2; exit 1; fi
    exec dd of="$backing" oflag=seek_bytes conv=notrunc seek="$4" bs=1M status=none ;;
  zero)
    if error=$(injected write "$4" "$3"); then echo "$error injected write error" >&2; exit 1; fi
    exec fallocate --zero-range --offset "$4" --length "$3" "$backing" ;;
  trim) exec fallocate --punch-hole --offset "$4" --length "$3" "$backing" ;;
  *) exit 2 ;;
esac
`;
}

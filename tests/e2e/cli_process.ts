/**
 * Runs the dm-remap CLI as a separate process, as users and systemd do.
 *
 * @module
 */

const MAIN_TS = new URL("../../main.ts", import.meta.url).pathname;
const DENO = Deno.execPath();
const READY_MS_MAX = 30_000;

/**
 * The CLI's state and run directories (setup registry, events, sockets) for
 * this test process: its own, so tests never touch /var/lib/dm-remap or
 * /run/dm-remap, and test files running in parallel never see each other's
 * setups. Removed when the process ends.
 */
const PROCESS_DIR = Deno.makeTempDirSync({ prefix: "dm-remap-e2e-state-" });
globalThis.addEventListener("unload", () => Deno.removeSync(PROCESS_DIR, { recursive: true }));

/** The environment every CLI run gets: `DM_REMAP_STATE_DIR` and `DM_REMAP_RUN_DIR`. */
export const CLI_ENV: Readonly<Record<string, string>> = {
  DM_REMAP_STATE_DIR: `${PROCESS_DIR}/state`,
  DM_REMAP_RUN_DIR: `${PROCESS_DIR}/run`,
};

/** Where and how to run the CLI. */
export interface CliRunOptions {
  /** The working directory. @default this process's */
  cwd?: string;
  /** Variables added to {@link CLI_ENV}. */
  env?: Record<string, string>;
  /**
   * Kill the command (SIGTERM) when it runs longer: a command that should be
   * refused but serves instead then fails its test instead of hanging it.
   * @default no limit
   */
  timeoutMs?: number;
}

/** The outcome of a finished CLI run. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `dm-remap args...` to completion. */
export async function runCli(args: string[], options: CliRunOptions = {}): Promise<CliRun> {
  const output = await new Deno.Command(DENO, {
    args: ["run", "--allow-all", MAIN_TS, ...args],
    cwd: options.cwd,
    env: { ...CLI_ENV, ...options.env },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    signal: options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs),
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** A `dm-remap serve` running in the background. */
export interface ServeProcess {
  /** The process id. */
  pid: number;
  /** Sends a signal: SIGTERM for a clean stop, SIGKILL for a crash. */
  kill(signal: Deno.Signal): void;
  /** Waits for the exit; returns the code and everything it printed. */
  finished(): Promise<CliRun>;
}

/**
 * Starts `dm-remap serve args...` and resolves once it prints that it is serving.
 * `command` replaces the whole command line (the systemd unit's ExecStart). The scanner's
 * schedule is off (`--no-scan`) unless `scan` is set (then `serve`'s default: on): a pass reads
 * the failing sectors these tests plant and relocates or marks them on its own, which only the
 * scanner's tests expect.
 */
export async function startServe(
  args: string[],
  options: CliRunOptions & { command?: string[]; scan?: boolean } = {},
): Promise<ServeProcess> {
  const scanFlags = options.scan === true ? [] : ["--no-scan"];
  const child = new Deno.Command(DENO, {
    args: options.command ?? ["run", "--allow-all", MAIN_TS, "serve", ...args, ...scanFlags],
    cwd: options.cwd,
    env: { ...CLI_ENV, ...options.env },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  let stdout = "";
  let stderr = "";
  const decoder = new TextDecoder();
  const stderrDone = (async () => {
    for await (const chunk of child.stderr) stderr += decoder.decode(chunk, { stream: true });
  })();
  let markReady = () => {};
  const ready = new Promise<void>((resolve) => markReady = resolve);
  const stdoutDone = (async () => {
    for await (const chunk of child.stdout) {
      stdout += decoder.decode(chunk, { stream: true });
      if (/serving \d+ bytes/.test(stdout)) markReady();
    }
  })();
  const exited = child.status.then(async (status) => {
    await Promise.all([stdoutDone, stderrDone]);
    return { code: status.code, stdout, stderr };
  });
  const timeout = new Promise<never>((_, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`serve did not start in time:\n${stdout}\n${stderr}`)),
      READY_MS_MAX,
    );
    ready.then(() => clearTimeout(timer), () => clearTimeout(timer));
    exited.then(() => clearTimeout(timer));
  });
  const early = exited.then((run) => {
    throw new Error(`serve exited with ${run.code} before serving:\n${run.stdout}\n${run.stderr}`);
  });
  await Promise.race([ready, timeout, early]);
  early.catch(() => {});
  return {
    pid: child.pid,
    kill(signal) {
      try {
        child.kill(signal);
      } catch (error) {
        if (!(error instanceof TypeError)) throw error;
      }
    },
    finished: () => exited,
  };
}

/** A temporary directory with sparse image files, removed by `cleanup`. */
export async function imageDirectory(images: Record<string, number>): Promise<{
  path: string;
  file: (name: string) => string;
  cleanup: () => Promise<void>;
}> {
  const path = await Deno.makeTempDir({ prefix: "dm-remap-e2e-" });
  for (const [name, sizeBytes] of Object.entries(images)) {
    const file = await Deno.open(`${path}/${name}`, { create: true, write: true });
    await file.truncate(sizeBytes);
    file.close();
  }
  return {
    path,
    file: (name) => `${path}/${name}`,
    cleanup: () => Deno.remove(path, { recursive: true }),
  };
}

/**
 * Runs a third-party client (qemu-io, nbdsh, nbdcopy, fio, ...) for a test.
 *
 * Goal: one way for every suite to run external tools, capture their output,
 * and never hang or leak a process. Method: `Deno.Command` with piped output,
 * a kill timer, and errors that carry the whole command line and output.
 * A missing tool is an error, never a skip: `scripts/setup.sh` installs them.
 *
 * Clients run with the distribution's directories first in PATH, so wrappers
 * such as nbdsh (which runs `python3 -m nbd`) find the system python3 that has
 * the libnbd bindings rather than a per-user interpreter.
 *
 * @module
 */

/** Options for {@link runClient}. */
export interface RunClientOptions {
  /** The process is killed after this long. @default 30000 */
  timeoutMs?: number;
  /** Bytes or text fed to standard input, which is then closed. @default no input */
  stdin?: Uint8Array | string;
  /** Extra environment variables. @default none */
  env?: Record<string, string>;
  /** Working directory. @default the test's */
  cwd?: string;
}

/** What a client run produced. */
export interface ClientResult {
  /** The command line, for messages. */
  commandLine: string;
  /** Exit code; -1 when killed by a signal. */
  code: number;
  /** The signal that ended it, if any. */
  signal: Deno.Signal | null;
  /** Whether the timeout killed it. */
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/** PATH prefix so clients find the distribution's tools and interpreters first. */
export const SYSTEM_PATH_PREFIX = "/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * Runs `command args...` to completion (or the timeout) and captures its output.
 *
 * @param command Program name, looked up in PATH.
 * @param args Its arguments.
 * @param options Timeout, stdin, environment.
 * @returns Exit status and output; a failing exit is not an error here (see {@link assertClientOk}).
 * @throws {Error} When the program is not installed.
 *
 * @example
 * ```ts ignore
 * const result = await runClient("qemu-img", ["info", "--output=json", uri]);
 * assertClientOk(result);
 * ```
 */
export async function runClient(
  command: string,
  args: string[],
  options: RunClientOptions = {},
): Promise<ClientResult> {
  const commandLine = [command, ...args].map(quote).join(" ");
  const path = `${SYSTEM_PATH_PREFIX}:${Deno.env.get("PATH") ?? ""}`;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args,
      cwd: options.cwd,
      env: { ...options.env, PATH: path },
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`Cannot run "${command}": it is not installed; run scripts/setup.sh`, {
        cause: error,
      });
    }
    throw error;
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited between the timer firing and the kill.
    }
  }, options.timeoutMs ?? 30_000);
  try {
    if (options.stdin !== undefined) {
      const writer = child.stdin.getWriter();
      const input = typeof options.stdin === "string"
        ? new TextEncoder().encode(options.stdin)
        : options.stdin;
      // A client that exits without reading its input must not fail the run here.
      await writer.write(input).catch(() => {});
      await writer.close().catch(() => {});
    }
    const output = await child.output();
    const decoder = new TextDecoder();
    return {
      commandLine,
      code: output.signal === null ? output.code : -1,
      signal: output.signal,
      timedOut,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Throws with the full command line and output unless the client exited 0.
 *
 * @param result From {@link runClient}.
 * @throws {Error} When the client failed or timed out.
 */
export function assertClientOk(result: ClientResult): void {
  if (result.code === 0 && !result.timedOut) return;
  throw new Error(
    describeRun(result, result.timedOut ? "timed out" : `exited with ${result.code}`),
  );
}

/** A multi-line description of a run, for assertion messages. */
export function describeRun(result: ClientResult, what: string): string {
  return `${result.commandLine} ${what}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

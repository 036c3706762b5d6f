/**
 * The `dm-remap` command line: parses arguments, runs one command, and turns
 * its outcome into an exit code. The only layer that prints or exits.
 *
 * @example
 * ```ts ignore
 * import { runCli } from "./mod.ts";
 * Deno.exit(await runCli(["status", "--json"]));
 * ```
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../errors.ts";
import { VERSION } from "../version.ts";
import { STATE_DIR } from "./options.ts";
import { KERNEL_EXPORT_CHOICES } from "../assembly/kernel_export_choice.ts";
import { EXPORT_AS_CONFIGURED } from "./service_settings.ts";
import { EXIT_USAGE, exitCodeFor } from "./exit_codes.ts";
import { alertCommand } from "./commands/alert.ts";
import { assembleCommand } from "./commands/assemble.ts";
import { checkCommand } from "./commands/check.ts";
import { configCommand } from "./commands/config.ts";
import { createCommand } from "./commands/create.ts";
import { demoCommand } from "./commands/demo.ts";
import { discoverCommand } from "./commands/discover.ts";
import { eventsCommand } from "./commands/events.ts";
import { probeCommand } from "./commands/probe.ts";
import { remapsCommand } from "./commands/remaps.ts";
import { restoreCommand } from "./commands/restore.ts";
import { serveCommand } from "./commands/serve.ts";
import { statusCommand } from "./commands/status.ts";
import { healthCommand } from "./commands/health.ts";
import { scanCommand } from "./commands/scan.ts";
import { spareCommand } from "./commands/spare.ts";
import { stopCommand } from "./commands/stop.ts";
import type { CliOutput, CommandInput } from "./command.ts";

interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig["options"]>;
  /**
   * Flags whose value may be left out (`--attach` means `--attach auto`):
   * the value used then, and which following words are the flag's own.
   */
  optionalValues?: Record<string, { implied: string; isValue: (word: string) => boolean }>;
  run: (input: CommandInput) => Promise<number>;
}

/** Options several commands take, spelled once. */
const SPARE_OPTION = { spare: { type: "string", multiple: true } } as const;
const FORCE_OPTION = { force: { type: "boolean" } } as const;
const JSON_OPTION = { json: { type: "boolean" } } as const;
const SCAN_DIR_OPTION = { "scan-dir": { type: "string", multiple: true } } as const;
const BACKUP_DIR_OPTION = { "backup-dir": { type: "string" } } as const;
/** The configuration file (default /etc/dm-remap/dm-remap.yaml, or DM_REMAP_CONFIG). */
const CONFIG_OPTION = { config: { type: "string" } } as const;

/** `check --salvage` (`commands/salvage.ts`): rebuilding copies from the spares' logs alone. */
const SALVAGE_OPTIONS: NonNullable<ParseArgsConfig["options"]> = {
  salvage: { type: "boolean" },
  yes: { type: "boolean" },
  main: { type: "string" },
  name: { type: "string" },
  "block-size": { type: "string" },
  ...SCAN_DIR_OPTION,
  ...BACKUP_DIR_OPTION,
};

const COMMANDS: Record<string, Command> = {
  create: {
    summary: "create a setup: a main disk and 1-8 spares",
    usage:
      "create <name> --main <dev> --spare <dev> [--spare <dev>...] [--block-size N] [--force] " +
      "[--backup-dir <dir>]",
    options: {
      main: { type: "string" },
      ...SPARE_OPTION,
      "block-size": { type: "string" },
      ...FORCE_OPTION,
      ...JSON_OPTION,
      ...BACKUP_DIR_OPTION,
    },
    run: createCommand,
  },
  serve: {
    summary: "assemble a setup and serve it over NBD, with the status API",
    usage:
      "serve (<name> | --spare <dev>...) [--main <dev>] [--socket <path>] [--tcp [host:]port] " +
      "[--api-socket <path>] [--api-tcp [host:]port] [--export-name <name>] [--read-retries N] [--scan-dir <dir>...] " +
      "[--allocation fill-first|round-robin|most-free|health-weighted] " +
      "[--buffered] [--events-db <path>] [--backup-dir <dir>] [--force] [--config <file>]\n" +
      "       [--attach [auto|/dev/nbdN]] [--connections N] [--io-timeout S] [--dead-timeout S]\n" +
      "       [--smart-interval S | --no-smart] [--scrub-interval S] [--ublk] [--queues N] [--depth N] [--no-recovery]\n" +
      "       [--export [auto|ublk|nbd]]\n" +
      "       [--scan | --no-scan] [--scan-interval 24h] [--scan-rate-max 200M] [--region-size 1G]\n" +
      "       [--adopt]",
    options: {
      ...FORCE_OPTION,
      ...CONFIG_OPTION,
      main: { type: "string" },
      ...SPARE_OPTION,
      socket: { type: "string" },
      tcp: { type: "string" },
      "api-socket": { type: "string" },
      "api-tcp": { type: "string" },
      "export-name": { type: "string" },
      "read-retries": { type: "string" },
      allocation: { type: "string" },
      ...SCAN_DIR_OPTION,
      buffered: { type: "boolean" },
      "events-db": { type: "string" },
      ...BACKUP_DIR_OPTION,
      attach: { type: "string" },
      connections: { type: "string" },
      "io-timeout": { type: "string" },
      "dead-timeout": { type: "string" },
      "smart-interval": { type: "string" },
      "no-smart": { type: "boolean" },
      "scrub-interval": { type: "string" },
      ublk: { type: "boolean" },
      queues: { type: "string" },
      depth: { type: "string" },
      "no-recovery": { type: "boolean" },
      export: { type: "string" },
      adopt: { type: "boolean" },
      "scan-interval": { type: "string" },
      "scan-rate-max": { type: "string" },
      "region-size": { type: "string" },
      "no-scan": { type: "boolean" },
      scan: { type: "boolean" },
    },
    optionalValues: {
      attach: { implied: "auto", isValue: (word) => word === "auto" || word.startsWith("/dev/") },
      export: {
        implied: EXPORT_AS_CONFIGURED,
        isValue: (word) => (KERNEL_EXPORT_CHOICES as readonly string[]).includes(word),
      },
    },
    run: serveCommand,
  },
  probe: {
    summary: "show what one device is to dm-remap, read only (--export: udev properties)",
    usage: "probe [--export] <dev>",
    options: { export: { type: "boolean" } },
    run: probeCommand,
  },
  status: {
    summary: "show a running setup's state (from its status API)",
    usage: "status [<name>] [--api-socket <path> | --api-url <url>] [--json]",
    options: {
      "api-socket": { type: "string" },
      "api-url": { type: "string" },
      ...JSON_OPTION,
    },
    run: statusCommand,
  },
  scan: {
    summary: "start, stop or show the background scan of a running setup",
    usage: "scan <name> start|stop|status [--api-socket <path> | --api-url <url>] [--json]",
    options: { "api-socket": { type: "string" }, "api-url": { type: "string" }, ...JSON_OPTION },
    run: scanCommand,
  },
  spare: {
    summary: "add, remove or replace a spare of a running setup (blocks migrate, resumable)",
    usage: "spare add <name> <dev> [--force] | spare remove <name> <dev> | " +
      "spare replace <name> <old> <new> [--force]\n" +
      "       [--api-socket <path> | --api-url <url>] [--json]",
    options: {
      "api-socket": { type: "string" },
      "api-url": { type: "string" },
      ...FORCE_OPTION,
      ...JSON_OPTION,
    },
    run: spareCommand,
  },
  health: {
    summary: "show a running setup's health: score, worst regions first, with their inputs",
    usage: "health <name> [--api-socket <path> | --api-url <url>] [--json]",
    options: { "api-socket": { type: "string" }, "api-url": { type: "string" }, ...JSON_OPTION },
    run: healthCommand,
  },
  stop: {
    summary: "stop a running setup's serve and detach its kernel device (refused while in use)",
    usage: "stop <name|uuid> [--force] [--timeout SECONDS] [--json]",
    options: { ...FORCE_OPTION, timeout: { type: "string" }, ...JSON_OPTION },
    run: stopCommand,
  },
  check: {
    summary: "check a spare's metadata copies and remap log, like fsck -n",
    usage: "check <spare> [--json] [--repair]\n" +
      "       dm-remap check --salvage <spare>... [--repair --main <dev> --name <name> [--yes]] " +
      "[--block-size N] [--scan-dir <dir>...] [--backup-dir <dir>] [--json]",
    options: { ...JSON_OPTION, repair: { type: "boolean" }, ...SALVAGE_OPTIONS },
    run: checkCommand,
  },
  restore: {
    summary: "rebuild lost metadata copies from a backup and the spares' own remap logs",
    usage:
      "restore <name|uuid> [--from <file>] --spare <dev>... [--yes] [--force] [--backup-dir <dir>]",
    options: {
      from: { type: "string" },
      ...SPARE_OPTION,
      yes: { type: "boolean" },
      ...FORCE_OPTION,
      ...BACKUP_DIR_OPTION,
    },
    run: restoreCommand,
  },
  remaps: {
    summary: "list a setup's remapped blocks, read from its spares",
    usage: "remaps (<name> | --spare <dev>...) [--json] [--scan-dir <dir>...]",
    options: {
      ...SPARE_OPTION,
      ...JSON_OPTION,
      ...SCAN_DIR_OPTION,
    },
    run: remapsCommand,
  },
  events: {
    summary: "list the event history of one setup or of all, oldest first",
    usage: "events [<name>] [--since <ISO time | duration like 2h>] [--db <path>] [--json]",
    options: { since: { type: "string" }, db: { type: "string" }, ...JSON_OPTION },
    run: eventsCommand,
  },
  discover: {
    summary: "find setups from the disks alone: state, confidence, conflicts (read only)",
    usage: "discover [--json] [--scan-dir <dir>...] [--timeout-ms N] [<dev>...]",
    options: { ...JSON_OPTION, ...SCAN_DIR_OPTION, "timeout-ms": { type: "string" } },
    run: discoverCommand,
  },
  assemble: {
    summary: "start the complete setups found on the disks (--scan, names, or --incremental)",
    usage: "assemble (--scan | <name|uuid>... | --incremental <dev>) [--dry-run] [--json] " +
      "[--threshold N] [--scan-dir <dir>...] [--timeout-ms N] [--export auto|ublk|nbd] " +
      "[--config <file>]",
    options: {
      scan: { type: "boolean" },
      export: { type: "string" },
      ...CONFIG_OPTION,
      incremental: { type: "string" },
      "dry-run": { type: "boolean" },
      threshold: { type: "string" },
      "timeout-ms": { type: "string" },
      ...JSON_OPTION,
      ...SCAN_DIR_OPTION,
    },
    run: assembleCommand,
  },
  config: {
    summary: "check the configuration file, or show a setup's effective settings and their sources",
    usage: "config check [<file>] [--config <file>]\n" +
      "       dm-remap config show [<name>] [--json] [--config <file>]",
    options: { ...CONFIG_OPTION, ...JSON_OPTION },
    run: configCommand,
  },
  alert: {
    summary: "send a test alert through a configured alert target",
    usage: "alert test <target> [--config <file>] [--setup <name>]",
    options: { ...CONFIG_OPTION, setup: { type: "string" } },
    run: alertCommand,
  },
  demo: {
    summary: "create image files with a few failing sectors, then serve them (the embedded demo)",
    usage:
      "demo [--state-dir <dir>] [--socket <path>] [--tcp [host:]port] [--api-tcp [host:]port] [--once]",
    options: {
      "state-dir": { type: "string" },
      socket: { type: "string" },
      tcp: { type: "string" },
      "api-tcp": { type: "string" },
      once: { type: "boolean" },
    },
    run: demoCommand,
  },
};

function help(): string {
  const lines = ["Usage: dm-remap <command> [options]", "", "Commands:"];
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  for (const [name, command] of Object.entries(COMMANDS)) {
    lines.push(`  ${name.padEnd(width)}  ${command.summary}`);
  }
  lines.push(
    "",
    "Run `dm-remap <command> --help` for a command's options, `dm-remap --version` for the version.",
    `Setups are found by name where create registered them (${STATE_DIR}/setups), then on the`,
    `block devices in /sys/class/block and in the *.img files of --scan-dir (default ${STATE_DIR}).`,
  );
  return lines.join("\n");
}

/**
 * Runs one command line.
 *
 * @returns The process exit code (see `exit_codes.ts`).
 */
export async function runCli(args: string[], output: CliOutput = defaultOutput()): Promise<number> {
  const [name, ...rest] = args;
  if (name === "--version" || name === "version") {
    output.out(`dm-remap ${VERSION}`);
    return 0;
  }
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    output.out(help());
    return name === undefined ? EXIT_USAGE : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    output.err(`dm-remap: unknown command "${name}"\n\n${help()}`);
    return EXIT_USAGE;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    output.out(`Usage: dm-remap ${command.usage}\n\n${command.summary}`);
    return 0;
  }
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args: withImpliedValues(rest, command.optionalValues ?? {}),
        options: command.options,
        allowPositionals: true,
        strict: true,
      });
    } catch (error) {
      throw new UsageError(`${(error as Error).message}\nUsage: dm-remap ${command.usage}`);
    }
    return await command.run({ values: parsed.values, positionals: parsed.positionals, output });
  } catch (error) {
    const code = exitCodeFor(error);
    output.err(`dm-remap ${name}: ${error instanceof Error ? error.message : String(error)}`);
    if (code === 70) output.err((error as Error).stack ?? "");
    return code;
  }
}

/** Inserts the implied value after a flag given without one (see {@link Command.optionalValues}). */
function withImpliedValues(
  args: readonly string[],
  optional: NonNullable<Command["optionalValues"]>,
): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    out.push(args[i]!);
    const flag = optional[args[i]!.replace(/^--/, "")];
    if (args[i]!.startsWith("--") && flag !== undefined) {
      const next = args[i + 1];
      if (next === undefined || !flag.isValue(next)) out.push(flag.implied);
    }
  }
  return out;
}

function defaultOutput(): CliOutput {
  return { out: (line) => console.log(line), err: (line) => console.error(line) };
}

/**
 * `dm-remap serve (<name> | --spare <dev>...)`: assemble from the disks and
 * serve until SIGTERM/SIGINT; SIGHUP and `POST /api/v1/reload` read the
 * configuration file again, one reload at a time.
 *
 * The command finds the spares by name and merges flags, the configuration
 * file and defaults (`service_settings.ts`); `--export` becomes `--ublk` or
 * `--attach auto` as `assemble` would choose (`serve_kernel_export.ts`, once
 * the setup's UUID is known); the service opens the disks
 * (nothing is written before every check has passed, see
 * `service/open_setup.ts`) and serves them.
 *
 * @module
 */

import type { ReloadOutcome } from "../../api/control.ts";
import { closeAll } from "../../assembly/open_path.ts";
import { attachedNbdDevices } from "../../device/block_devices.ts";
import { UnavailableError } from "../../errors.ts";
import { StructuredLog } from "../../log/structured_log.ts";
import { openSetupForServing } from "../../service/open_setup.ts";
import {
  adoptServer,
  runningServerOf,
  ServiceManagerNotifier,
} from "../../service/service_manager.ts";
import { SetupService } from "../../service/setup_service.ts";
import { becomeRootStorageDaemon, hasRootStorageDaemonName } from "../../sys/storage_daemon.ts";
import { loadUblkModule, ublkSupportOf } from "../../sys/ublk_support.ts";
import type { CliOutput, CommandInput, OptionValue } from "../command.ts";
import { type ConfigLocation, configLocation, readConfig } from "../config_source.ts";
import { resolveSparePaths } from "../find_setup.ts";
import { listOption, onePositional, RUN_DIR, stringOption } from "../options.ts";
import { onReloadSignal } from "../reload_signal.ts";
import { resolveServeExport } from "../serve_kernel_export.ts";
import {
  type EffectiveSetting,
  parseServeFlags,
  type ServeConfiguration,
  serveConfiguration,
  type SetupKeys,
} from "../service_settings.ts";
import { untilSignal } from "../stop_signal.ts";

/** Serves a setup in the foreground; systemd runs it as a `Type=notify` service. */
export async function serveCommand({ values, positionals, output }: CommandInput): Promise<number> {
  const name = onePositional(positionals, "setup name", false);
  const running = values.adopt === true && name !== undefined
    ? await runningServerOf(RUN_DIR, name)
    : undefined;
  if (running !== undefined) {
    // Started in the initramfs (root on it): that process keeps serving, the unit takes it over.
    const outcome = adoptServer(running);
    output.out(
      `dm-remap[${name}]: already served by process ${running.process.pid}` +
        `${running.kernelDevice ? ` on ${running.kernelDevice}` : ""}; ` +
        (outcome === "sent"
          ? "handed to the service manager"
          : `not handed over (${JSON.stringify(outcome)})`),
    );
    return 0;
  }
  const rootDaemon = hasRootStorageDaemonName();
  if (rootDaemon) {
    const report = becomeRootStorageDaemon();
    output.err(
      `dm-remap[${name ?? "?"}]: root storage daemon (argv[0] '@'): ${JSON.stringify(report)}`,
    );
  }
  // Flags are checked before the file is read, so a usage error names the flag.
  parseServeFlags(values);
  const location = configLocation(stringOption(values.config));
  const config = await readConfig(location);
  const early = serveConfiguration(values, { name }, config);
  const resolved = await resolveSparePaths(name, listOption(values.spare), early.scanDirs);
  // Listen before anything starts, so a stop request during startup is not lost,
  // and a SIGHUP (whose default action ends the process) never interrupts a start or a stop.
  const stopRequested = untilSignal();
  let reload: (() => Promise<ReloadOutcome>) | undefined;
  // SIGHUP and the API take turns: one reload at a time, in the order asked.
  let reloads: Promise<unknown> = Promise.resolve();
  const reloadInTurn = (): Promise<ReloadOutcome> => {
    const outcome = reloads.then(() => {
      if (reload === undefined) {
        throw new UnavailableError(
          "Cannot reload the configuration now: serve is starting or stopping; try again",
        );
      }
      return reload();
    });
    reloads = outcome.catch(() => {});
    return outcome;
  };
  const stopReloading = onReloadSignal(() => reloadInTurn().then(() => {}, () => {}));
  // Until the service exists, the command's own lines go through a logger of the same form.
  const startLog = new StructuredLog({
    write: (line) => output.err(line),
    level: early.logLevel,
    fields: { setup: name },
  });
  const log = (line: string) => startLog.log({ level: "info", message: line });
  const { setupName, ...disks } = await openSetupForServing({
    name,
    sparePaths: resolved.sparePaths,
    mainPath: stringOption(values.main),
    force: values.force === true,
    direct: !early.buffered,
  }, log);
  const keys: SetupKeys = { name: setupName, uuid: disks.spares.description.setup.uuid };
  // `--export`: the kernel device assemble would choose (the systemd unit's flag).
  const { values: flags, decision } = await resolveServeExport(values, {
    keys,
    config: config?.values,
    support: ublkSupportOf(),
    loadModule: loadUblkModule,
    attachedNbd: values.export === undefined
      ? undefined
      : (await attachedNbdDevices()).get(keys.uuid!),
  });
  if (decision !== undefined) log(`kernel device: ${decision.kind}, ${decision.reason}`);
  const configuration = serveConfiguration(flags, keys, config);
  const askedByApi = Promise.withResolvers<{ detach: boolean }>();
  const serving = new SetupService(disks, {
    settings: configuration.settings,
    log: (line) => output.err(line),
    logLevel: configuration.logLevel,
    onStopRequested: askedByApi.resolve,
    onReloadRequested: reloadInTurn,
  });
  try {
    await serving.start();
  } catch (error) {
    stopReloading();
    await closeAll([disks.main.device, ...disks.spares.stores.map((store) => store.device)]);
    throw error;
  }
  printAddresses(output, setupName, serving);
  reload = reloader({ values: flags, keys, location, serving, running: configuration });
  const notifier = new ServiceManagerNotifier(serving);
  notifier.ready();
  const asked = await Promise.race([stopRequested, askedByApi.promise]);
  reload = undefined;
  notifier.stopping();
  const fromApi = typeof asked === "object";
  const detach = fromApi ? asked.detach : await serving.stopRequest() === "detach";
  const meaning = fromApi
    ? `stop asked through the API, ${
      detach ? "the kernel device goes too" : "a kernel device stays"
    }`
    : detach
    ? "stop asked by dm-remap stop, the kernel device goes too"
    : "a restart, a kernel device stays attached for the next server while it is in use";
  const cause = fromApi ? "POST /api/v1/stop" : asked;
  serving.log.log({
    level: "notice",
    message: `${cause} (${meaning}): finishing in-flight requests, flushing, writing metadata`,
    fields: { event: "stopping", signal: fromApi ? "api" : asked },
  });
  // A root storage daemon is stopped last, by the shutdown hook, with root still mounted read-only
  // (and mounted in another root than its own, where its in-use check cannot see it): it keeps
  // the device attached.
  await serving.stop({ kernelDevice: detach ? "detach" : rootDaemon ? "keep" : "auto" });
  stopReloading();
  serving.log.log({ level: "notice", message: "stopped cleanly", fields: { event: "exit" } });
  return 0;
}

function printAddresses(output: CliOutput, setupName: string, serving: SetupService): void {
  output.out(
    `dm-remap[${setupName}]: serving ${serving.engine.sizeBytes} bytes, ${serving.engine.remapCount} remaps`,
  );
  for (const address of serving.nbdAddresses) output.out(`  NBD  ${address}`);
  for (const address of serving.apiAddresses) output.out(`  API  ${address}`);
  if (serving.kernelDevice) output.out(`  KERNEL  ${serving.kernelDevice}`);
}

/** What a reload needs: the flags (they still win), the file, and what runs now. */
interface ReloadContext {
  values: Record<string, OptionValue>;
  keys: SetupKeys;
  location: ConfigLocation;
  serving: SetupService;
  running: ServeConfiguration;
}

/**
 * The reload of SIGHUP and `POST /api/v1/reload`: reads the file again,
 * applies what can change live, and says which changed keys need a restart.
 * An invalid file changes nothing.
 */
function reloader(context: ReloadContext): () => Promise<ReloadOutcome> {
  let running = context.running.effective;
  const file = context.location.path;
  return async () => {
    const log = context.serving.log;
    let next: ServeConfiguration;
    try {
      next = serveConfiguration(context.values, context.keys, await readConfig(context.location));
    } catch (error) {
      const problems = (error as Error).message;
      log.log({
        level: "err",
        message: `configuration not reloaded, the running one stays: ${problems}`,
        fields: { event: "config-rejected", file },
      });
      return { file, reloaded: false, applied: [], needsRestart: [], problems };
    }
    const changed = changedKeys(running, next.effective);
    const applied = changed.filter((setting) => setting.live).map((setting) => setting.key);
    const needsRestart = changed.filter((setting) => !setting.live).map((setting) => setting.key);
    await context.serving.reconfigure({
      readRetries: next.settings.readRetries,
      alerts: next.settings.alerts,
      policies: next.settings.policies,
      logLevel: next.logLevel,
      allocation: next.settings.allocation,
    }, { applied, needsRestart });
    // What runs now: the new live values, and the old values of what waits for a restart.
    const restartKeys = new Set(needsRestart);
    running = next.effective
      .filter((setting) => !restartKeys.has(setting.key))
      .concat(running.filter((setting) => restartKeys.has(setting.key)));
    return { file, reloaded: true, applied, needsRestart };
  };
}

/** The settings of `next` whose value differs from `running`'s, and those that disappeared. */
function changedKeys(
  running: readonly EffectiveSetting[],
  next: readonly EffectiveSetting[],
): EffectiveSetting[] {
  const before = new Map(running.map((setting) => [setting.key, JSON.stringify(setting.value)]));
  const changed = next.filter((setting) =>
    before.get(setting.key) !== JSON.stringify(setting.value)
  );
  const nextKeys = new Set(next.map((setting) => setting.key));
  const removed = running.filter((setting) => !nextKeys.has(setting.key));
  return [...changed, ...removed];
}

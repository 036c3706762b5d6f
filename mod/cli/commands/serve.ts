/**
 * `dm-remap serve (<name> | --spare <dev>...)`: assemble from the disks and
 * serve until SIGTERM/SIGINT.
 *
 * The command finds the spares by name and parses the flags; the service
 * opens the disks (nothing is written before every check has passed, see
 * `service/open_setup.ts`) and serves them.
 *
 * @module
 */

import { closeAll } from "../../assembly/open_path.ts";
import { openSetupForServing } from "../../service/open_setup.ts";
import {
  adoptServer,
  runningServerOf,
  ServiceManagerNotifier,
} from "../../service/service_manager.ts";
import { SetupService } from "../../service/setup_service.ts";
import { becomeRootStorageDaemon, hasRootStorageDaemonName } from "../../sys/storage_daemon.ts";
import type { CommandInput } from "../command.ts";
import { resolveSparePaths } from "../find_setup.ts";
import { listOption, onePositional, RUN_DIR, stringOption } from "../options.ts";
import { parseServeFlags, serveSettings } from "../service_settings.ts";
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
  const resolved = await resolveSparePaths(
    name,
    listOption(values.spare),
    listOption(values["scan-dir"]),
  );
  const flags = parseServeFlags(values);
  // Listen before anything starts, so a stop request during startup is not lost.
  const stopRequested = untilSignal();
  const log = (line: string) => output.err(line);
  const { setupName, ...disks } = await openSetupForServing({
    name,
    sparePaths: resolved.sparePaths,
    mainPath: stringOption(values.main),
    force: values.force === true,
    direct: values.buffered !== true,
  }, log);
  const serving = new SetupService(disks, { settings: serveSettings(flags, setupName), log });
  try {
    await serving.start();
  } catch (error) {
    await closeAll([disks.main.device, ...disks.spares.stores.map((store) => store.device)]);
    throw error;
  }
  output.out(
    `dm-remap[${setupName}]: serving ${serving.engine.sizeBytes} bytes, ${serving.engine.remapCount} remaps`,
  );
  for (const address of serving.nbdAddresses) output.out(`  NBD  ${address}`);
  for (const address of serving.apiAddresses) output.out(`  API  ${address}`);
  if (serving.kernelDevice) output.out(`  KERNEL  ${serving.kernelDevice}`);
  const notifier = new ServiceManagerNotifier(serving);
  notifier.ready();
  const signal = await stopRequested;
  notifier.stopping();
  const detach = await serving.stopRequest() === "detach";
  const meaning = detach
    ? "stop asked by dm-remap stop, the kernel device goes too"
    : "a restart, a kernel device stays attached for the next server while it is in use";
  output.err(
    `dm-remap[${setupName}]: ${signal} (${meaning}): finishing in-flight requests, flushing, ` +
      `writing metadata`,
  );
  // A root storage daemon is stopped last, by the shutdown hook, with root still mounted read-only
  // (and mounted in another root than its own, where its in-use check cannot see it): it keeps
  // the device attached.
  await serving.stop({ kernelDevice: detach ? "detach" : rootDaemon ? "keep" : "auto" });
  output.err(`dm-remap[${setupName}]: stopped cleanly`);
  return 0;
}

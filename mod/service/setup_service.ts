/**
 * One running setup: the engine assembled from its disks, the exports that
 * feed it, the status API, the event history, the metadata backups and the
 * clean-stop marker, with one lifecycle.
 *
 * Start takes things in order (history, engine, metadata scrub (its first
 * pass runs here, on open), NBD export, SMART reader, scanner, status API,
 * serving marker, runtime state); a start that fails half-way releases what it took, and
 * leaves the disks as they were: until the marker, the engine has written
 * nothing, and closing it writes nothing either. Stop is ordered so nothing
 * is lost: the exports stop accepting and drain, the engine flushes every
 * device, writes its metadata (removing the marker) and closes, then the
 * readers of the engine (the API) stop, the history records the stop, and
 * the runtime state file goes last.
 *
 * @module
 */

import { dirname } from "node:path";
import type { ReloadOutcome } from "../api/control.ts";
import type { SetupStatus, StatusSource } from "../api/status.ts";
import { assembleSetup, type OpenedSpares } from "../assembly/assemble.ts";
import { BackupKeeper } from "../assembly/backup_directory.ts";
import type { ProbedIdentity } from "../assembly/identity.ts";
import { assert } from "../assert.ts";
import type { Device } from "../device/device.ts";
import { EventBus } from "../events/event_bus.ts";
import { EventCounts } from "../api/event_counts.ts";
import { EventHistory } from "../events/event_history.ts";
import { describeEvent } from "../events/setup_event.ts";
import { SmartHistory } from "../health/smart_history.ts";
import type { RemapDevice } from "../remap/remap_device.ts";
import type { AllocationPolicy } from "../remap/allocation_policy.ts";
import type { SpareMember } from "../remap/spare_set.ts";
import { parseScanRecord, resolveScanSettings, Scanner } from "../scan/mod.ts";
import type { ServiceComponent } from "./component.ts";
import { type KernelDeviceAtStop, NbdExport } from "./nbd_export.ts";
import {
  removeRuntimeState,
  RUNTIME_STATE_VERSION,
  type RuntimeState,
  type StopRequest,
  stopRequestOf,
  writeRuntimeState,
} from "./runtime_state.ts";
import { servingMarkerOfThisProcess } from "./serving_marker.ts";
import { setupControlOf } from "./setup_control.ts";
import type { AlertSettings, PolicyRunSettings, ServiceSettings } from "./settings.ts";
import { type LogLevel, StructuredLog } from "../log/structured_log.ts";
import { READ_RETRIES_DEFAULT } from "../constants.ts";
import { SetupWatch } from "./setup_watch.ts";
import { levelOfEvent, logFieldsOf } from "./event_log.ts";
import { MetadataScrubber } from "./metadata_scrubber.ts";
import { SmartMonitor } from "./smart_monitor.ts";
import { StatusApi } from "./status_api.ts";
import { statusSourceOf } from "./status_source.ts";

/** The opened, checked disks of a setup: what the CLI hands the service. */
export interface SetupDisks {
  main: { device: Device; identity: ProbedIdentity };
  spares: OpenedSpares;
}

/** Options of {@link SetupService}. */
export interface SetupServiceOptions {
  settings: ServiceSettings;
  /**
   * Receives each log line (events, NBD notes, failed backups, alert
   * failures), structured as `key=value` with the setup's name
   * (`mod/log/structured_log.ts`).
   */
  log: (line: string) => void;
  /**
   * Called once when `POST /api/v1/stop` asks the service to stop; the
   * caller then calls {@link SetupService.stop} as on SIGTERM. @default none (the API refuses)
   */
  onStopRequested?: (request: { detach: boolean }) => void;
  /**
   * Called for each `POST /api/v1/reload`: reads the configuration again as
   * on SIGHUP and says what it did. @default none (the API refuses)
   */
  onReloadRequested?: () => Promise<ReloadOutcome>;
  /** The lowest level logged; {@link SetupService.reconfigure} changes it. @default "info" */
  logLevel?: LogLevel;
  /** Prefix syslog priorities for journald. @default underJournal() */
  journal?: boolean;
}

/** What a running service can change without a restart (SIGHUP). */
export interface LiveSettings {
  readRetries: number | undefined;
  alerts: AlertSettings | undefined;
  policies: PolicyRunSettings | undefined;
  logLevel: LogLevel;
  /** The policy new remaps follow; undefined keeps the one the setup records. */
  allocation: AllocationPolicy | undefined;
}

/** A setup served from {@link start} to {@link stop}. */
export class SetupService {
  /** Every event of the setup; the history, the log and the status API subscribe to it. */
  readonly events: EventBus = new EventBus();
  /** The status API's count of events by kind, from the start on. */
  readonly #eventCounts = new EventCounts();
  readonly #disks: SetupDisks;
  readonly #settings: ServiceSettings;
  readonly #log: StructuredLog;
  readonly #watch: SetupWatch;
  readonly #onStopRequested: SetupServiceOptions["onStopRequested"];
  readonly #onReloadRequested: SetupServiceOptions["onReloadRequested"];
  #history: EventHistory | undefined;
  #unsubscribeHistory: (() => void) | undefined;
  #backups: BackupKeeper | undefined;
  #engine: RemapDevice | undefined;
  #status: StatusSource | undefined;
  #nbd: NbdExport | undefined;
  #api: StatusApi | undefined;
  #scrubber: MetadataScrubber | undefined;
  #smart: SmartMonitor | undefined;
  #smartHistory: SmartHistory | undefined;
  /** What the runtime state file holds, once written. */
  #runtimeState: RuntimeState | undefined;
  /** Started components that send the engine requests: they stop before it closes. */
  readonly #feeders: ServiceComponent[] = [];
  /** Started components that only read the engine: they stop after it closed. */
  readonly #readers: ServiceComponent[] = [];
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  constructor(disks: SetupDisks, options: SetupServiceOptions) {
    this.#disks = disks;
    this.#settings = options.settings;
    this.#onStopRequested = options.onStopRequested;
    this.#onReloadRequested = options.onReloadRequested;
    const setupName = disks.spares.description.setup.name;
    this.#log = new StructuredLog({
      write: options.log,
      level: options.logLevel,
      journal: options.journal,
      fields: { setup: setupName },
    });
    this.#watch = new SetupWatch({
      setupName,
      mainPath: disks.main.identity.path,
      alerts: options.settings.alerts,
      policies: options.settings.policies,
      log: this.#log,
    });
  }

  /** The service's log, for the command's own lines (start, stop, reloads). */
  get log(): StructuredLog {
    return this.#log;
  }

  /**
   * Applies what can change while serving (SIGHUP): read retries, the
   * allocation policy, alert targets, policies and the log level; then
   * publishes a `config-reloaded` event saying what was applied and which
   * changed keys need a restart.
   */
  async reconfigure(
    settings: LiveSettings,
    report: { applied: string[]; needsRestart: string[] },
  ): Promise<void> {
    this.#log.level = settings.logLevel;
    if (this.#engine !== undefined) {
      this.#engine.readRetries = settings.readRetries ?? READ_RETRIES_DEFAULT;
      const allocation = settings.allocation;
      if (allocation !== undefined && allocation !== this.#engine.allocationPolicy) {
        await this.#engine.setAllocationPolicy(allocation);
      }
    }
    this.#watch.reconfigure({ alerts: settings.alerts, policies: settings.policies });
    this.events.publish({ type: "config-reloaded", ...report });
  }

  /**
   * Assembles the engine and starts serving it. Once only.
   *
   * @throws The first failure (a listen error, a device error), after
   * releasing everything the start had taken.
   */
  start(): Promise<void> {
    assert(this.#starting === undefined && this.#stopping === undefined, "a service starts once");
    this.#starting = this.#start().catch(async (error) => {
      await this.#release({ clean: false });
      throw error;
    });
    return this.#starting;
  }

  /**
   * Stops accepting, drains, flushes, persists and closes everything.
   * Idempotent; during a start it waits for the start, and after a failed
   * start there is nothing left to stop.
   *
   * @param options `kernelDevice`: what becomes of an attached `/dev/nbdN`
   *   (default `auto`: detached unless in use, else left for the next server).
   */
  stop(options: { kernelDevice?: KernelDeviceAtStop } = {}): Promise<void> {
    this.#stopping ??= (async () => {
      const started = await this.#starting?.then(() => true, () => false);
      if (this.#nbd !== undefined) this.#nbd.kernelDeviceAtStop = options.kernelDevice ?? "auto";
      if (started) await this.#release({ clean: true });
    })();
    return this.#stopping;
  }

  /** The engine, once started. */
  get engine(): RemapDevice {
    assert(this.#engine !== undefined, "the service has started");
    return this.#engine;
  }

  /** The same view the status API serves. */
  status(): SetupStatus {
    assert(this.#status !== undefined, "the service has started");
    return this.#status.status();
  }

  /** Where NBD clients connect, as URIs. */
  get nbdAddresses(): string[] {
    assert(this.#nbd !== undefined, "the service has started");
    return this.#nbd.addresses;
  }

  /** The kernel's device the server attached (`/dev/nbdN`), if any. */
  get kernelDevice(): string | undefined {
    return this.#nbd?.kernelDevice;
  }

  /** Where the status API answers: socket paths and URLs. */
  get apiAddresses(): string[] {
    assert(this.#api !== undefined, "the service has started");
    return this.#api.addresses;
  }

  /**
   * What this process's stop means: "detach" when `dm-remap stop` asked it
   * (the kernel device goes too), "restart" for any other SIGTERM (systemd
   * restarting the unit, an upgrade: the kernel device stays attached for the
   * next server). Valid until the stop has finished.
   */
  stopRequest(): Promise<StopRequest> {
    const dir = this.#settings.runtimeDir;
    if (dir === undefined) return Promise.resolve("restart");
    return stopRequestOf(dir, this.#disks.spares.description.setup.uuid);
  }

  async #start(): Promise<void> {
    const settings = this.#settings;
    await createParentDirectories([
      settings.nbd.unixPath,
      settings.api.unixPath,
      settings.eventsPath,
    ]);
    this.events.subscribe((event) => {
      this.#log.log({
        level: levelOfEvent(event),
        message: describeEvent(event),
        fields: logFieldsOf(event),
      });
    });
    this.#watch.subscribeTo(this.events);
    this.events.subscribe((event) => {
      if (event.type === "spare-removed") this.#spareRemoved(event.spareIndex);
    });
    const history = this.#history = EventHistory.open(settings.eventsPath);
    this.#unsubscribeHistory = history.subscribeTo(this.events);
    this.#eventCounts.subscribeTo(this.events);
    this.#backups = this.#backupKeeper();
    const engine = this.#engine = await assembleSetup(this.#disks.main, this.#disks.spares, {
      readRetries: settings.readRetries,
      ...(settings.allocation === undefined ? {} : { placement: settings.allocation }),
      onSetupWritten: () => this.#backupWith((backups) => backups.request("setup state")),
      onEvent: (event) => this.events.publish(event),
    });
    await this.#backupWith((backups) => backups.requestUnlessCurrent("serve start"));
    await this.#startComponents(engine, history);
    // The clean-stop flag: removed by engine.close() when stop() runs.
    await engine.markServing(servingMarkerOfThisProcess());
    this.events.publish({
      type: "started",
      sizeBytes: engine.sizeBytes,
      remapCount: engine.remapCount,
      pendingCount: engine.pendingBlocks.length,
    });
    await this.#recordRuntimeState();
  }

  /** Tells the machine this process serves the setup: the last step of a start. */
  async #recordRuntimeState(): Promise<void> {
    const { setup } = this.#disks.spares.description;
    this.#runtimeState = {
      version: RUNTIME_STATE_VERSION,
      process: servingMarkerOfThisProcess(),
      name: setup.name,
      uuid: setup.uuid,
      main: this.#disks.main.identity.path,
      spares: this.#disks.spares.stores.map((store) => store.device.name),
      nbd: this.nbdAddresses,
      api: this.apiAddresses,
      ...(this.kernelDevice === undefined ? {} : { kernelDevice: this.kernelDevice }),
    };
    const dir = this.#settings.runtimeDir;
    if (dir !== undefined) await writeRuntimeState(dir, this.#runtimeState);
  }

  /** The metadata scrub on open, the exports, the SMART reader, then the API, which shows them. */
  async #startComponents(engine: RemapDevice, history: EventHistory): Promise<void> {
    // A feeder: it writes the spares' metadata through the engine, so it stops before the engine.
    this.#scrubber = new MetadataScrubber(engine, {
      intervalMs: this.#settings.scrub?.intervalMs,
      publish: (event) => this.events.publish(event),
    });
    await this.#scrubber.start();
    this.#feeders.push(this.#scrubber);
    this.#nbd = new NbdExport(engine, {
      main: this.#disks.main,
      settings: this.#settings.nbd,
      description: `dm-remap setup ${this.#disks.spares.description.setup.name}`,
      setupUuid: this.#disks.spares.description.setup.uuid,
      log: (line) => this.#log.log({ level: "info", message: line, fields: { component: "nbd" } }),
    });
    await this.#nbd.start();
    this.#feeders.push(this.#nbd);
    await this.#startSmart();
    const scanner = this.#scanner(engine);
    await scanner.start();
    // Rising SMART counts on the main disk start an early pass (a paused one stays paused).
    this.events.subscribe((event) => {
      if (event.type === "smart-risk-raised" && isMainDiskSmart(event.device)) {
        scanner.startEarlyPass();
      }
    });
    // The scanner sends the engine reads and relocations: it stops before the engine closes.
    this.#feeders.push(scanner);
    // Alerts of the open and policies, which read the scanner's findings and start its passes.
    this.#watch.attach(engine, this.#disks.spares, scanner);
    this.#status = statusSourceOf(engine, {
      spares: this.#disks.spares,
      history,
      served: this.#nbd.served,
      nbd: this.#nbd.view,
      eventCounts: this.#eventCounts,
      alerts: () => this.#watch.alertCounts,
      policies: () => this.#watch.policyEvaluations,
      scrub: () => this.#scrubber!.status(),
      smart: this.#smart,
      healthReport: () => scanner.health(),
    });
    const nbd = this.#nbd;
    const control = setupControlOf({
      engine,
      spares: this.#disks.spares,
      kernelDevice: () => nbd.kernelDevice,
      onRepaired: (repaired) => this.events.publish({ type: "metadata-repaired", ...repaired }),
      onStopRequested: this.#onStopRequested,
      onReloadRequested: this.#onReloadRequested,
      mainPath: this.#disks.main.identity.path,
      onSpareJoined: (spare) => {
        this.#spareJoined(spare);
        nbd.spareJoined(spare);
      },
    });
    this.#api = new StatusApi(this.#status, {
      control,
      settings: this.#settings.api,
      scanControl: scanner,
    });
    await this.#api.start();
    this.#readers.push(this.#api);
  }

  /** Lists a spare that joined among the opened ones: the status and the backups show it. */
  #spareJoined(spare: SpareMember): void {
    const { stores, reports } = this.#disks.spares;
    assert(spare.store !== undefined, "a spare joins with its metadata");
    stores.push(spare.store);
    reports.push({
      device: spare.device.name,
      copies: [],
      validCopies: 5,
      logSectorsUsed: 0,
      logStopReason: "new spare",
      checkpointEntries: spare.store.payload.table.checkpointEntries,
      slotsUsed: 0,
    });
  }

  /** Drops a spare that left the setup from the opened ones (its metadata is erased). */
  #spareRemoved(spareIndex: number): void {
    const { stores, reports } = this.#disks.spares;
    const position = stores.findIndex((store) => store.payload.spareIndex === spareIndex);
    if (position < 0) return;
    stores.splice(position, 1);
    reports.splice(position, 1);
  }

  /** The periodic SMART reader of the main disk and the spares, unless turned off. */
  async #startSmart(): Promise<void> {
    const settings = this.#settings.smart;
    if (settings === false) return;
    this.#smartHistory = SmartHistory.open(this.#settings.eventsPath);
    this.#smart = new SmartMonitor({
      disks: [
        { role: "main", path: this.#disks.main.identity.path },
        ...this.#disks.spares.stores.map((store) => ({
          role: `spare ${store.payload.spareIndex}`,
          path: store.device.name,
        })),
      ],
      intervalMs: settings?.intervalMs,
      ...(settings?.read === undefined ? {} : { read: settings.read }),
      ...(settings?.disksUnder === undefined ? {} : { disksUnder: settings.disksUnder }),
      history: this.#smartHistory,
      publish: (event) => this.events.publish(event),
    });
    await this.#smart.start();
    this.#readers.push(this.#smart);
  }

  /**
   * The background scanner, with the `serve` flags over the settings the
   * metadata recorded, going on from the recorded position; a setup never
   * scanned has its first pass due an interval after its creation.
   *
   * @throws {UsageError} When a scan setting is out of range.
   */
  #scanner(engine: RemapDevice): Scanner {
    const recorded = parseScanRecord(this.#disks.spares.description.scan);
    return new Scanner(engine, {
      settings: resolveScanSettings(this.#settings.scan ?? {}, recorded?.settings),
      recorded,
      createdMs: this.#disks.spares.description.setup.createdMs,
      onEvent: (event) => this.events.publish(event),
      onError: (error) =>
        this.#log.log({
          level: "err",
          message: `the scanner stopped: ${(error as Error).message}`,
          fields: { event: "scanner-stopped" },
        }),
    });
  }

  /** Releases what was taken, in the order that loses nothing; `clean` for a stop after a start. */
  async #release(options: { clean: boolean }): Promise<void> {
    for (const component of this.#feeders.splice(0).reverse()) await component.stop();
    const engine = this.#engine;
    if (engine !== undefined) {
      // After a failed start there is nothing to flush: the engine wrote nothing.
      if (options.clean) await engine.flush();
      await engine.close();
    }
    await this.#backups?.idle();
    for (const component of this.#readers.splice(0).reverse()) await component.stop();
    if (options.clean && engine !== undefined) {
      this.events.publish({ type: "stopped", remapCount: engine.remapCount });
    }
    this.#unsubscribeHistory?.();
    this.#history?.close();
    this.#smartHistory?.close();
    // Last, so the stop itself is alerted; bounded, so a dead webhook cannot hold the stop.
    await this.#watch.stop();
    const dir = this.#settings.runtimeDir;
    if (dir !== undefined && this.#runtimeState !== undefined) {
      await removeRuntimeState(dir, this.#runtimeState.uuid);
    }
  }

  /**
   * Backs up the setup, unless a spare of it was removed: a backup lists
   * every spare's layout and table, which a removed spare no longer has
   * (`docs/FORMAT.md` section 7), so none is written then, and the log says so once.
   */
  async #backupWith(write: (backups: BackupKeeper) => void | Promise<void>): Promise<void> {
    if (this.#backups === undefined) return;
    const removed = this.#engine?.spares.filter((spare) => spare.state === "removed") ?? [];
    if (removed.length === 0) return await write(this.#backups);
    this.#backups = undefined;
    this.#log.log({
      level: "warning",
      message: `no more metadata backups: spare ${
        removed.map((spare) => spare.index).join(", ")
      } was removed, and a backup lists every spare's table`,
      fields: { event: "backup-skipped" },
    });
  }

  #backupKeeper(): BackupKeeper | undefined {
    const directory = this.#settings.backupDir;
    if (directory === undefined) return undefined;
    const { missing } = this.#disks.spares;
    if (missing.length > 0) {
      // A backup lists every spare's metadata, which a missing one cannot give.
      this.#log.log({
        level: "warning",
        message: `no metadata backup while spare ${
          missing.map((record) => `${record.index} (${record.uuid})`).join(", ")
        } is missing`,
        fields: { event: "backup-skipped" },
      });
      return undefined;
    }
    // The spares as the engine has them: one added while serving is among them.
    return new BackupKeeper(
      directory,
      () => this.#engine!.spares.flatMap((spare) => spare.store ?? []),
      (error) =>
        this.#log.log({
          level: "warning",
          message: `cannot write the metadata backup in ${directory}: ${(error as Error).message}`,
          fields: { event: "backup-failed" },
        }),
    );
  }
}

/** Creates the directories the sockets and the history go in, where missing. */
async function createParentDirectories(paths: readonly (string | undefined)[]): Promise<void> {
  for (const path of paths) {
    if (path !== undefined) await Deno.mkdir(dirname(path), { recursive: true });
  }
}

/** Whether a `smart-risk-raised` event's device is the main disk (`/dev/sda (main)`, `… (main under …)`). */
function isMainDiskSmart(device: string): boolean {
  return /\(main(\)| under )/.test(device);
}

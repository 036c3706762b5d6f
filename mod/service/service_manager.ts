/**
 * The server's side of systemd's `Type=notify` protocol: READY=1 once the
 * setup serves (and its kernel device is attached, when one was asked for),
 * STATUS= lines that follow the remap count, STOPPING=1 on stop, and the
 * hand-over of a server already running (started in the initramfs) to the
 * unit with MAINPID=, as mdmon's `--takeover` hands its array to
 * `mdmon@.service`.
 *
 * @module
 */

import { type NotifyOutcome, notifyServiceManager } from "../sys/sd_notify.ts";
import { listRuntimeStates, type RuntimeState } from "./runtime_state.ts";
import type { SetupService } from "./setup_service.ts";

/** The status line systemd shows for a serving setup. */
export function statusLineOf(service: SetupService): string {
  const device = service.kernelDevice === undefined ? "" : ` on ${service.kernelDevice}`;
  return `STATUS=serving${device}, ${service.engine.remapCount} remaps, ` +
    `${service.engine.pendingBlocks.length} pending`;
}

/**
 * Tells the service manager the setup serves, and keeps its status current
 * while it runs.
 */
export class ServiceManagerNotifier {
  readonly #service: SetupService;
  readonly #send: (message: string) => NotifyOutcome;
  #unsubscribe: (() => void) | undefined;

  constructor(
    service: SetupService,
    send: (message: string) => NotifyOutcome = notifyServiceManager,
  ) {
    this.#service = service;
    this.#send = send;
  }

  /** Sends READY=1 with the first status; call it once the service has started. */
  ready(): NotifyOutcome {
    this.#unsubscribe = this.#service.events.subscribe((event) => {
      if (event.type === "remap" || event.type === "pending" || event.type === "degraded") {
        this.#send(statusLineOf(this.#service));
      }
    });
    return this.#send(`READY=1\n${statusLineOf(this.#service)}`);
  }

  /** Sends STOPPING=1; the status stops following the engine. */
  stopping(): void {
    this.#unsubscribe?.();
    this.#send("STOPPING=1\nSTATUS=stopping: finishing requests, flushing, writing metadata");
  }
}

/**
 * The live server of setup `name` recorded under `runDir`, if one runs.
 *
 * @returns Its runtime state, or undefined.
 */
export async function runningServerOf(
  runDir: string,
  name: string,
): Promise<RuntimeState | undefined> {
  const entries = await listRuntimeStates(runDir);
  return entries.find((entry) => entry.alive && entry.state.name === name)?.state;
}

/**
 * Hands a running server to the unit that runs this process: MAINPID= its
 * pid, READY=1. systemd accepts a main PID outside the unit from a root sender.
 */
export function adoptServer(
  state: RuntimeState,
  send: (message: string) => NotifyOutcome = notifyServiceManager,
): NotifyOutcome {
  const device = state.kernelDevice === undefined ? "" : ` on ${state.kernelDevice}`;
  return send(
    `MAINPID=${state.process.pid}\nREADY=1\n` +
      `STATUS=adopted the server started before this unit (pid ${state.process.pid})${device}`,
  );
}

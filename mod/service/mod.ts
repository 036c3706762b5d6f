/**
 * The service that owns a running setup: {@link SetupService} assembles the
 * engine from a setup's opened disks and serves it (NBD export, status API,
 * event history, backups, serving marker, runtime state under /run/dm-remap)
 * from `start()` to `stop()`, as
 * one {@link ServiceSettings} object says. The CLI only parses flags into
 * those settings and calls it.
 *
 * @example Serving a setup on memory disks over TCP, then stopping it
 * ```ts
 * import assert from "node:assert/strict";
 * import { openSpares } from "../assembly/assemble.ts";
 * import { createSetup } from "../assembly/create.ts";
 * import { MemoryDevice } from "../device/memory_device.ts";
 * import { minimumSpareBytes } from "../metadata/spare_layout.ts";
 * import { SetupService } from "./mod.ts";
 *
 * const main = new MemoryDevice("main", 1024 * 1024);
 * const spare = new MemoryDevice("spare", minimumSpareBytes(4096) + 16 * 4096);
 * const identity = { path: "main", kind: "file" as const, sizeBytes: main.sizeBytes };
 * await createSetup({
 *   name: "example",
 *   main: { device: main, identity },
 *   spares: [{ device: spare, path: "spare" }],
 *   blockBytes: 4096,
 * });
 * const service = new SetupService({ main: { device: main, identity }, spares: await openSpares([spare]) }, {
 *   settings: {
 *     nbd: { exportName: "example", tcp: { hostname: "127.0.0.1", port: 0 } },
 *     api: { tcp: { hostname: "127.0.0.1", port: 0 } },
 *     eventsPath: ":memory:",
 *   },
 *   log: (line) => console.error(line),
 * });
 * await service.start();
 * try {
 *   assert.equal(service.status().setup.name, "example");
 *   assert.match(service.nbdAddresses[0]!, /^nbd:\/\/127\.0\.0\.1:\d+\/example$/);
 * } finally {
 *   await service.stop();
 * }
 * ```
 *
 * @module
 */

export type { ServiceComponent } from "./component.ts";
export { NbdExport, type NbdExportOptions } from "./nbd_export.ts";
export {
  describeShutdownState,
  servingMarkerOfThisProcess,
  type ShutdownState,
  shutdownStateOf,
} from "./serving_marker.ts";
export {
  listRuntimeStates,
  removeRuntimeState,
  requestDetach,
  type RuntimeState,
  type RuntimeStateEntry,
  runtimeStatePath,
  type StopRequest,
  stopRequestOf,
  writeRuntimeState,
} from "./runtime_state.ts";
export type { ListenSettings, NbdSettings, ServiceSettings, TcpListener } from "./settings.ts";
export { type SetupDisks, SetupService, type SetupServiceOptions } from "./setup_service.ts";
export { StatusApi } from "./status_api.ts";
export { type NbdView, statusSourceOf, type StatusSources } from "./status_source.ts";

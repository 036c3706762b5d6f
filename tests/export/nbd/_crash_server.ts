/**
 * A server process for the crash test: its device breaks an invariant on the
 * first write. Run with the Unix socket path as the only argument; prints
 * "ready" once listening. The process must die of the AssertionError.
 *
 * @module
 */

import { AssertionError } from "../../../mod/assert.ts";
import { serveNbd } from "../../../mod/export/nbd/server.ts";
import { ScriptedDevice } from "./_harness.ts";

const device = new ScriptedDevice(1024 * 1024, (call) => {
  if (call.op === "write") throw new AssertionError("test invariant broken by the device");
});
await serveNbd({ device, exportName: "disk0", preferredBlockBytes: 4096, unixPath: Deno.args[0]! });
console.log("ready");

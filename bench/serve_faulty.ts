/**
 * Serves a setup whose main disk fails writes to chosen blocks, for the
 * benchmark's "remaps being created" target and the remap-commit latency.
 *
 * It serves exactly like `dm-remap serve` (mod/service/setup_service.ts SetupService)
 * but wraps the main device in the fault layer's FaultyDevice first. The
 * connection workers send every request that touches a bad block through it. The CLI
 * has no fault flag on purpose; this script is bench-only.
 *
 * Usage: deno run -A bench/serve_faulty.ts --main M --spare S --socket P --api-socket A
 *          [--bad-every N]            every N-th block (jittered) fails writes
 *          [--bad-range OFF:LEN]      every block in the byte range fails writes
 *          [--events-db PATH]         the event history (default: beside the spare)
 *          [--alert-webhook URL]      every event is an alert POSTed there (no rate limit,
 *                                     no repeat interval: the alerts bench's worst case)
 *          [--buffered]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { openSpares } from "../mod/assembly/assemble.ts";
import { openPath } from "../mod/assembly/open_path.ts";
import { untilSignal } from "../mod/cli/stop_signal.ts";
import {
  ALERT_BACKOFF_MS_DEFAULT,
  ALERT_RATE_PER_MINUTE_MAX,
  ALERT_RETRIES_DEFAULT,
  ALERT_TIMEOUT_MS_DEFAULT,
  SPARE_NEARLY_FULL_PERCENT_DEFAULT,
} from "../mod/constants.ts";
import { FaultyDevice } from "../mod/fault/faulty_device.ts";
import { SetupService } from "../mod/service/setup_service.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    main: { type: "string" },
    spare: { type: "string" },
    socket: { type: "string" },
    "api-socket": { type: "string" },
    "bad-every": { type: "string" },
    "bad-range": { type: "string" },
    "events-db": { type: "string" },
    "alert-webhook": { type: "string" },
    buffered: { type: "boolean", default: false },
  },
});
const output = {
  out: (line: string) => console.log(line),
  err: (line: string) => console.error(line),
};
const stopRequested = untilSignal();
const direct = !values.buffered;
const spareDevice = (await openPath(values.spare!, { readOnly: false, direct })).device;
const spares = await openSpares([spareDevice]);
const blockBytes = spares.description.setup.blockBytes;
const main = await openPath(values.main!, { readOnly: false, direct });
const faulty = new FaultyDevice(main.device, { blockBytes, writeMode: "fail" });
let badBlocks = 0;
if (values["bad-every"]) {
  const every = Number(values["bad-every"]);
  const indexes: number[] = [];
  // One block per stride of `every`, at a pseudo-random place inside it.
  for (let first = 0; first + every <= faulty.blockCount; first += every) {
    indexes.push(first + ((first / every) * 2654435761 >>> 0) % every);
  }
  faulty.addBadBlocks(indexes, "write");
  badBlocks += indexes.length;
}
if (values["bad-range"]) {
  const [offsetBytes, lengthBytes] = values["bad-range"].split(":").map(Number);
  faulty.setBad({ offsetBytes: offsetBytes!, lengthBytes: lengthBytes! }, "write");
  badBlocks += Math.ceil(lengthBytes! / blockBytes);
}
const serving = new SetupService({ main: { device: faulty, identity: main.identity }, spares }, {
  settings: {
    nbd: {
      exportName: spares.description.setup.name,
      unixPath: values.socket,
      // This script is not main.ts, which doubles as the connection workers' module.
      workerUrl: new URL("../mod/export/nbd/worker_entry.ts", import.meta.url),
    },
    api: { unixPath: values["api-socket"] },
    eventsPath: values["events-db"] ?? `${values.spare}.events.sqlite`,
    alerts: values["alert-webhook"] === undefined ? undefined : {
      spareNearlyFullPercent: SPARE_NEARLY_FULL_PERCENT_DEFAULT,
      targets: [{
        name: "bench",
        destination: { webhook: values["alert-webhook"] },
        kinds: [],
        timeoutMs: ALERT_TIMEOUT_MS_DEFAULT,
        retries: ALERT_RETRIES_DEFAULT,
        backoffMs: ALERT_BACKOFF_MS_DEFAULT,
        ratePerMinute: ALERT_RATE_PER_MINUTE_MAX,
        repeatIntervalMs: 0,
      }],
    },
  },
  log: output.err,
});
await serving.start();
output.out(
  `dm-remap[faulty]: serving ${serving.engine.sizeBytes} bytes, ${serving.engine.remapCount} remaps, ${badBlocks} bad blocks`,
);
await stopRequested;
await serving.stop();
output.err(
  `dm-remap[faulty]: stopped cleanly: ${serving.engine.counters.remapsCreated} remaps in ${serving.engine.counters.remapBatches} batches`,
);
Deno.exit(0);

/**
 * The long boot series (scripts/boot_series.sh N): {@link bootSeries} with N boots, every other
 * one cut mid-write, going on after a failure. Prints one JSON line per boot and a summary;
 * docs/boot.md records the results.
 *
 * @module
 */

import { bootSeries } from "./boot_vm.ts";

const boots = Number(Deno.args[0] ?? "20");
const outcomes = await bootSeries(boots, (boot) => {
  console.log(JSON.stringify({ ...boot, error: boot.error?.slice(0, 4000) }));
}, true);
const failures = outcomes.filter((boot) => !boot.ok).length;
console.log(`${boots - failures} passed, ${failures} failed`);
Deno.exit(failures === 0 ? 0 : 1);

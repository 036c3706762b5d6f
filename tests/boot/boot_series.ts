/**
 * The long boot series (scripts/boot_series.sh N): N boots of the Debian guest on one pair of
 * disks, every other one cut mid-write (qemu SIGKILL). After each cut the next boot verifies
 * every file fsynced so far and the host runs e2fsck -fn. Prints one JSON line per boot and a
 * summary; docs/boot.md records the results.
 *
 * @module
 */

import { assertChecks } from "../vm/vm.ts";
import {
  assemblyTimeOf,
  bootAndCut,
  bootGuest,
  fsckMain,
  newGuestDisks,
  ROOT_CHECKS,
} from "./boot_vm.ts";

const boots = Number(Deno.args[0] ?? "20");
const disks = await newGuestDisks();
const fsynced: string[] = [];
let failures = 0;
for (let index = 1; index <= boots; index++) {
  const cut = index % 2 === 0;
  const checks = fsynced.length > 0 ? ["verify"] : [];
  const files = { "fsynced.txt": fsynced.join("\n") + "\n" };
  let outcome: Record<string, unknown> = { boot: index, powerCut: cut };
  try {
    if (cut) {
      const { run, fsynced: written } = await bootAndCut(disks, checks, files);
      fsynced.push(...written);
      outcome = {
        ...outcome,
        seconds: Math.round(run.durationMs / 1000),
        assembly: assemblyTimeOf(run),
      };
      await fsckMain(disks);
      outcome.fsck = "clean";
    } else {
      const run = await bootGuest(disks, { checks, files });
      assertChecks(run, [...ROOT_CHECKS, ...(checks.length ? ["fsynced_files_verify"] : [])]);
      outcome = {
        ...outcome,
        seconds: Math.round(run.durationMs / 1000),
        assembly: assemblyTimeOf(run),
      };
    }
    outcome.ok = true;
  } catch (error) {
    failures++;
    outcome = { ...outcome, ok: false, error: (error as Error).message.slice(0, 2000) };
  }
  outcome.fsyncedFiles = fsynced.length;
  console.log(JSON.stringify(outcome));
}
await Deno.remove(disks.directory, { recursive: true });
console.log(`${boots - failures} passed, ${failures} failed`);
Deno.exit(failures === 0 ? 0 : 1);

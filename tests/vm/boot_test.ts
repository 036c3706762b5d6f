/**
 * Boot integration in the suite (issue 19): five boots of a real Debian bookworm guest whose root
 * filesystem is ext4 on the remapped device, its initramfs built by the guest's own mkinitramfs
 * with dm-remap's hook (tests/boot/boot_vm.ts).
 *
 * Goal: each boot assembles root from the disks' metadata alone, switch_root succeeds and systemd
 * reaches multi-user with the same server ('@dm-remap', oom_score_adj -1000) serving root as the
 * main PID of dm-remap@root.service; boots 2 and 4 are cut mid-write (qemu SIGKILL); after each
 * cut the next boot's server replays and every fsynced file verifies, after each clean power-off
 * the next boot finds the setup stopped cleanly, and after every boot e2fsck -fn is clean.
 * Method: {@link bootSeries}. It is here, beside vm_test.ts, because `deno test --parallel` starts
 * files in order: on two cores the boots then run beside the VM scenarios, not beside the host
 * tests. The longer series and the other boot scenarios are in scripts/boot_series.sh and
 * scripts/boot_tests.sh (docs/boot.md).
 */

import assert from "node:assert/strict";
import { bootSeries } from "../boot/boot_vm.ts";

Deno.test({
  name: "boot series: root on the remapped disk, 5 boots, 2 cut mid-write, e2fsck clean after each",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const outcomes = await bootSeries(5, (boot) => {
      console.log(
        `boot ${boot.boot} (${boot.powerCut ? "power cut" : "clean power-off"}; checked: ` +
          `${boot.checks.join(", ") || "root only"}): ${boot.ok ? "ok" : "FAILED"}, ` +
          `${boot.seconds ?? "?"} s in qemu; initramfs assembly ` +
          (boot.assembly ? `${boot.assembly.startS}s -> ${boot.assembly.endS}s of uptime` : "?") +
          `; ${boot.timeline ?? ""}`,
      );
    });
    const failed = outcomes.find((boot) => !boot.ok);
    assert.equal(failed, undefined, `boot ${failed?.boot} failed: ${failed?.error}`);
    assert.equal(outcomes.length, 5);
    assert.equal(outcomes.filter((boot) => boot.powerCut).length, 2);
  },
});

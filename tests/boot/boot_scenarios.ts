/**
 * Boot integration (issue 19), the scenarios beside the suite's boot series (tests/vm/boot_test.ts):
 * a real Debian bookworm guest whose root filesystem is ext4 on the remapped device.
 *
 * Goal: the guest's dracut initramfs assembles root as its mkinitramfs one does, and its power-off
 * leaves the setup stopped cleanly; rd.dm_remap=0 assembles nothing; a setup whose main disk is
 * missing stops the boot with the reason instead of hanging; a spare plugged in while the guest
 * runs (qemu monitor device_add) is recognised by the udev rule and its setup started through
 * systemd (dm-remap@data.service, Type=notify, with its STATUS=).
 * Method: tests/boot/boot_vm.ts boots the guest under qemu (TCG) on qcow2 overlays of disks
 * prepared once; the guest reports checks on its serial console.
 */

import assert from "node:assert/strict";
import { assertChecks, type VmRun } from "../vm/vm.ts";
import {
  assemblyTimeOf,
  bootGuest,
  monitorCommands,
  newGuestDisks,
  ROOT_CHECKS,
  spareShutdownState,
  UDEV_RECOGNISED,
} from "./boot_vm.ts";

/** Reports the boot's timeline (TCG) for the record. */
function report(label: string, run: VmRun): void {
  const assembly = assemblyTimeOf(run);
  const timeline = run.checks.find((check) => check.check === "boot_timeline")?.detail;
  console.log(
    `${label}: ${(run.durationMs / 1000).toFixed(0)} s in qemu; initramfs assembly ` +
      (assembly ? `${assembly.startS}s -> ${assembly.endS}s of uptime` : "not reported") +
      `; ${timeline ?? ""}`,
  );
}

Deno.test({
  name: "boot 8: the guest's dracut initramfs assembles root the same way, then a clean power-off",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using disks = await newGuestDisks();
    const run = await bootGuest(disks, { checks: [], initramfs: "dracut" });
    report("boot 8 (dracut)", run);
    assertChecks(run, ROOT_CHECKS);
    assert.ok(assemblyTimeOf(run), "the initramfs reported its assembly time");
    assert.match(run.log, UDEV_RECOGNISED, "the initramfs's udev labelled the spare");
    assert.equal(await spareShutdownState(disks), "clean", "boot 8's power-off left it clean");
  },
});

Deno.test({
  name: "boot 5: rd.dm_remap=0 assembles nothing (root on the main disk itself)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using disks = await newGuestDisks();
    const run = await bootGuest(disks, {
      checks: ["disabled"],
      rootChecks: false,
      commandLine: "rd.dm_remap=0 root=/dev/vda",
    });
    report("boot 5 (rd.dm_remap=0)", run);
    assert.match(run.log, /dm-remap: disabled by rd\.dm_remap=0/);
    assertChecks(run, ["root_not_on_nbd", "no_root_daemon", "no_runtime_copy_in_run"]);
  },
});

Deno.test({
  name: "boot 6: a setup whose main disk is missing stops the boot with the reason",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using disks = await newGuestDisks();
    const run = await bootGuest(disks, {
      checks: [],
      disks: [disks.spare],
      commandLine: "rd.dm_remap.timeout=5",
      timeoutMs: 240_000,
    });
    report("boot 6 (main disk missing)", run);
    assert.ok(!run.timedOut, `the boot hung:\n${run.log}`);
    assert.match(run.log, /main-missing/);
    assert.match(run.log, /dm-remap: could not assemble --scan within 5s/);
    assert.equal(run.checks.length, 0);
  },
});

Deno.test({
  name: "boot 7: a spare plugged in while the guest runs is assembled by udev and systemd",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    // The main disk of a second setup, "data", is there from the start; its spare is plugged in
    // through qemu's monitor: udev's rule and the incremental unit must start dm-remap@data.
    await using disks = await newGuestDisks();
    const monitorPath = `${disks.directory}/monitor.sock`;
    let plugged: Promise<string> | undefined;
    const run = await bootGuest(disks, {
      checks: ["hotplug"],
      disks: [disks.main, disks.spare, disks.dataMain],
      monitorPath,
      timeoutMs: 1_500_000,
      onLine: (line) => {
        if (line.includes("DMREMAP-HOTPLUG-NOW") && plugged === undefined) {
          plugged = monitorCommands(monitorPath, [
            `drive_add 0 if=none,id=hotplug,format=qcow2,cache=unsafe,file=${disks.dataSpare.path}`,
            "device_add virtio-blk-pci,drive=hotplug,serial=data-spare,id=hotplug-disk",
          ]);
        }
        return undefined;
      },
    });
    report("boot 7 (hotplug)", run);
    assert.ok(plugged, `the guest never asked for the disk:\n${run.log}`);
    const answer = await plugged;
    assert.doesNotMatch(answer, /Error|error/, answer);
    assertChecks(run, [
      ...ROOT_CHECKS,
      "hotplug_spare_properties",
      "hotplug_unit_active",
      "hotplug_unit_status",
      "hotplug_device_attached",
      "hotplug_unit_fresh",
      "systemctl_stop_detaches",
      "systemctl_start_fresh",
      "systemctl_start_serves",
      "data_survives_stop_start",
      "systemctl_stop_detaches_again",
      "assemble_starts_unit",
      "assemble_unit_serves",
    ]);
  },
});

Deno.test({
  name:
    "boot 9: a grown defect made live under the mounted root is remapped; the guest sees no error",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    // The main disk is dmr-main, a dm-linear device the initramfs makes before dm-remap
    // assembles; the guest swaps a file's blocks for dm-error there and writes the file again.
    await using disks = await newGuestDisks();
    const run = await bootGuest(disks, {
      checks: ["defect"],
      disks: [disks.defectMain, disks.defectSpare],
      commandLine: "dmremap_test.dm_main",
    });
    report("boot 9 (grown defect under root)", run);
    assert.match(run.log, /dmremap_test: dmr-main over \/dev\/vd/);
    assertChecks(run, [
      ...ROOT_CHECKS,
      "defect_made_live",
      "defect_is_an_error",
      "defect_write_ok",
      "defect_reads_back",
      "defect_remapped",
      "no_errors_after_defect",
    ]);
    assert.equal(
      await spareShutdownState(disks, disks.defectSpare),
      "clean",
      "boot 9's power-off left it clean",
    );
  },
});

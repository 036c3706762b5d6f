/**
 * Boot integration (issue 19): a real Debian bookworm guest whose root filesystem is ext4 on the
 * remapped device, its initramfs built by the guest's own mkinitramfs with dm-remap's hook.
 *
 * Goal: the initramfs assembles root from the disks' metadata alone (no configuration names a
 * device), switch_root succeeds and systemd reaches multi-user with the same server (argv[0]
 * '@dm-remap', oom_score_adj -1000) serving root, adopted by dm-remap@root.service (its main PID);
 * a clean power-off leaves the setup stopped cleanly (the shutdown hook stops the daemon once root
 * is read-only); after each of two power cuts mid-write (qemu SIGKILL) every fsynced file verifies
 * and e2fsck -fn of the filesystem is clean; rd.dm_remap=0 assembles nothing; a setup whose main
 * disk is missing stops the boot with the reason instead of hanging.
 * Method: tests/boot/boot_vm.ts boots the guest under qemu (TCG) on qcow2 overlays of disks
 * prepared once; the guest reports checks on its serial console; the host cuts the power after
 * some fsynced files and runs e2fsck on the main disk's content (no remaps: it is the device's).
 */

import assert from "node:assert/strict";
import { assertChecks, type VmRun } from "../vm/vm.ts";
import { assemblyTimeOf, bootGuest, type GuestDisks, newGuestDisks } from "./boot_vm.ts";

const ROOT_CHECKS = [
  "root_on_nbd",
  "server_is_root_daemon",
  "server_oom_score_adj",
  "unit_active",
  "unit_main_pid_is_server",
  "no_initramfs_files_open",
  "system_state",
  "no_nbd_errors",
];
const FSYNCED_MARK = /DMREMAP-FSYNCED (\S+) ([0-9a-f]{64})/;
/** Files written before the power is cut. */
const FILES_BEFORE_CUT = 4;

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

/** Boots with the writer, cuts the power after some fsynced files, returns them. */
async function bootAndCut(disks: GuestDisks, checks: string[], files: Record<string, string>) {
  const fsynced: string[] = [];
  const run = await bootGuest(disks, {
    checks: [...checks, "write"],
    files,
    onLine: (line) => {
      const match = line.match(FSYNCED_MARK);
      if (match) fsynced.push(`${match[1]} ${match[2]}`);
      return fsynced.length >= FILES_BEFORE_CUT ? "kill" : undefined;
    },
  });
  assert.ok(run.killed, `the power was not cut:\n${run.log}`);
  assertChecks(run, [...ROOT_CHECKS, "writer_started"], { done: false });
  return { run, fsynced };
}

/** e2fsck -fn of the main disk's content (an overlay converted to raw). */
async function fsckMain(disks: GuestDisks): Promise<string> {
  const raw = `${disks.directory}/main.raw`;
  const convert = await new Deno.Command("qemu-img", {
    args: ["convert", "-O", "raw", disks.main.path, raw],
  }).output();
  assert.ok(convert.success, new TextDecoder().decode(convert.stderr));
  const fsck = await new Deno.Command("e2fsck", { args: ["-fn", raw] }).output();
  const text = new TextDecoder().decode(fsck.stdout) + new TextDecoder().decode(fsck.stderr);
  await Deno.remove(raw);
  assert.equal(fsck.code, 0, `e2fsck -fn is not clean:\n${text}`);
  return text;
}

Deno.test({
  name: "boot 1-4: root on the remapped disk, clean shutdown, two power cuts mid-write",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const disks = await newGuestDisks();
    try {
      const first = await bootGuest(disks, { checks: [] });
      report("boot 1 (clean power-off)", first);
      assertChecks(first, ROOT_CHECKS);
      assert.ok(assemblyTimeOf(first), "the initramfs reported its assembly time");

      const cut1 = await bootAndCut(disks, ["clean"], {});
      report("boot 2 (power cut)", cut1.run);
      assertChecks(cut1.run, ["previous_stop_was_clean"], { done: false });

      const fsynced = [...cut1.fsynced];
      const cut2 = await bootAndCut(disks, ["verify"], {
        "fsynced.txt": fsynced.join("\n") + "\n",
      });
      report("boot 3 (after power cut, then power cut)", cut2.run);
      assertChecks(cut2.run, ["fsynced_files_verify", "server_replayed_after_power_cut"], {
        done: false,
      });
      fsynced.push(...cut2.fsynced);
      await fsckMain(disks);

      const last = await bootGuest(disks, {
        checks: ["verify"],
        files: { "fsynced.txt": fsynced.join("\n") + "\n" },
      });
      report("boot 4 (after power cut)", last);
      assertChecks(last, [
        ...ROOT_CHECKS,
        "fsynced_files_verify",
        "server_replayed_after_power_cut",
      ]);
      await fsckMain(disks);
    } finally {
      await Deno.remove(disks.directory, { recursive: true });
    }
  },
});

Deno.test({
  name: "boot 5: rd.dm_remap=0 assembles nothing (root on the main disk itself)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const disks = await newGuestDisks();
    try {
      const run = await bootGuest(disks, {
        checks: ["disabled"],
        rootChecks: false,
        commandLine: "rd.dm_remap=0 root=/dev/vda",
      });
      report("boot 5 (rd.dm_remap=0)", run);
      assert.match(run.log, /dm-remap: disabled by rd\.dm_remap=0/);
      assertChecks(run, ["root_not_on_nbd", "no_root_daemon", "no_runtime_copy_in_run"]);
    } finally {
      await Deno.remove(disks.directory, { recursive: true });
    }
  },
});

Deno.test({
  name: "boot 6: a setup whose main disk is missing stops the boot with the reason",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const disks = await newGuestDisks();
    try {
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
    } finally {
      await Deno.remove(disks.directory, { recursive: true });
    }
  },
});

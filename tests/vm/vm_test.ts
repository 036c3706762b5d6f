/**
 * The Linux kernel as a client: each test boots Debian's kernel under qemu (TCG) with the
 * main disk and a spare as virtio disks, serves the setup in the guest with the bundle built
 * from this work tree, and attaches /dev/nbd0 with nbd-client. Bad sectors come from
 * dm-error segments in a dm-linear table over the main disk, swapped live. The guest side of
 * each scenario is tests/vm/guest/scenario_<name>.sh; docs/vm.md describes the harness.
 *
 * Needs root, qemu-system-x86_64 and the artefacts scripts/vm_setup.sh builds (it is run
 * here, once; it does nothing when its cache is current).
 */

import assert from "node:assert/strict";
import { assertChecks, bootVm, createImage, toolsDisk, type VmDisk, type VmRun } from "./vm.ts";

const MAIN_MIB = 256;
const SPARE_MIB = 64;
const FSYNCED_MARK = /DMREMAP-FSYNCED ([0-9a-f]{64} {2}\S+)/;
const SYNCED_FILES_BEFORE_CUT = 8;

interface Images {
  directory: string;
  disks: VmDisk[];
}

async function freshImages(): Promise<Images> {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-vm-" });
  await createImage(`${directory}/main.img`, MAIN_MIB);
  await createImage(`${directory}/spare.img`, SPARE_MIB);
  return {
    directory,
    disks: [
      { path: `${directory}/main.img`, serial: "main" },
      { path: `${directory}/spare.img`, serial: "spare" },
      toolsDisk(),
    ],
  };
}

async function withImages(body: (images: Images) => Promise<void>): Promise<void> {
  const images = await freshImages();
  try {
    await body(images);
  } finally {
    await Deno.remove(images.directory, { recursive: true });
  }
}

function report(name: string, run: VmRun): void {
  const boots = run.boots > 1 ? ` (booted ${run.boots} times: the first did not reach /init)` : "";
  console.log(
    `vm ${name}: ${(run.durationMs / 1000).toFixed(1)} s, ${run.checks.length} checks${boots}`,
  );
  for (const check of run.checks) {
    if (check.check.startsWith("observe:") || check.check.startsWith("perf:")) {
      console.log(`  ${check.check}: ${JSON.stringify(check.detail)}`);
    }
  }
}

/** A stall is reported with its evidence once; waiting for the VM's timeout after it shows nothing more. */
function stopAtStall(line: string): "kill" | undefined {
  return line.includes('"check":"io_stall"') ? "kill" : undefined;
}

/** Every scenario that runs to its end reports these; io_watch: no I/O stalled, no timeout. */
const SERVE_CHECKS = ["dm_main", "serve", "nbd_attach", "serve_stop", "io_watch"];

Deno.test("vm 1: ext4 on /dev/nbd0 (unix socket, -b 4096, -C 2): a tree of files verifies after umount", async () => {
  await withImages(async ({ disks }) => {
    const run = await bootVm({ scenario: "basic", disks });
    report("basic", run);
    assertChecks(run, [
      ...SERVE_CHECKS,
      "create",
      "mkfs",
      "write_tree",
      "verify_after_remount",
      "negative_control",
      "connections",
      "e2fsck",
      "dmesg_clean",
    ]);
  });
});

Deno.test("vm 2: the main disk goes bad under a mounted fs being written: no error reaches it", async () => {
  await withImages(async ({ disks }) => {
    const run = await bootVm({ scenario: "faults", disks });
    report("faults", run);
    assertChecks(run, [
      ...SERVE_CHECKS,
      "set_bad",
      "written_after_fault",
      "writer_no_errors",
      "status_shows_remaps",
      "after_fault_files",
      "verify_after_fault",
      "before_fault_files_eio_or_intact",
      "verify_after_remount",
      "e2fsck",
      "dmesg_no_write_errors",
    ]);
  });
});

Deno.test("vm 3: power cut (qemu killed) mid-write: e2fsck is clean, every fsynced file verifies", async () => {
  await withImages(async ({ disks }) => {
    const fsynced: string[] = [];
    let syncedCount = 0;
    const first = await bootVm({
      scenario: "powercut1",
      disks,
      onLine(line) {
        const match = FSYNCED_MARK.exec(line);
        if (!match) return undefined;
        fsynced.push(match[1]!);
        if (match[1]!.includes("synced/")) syncedCount += 1;
        return syncedCount >= SYNCED_FILES_BEFORE_CUT ? "kill" : undefined;
      },
    });
    report("powercut1", first);
    assert.ok(first.killed && !first.timedOut, `the first boot was not cut:\n${first.log}`);
    assertChecks(first, ["serve", "nbd_attach", "write_base", "bad_ranges", "set_bad"], {
      done: false,
    });
    const ranges = first.checks.find((check) => check.check === "bad_ranges")!.detail;
    const second = await bootVm({
      scenario: "powercut2",
      disks,
      params: [`RANGES ${ranges}`, ...fsynced].join("\n") + "\n",
    });
    report("powercut2", second);
    assertChecks(second, [
      "fsynced_files",
      "spare_check_after_cut",
      ...SERVE_CHECKS,
      "replay",
      "e2fsck",
      "verify_fsynced",
      "remaps_survived",
      "dmesg_no_write_errors",
    ]);
  });
});

Deno.test("vm 4: serve restarts under a mounted fs: fsynced data and the fs survive; kernel behaviour reported", async () => {
  await withImages(async ({ disks }) => {
    const run = await bootVm({ scenario: "restart", disks });
    report("restart", run);
    assertChecks(run, [
      ...SERVE_CHECKS,
      "netlink:restart",
      "netlink:detached",
      "ioctl:attach",
      "ioctl:restart",
      "ioctl:detached",
      "reattach",
      "replay",
      "e2fsck",
      "verify_fsynced_before_stop",
    ]);
  });
});

Deno.test("vm 8: serve attaches /dev/nbd0 itself under a reader from the first moment; kill -9 and restarts under a mounted fs: no I/O error", async () => {
  await withImages(async ({ disks }) => {
    // scripts/vm_attach_cycles.sh runs longer series (docs/vm.md).
    const cycles = Number(Deno.env.get("DMREMAP_ATTACH_CYCLES") ?? 3);
    const run = await bootVm({
      scenario: "attach",
      disks,
      params: String(cycles),
      timeoutMs: 900_000 + cycles * 60_000,
    });
    report("attach", run);
    // One line per restart and per attach under a reader, for scripts/vm_attach_cycles.sh and docs/vm.md.
    for (
      const check of run.checks.filter((check) => /restart|reader_attach/.test(check.check))
    ) {
      console.log(`  ${check.check} ${check.ok}: ${String(check.detail).replace(/\s+/g, " ")}`);
    }
    assertChecks(run, [
      "dm_main",
      "create",
      "reader_attach_1",
      "reader_attach_2",
      "reader_attach_3",
      "serve",
      "nbd_attach",
      "backend",
      "runtime_state",
      "api_device",
      "mount",
      ...Array.from({ length: cycles }, (_, i) => `kill9_restart_${i + 1}`),
      "sigterm_restart_next_build",
      "kept_attached_on_sigterm",
      "writer_never_failed",
      "no_io_errors",
      "verify_fsynced",
      "e2fsck",
      "stop_refused_while_mounted",
      "stop_detaches",
      "detached_on_stop",
      "io_watch",
    ]);
  });
});

Deno.test("vm 9: assemble --scan from the disks alone: a dd clone and a stranger refused untouched, one serve started, restarted", async () => {
  await withImages(async ({ directory, disks }) => {
    await createImage(`${directory}/clone.img`, SPARE_MIB);
    await createImage(`${directory}/other.img`, MAIN_MIB);
    const run = await bootVm({
      scenario: "assemble",
      disks: [
        ...disks,
        { path: `${directory}/clone.img`, serial: "clone" },
        { path: `${directory}/other.img`, serial: "other" },
      ],
      // A run at load 15-20 on 2 CPUs (TCG) reached only the 8th check in 600 s.
      timeoutMs: 900_000,
    });
    report("assemble", run);
    assertChecks(run, [
      "dm_main",
      "create",
      "refuse_dd_clone",
      "clone_untouched",
      "refuse_other_identity",
      "other_untouched",
      "dm_main_again",
      "dry_run_starts_nothing",
      "two_assembles_start_once",
      "assemble_chose_nbd",
      "nbd_attach",
      "discover_device",
      "already_running",
      "mount",
      "write_before_kill",
      "killed",
      "assemble_restarts",
      "taken_back",
      "write_after_restart",
      "held_requests_answered",
      "verify",
      "e2fsck",
      "no_io_errors",
      "io_watch",
    ]);
  });
});

Deno.test("vm 10: the spare's disk is unplugged while serving: its remapped block is EIO, never the old copy", async () => {
  await withImages(async ({ disks }) => {
    const run = await bootVm({ scenario: "removal", disks });
    report("removal", run);
    assertChecks(run, [
      "dm_main",
      "create",
      "refused_without_capability",
      "serve",
      "write_old",
      "write_new",
      "remapped",
      "main_readable_again",
      "read_new",
      "remove_spare",
      "read_remapped_is_eio",
      "read_unremapped",
      "write_unremapped",
      "status_degraded",
      "io_watch",
    ]);
  });
});

Deno.test("vm 11: the main disk is unplugged while serving: EIO, the setup failed, nothing remapped", async () => {
  await withImages(async ({ disks }) => {
    const run = await bootVm({ scenario: "main_removal", disks });
    report("main_removal", run);
    assertChecks(run, [
      "create",
      "serve",
      "write_before",
      "remove_main",
      "read_is_eio",
      "write_is_eio",
      "read_elsewhere_is_eio",
      "status_failed",
      "nothing_remapped",
      "io_watch",
    ]);
  });
});

Deno.test("vm 5: a block written before it went bad reads as EIO, is pending, and a write heals it", async () => {
  await withImages(async ({ disks }) => {
    const run = await bootVm({ scenario: "readerr", disks });
    report("readerr", run);
    assertChecks(run, [
      ...SERVE_CHECKS,
      "write_old",
      "set_bad",
      "read_bad_is_eio",
      "read_span_is_eio",
      "read_neighbours",
      "status_pending",
      "heal_write",
      "read_healed",
      "status_healed",
      "dmesg_shows_eio",
    ]);
  });
});

Deno.test("vm 6: a server frozen under I/O is reported as an I/O stall, with where its threads wait", async () => {
  await withImages(async ({ disks }) => {
    const run = await bootVm({ scenario: "stall", disks });
    report("stall", run);
    const outcome = (name: string) => run.checks.find((check) => check.check === name);
    assert.equal(outcome("io_stall")?.ok, false, `no stall was reported:\n${run.log}`);
    assert.match(String(outcome("io_stall")!.detail), /thread \d+ .* wchan/);
    assert.equal(outcome("io_watch")?.ok, false, "the watch fails the run");
    const rest = run.checks.filter((check) => !["io_stall", "io_watch"].includes(check.check));
    assertChecks({ ...run, checks: rest }, [
      ...SERVE_CHECKS.filter((name) => name !== "io_watch"),
      "read_after_resume",
    ]);
  });
});

Deno.test("vm 7: a partition of the main disk and the disk of a main partition are refused as spares, nothing written", async () => {
  await withImages(async ({ disks }) => {
    const run = await bootVm({ scenario: "overlap", disks });
    report("overlap", run);
    assertChecks(run, [
      "partition",
      "refuse_partition_as_spare",
      "refuse_disk_as_spare_of_its_partition",
      "disk_unchanged",
      "io_watch",
    ]);
  });
});

Deno.test("vm 14: the scanner relocates a dm-delay and a dm-flakey region under ext4; after they die the fs sees no error", async () => {
  await withImages(async ({ disks }) => {
    // The passes may take up to 12 minutes under load (scenario_scan.sh).
    const run = await bootVm({ scenario: "scan", disks, timeoutMs: 1_260_000 });
    report("scan", run);
    assertChecks(run, [
      ...SERVE_CHECKS,
      "mkfs",
      "mount",
      "write_base",
      "write_slow",
      "write_flaky",
      "sync",
      "locate_slow",
      "locate_flaky",
      "first_pass",
      "set_faulty",
      "relocated",
      "set_dead",
      "verify_files",
      "umount",
      "e2fsck",
      "dmesg_clean",
    ]);
  });
});

Deno.test("vm 13: serve reads and reports SMART of an IDE disk under a dm main disk and an NVMe spare", async () => {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-vm-" });
  try {
    await createImage(`${directory}/main.img`, MAIN_MIB);
    await createImage(`${directory}/spare.img`, SPARE_MIB);
    const run = await bootVm({
      scenario: "smart",
      disks: [
        { path: `${directory}/main.img`, serial: "QM-MAIN-0001", bus: "ide" },
        { path: `${directory}/spare.img`, serial: "QM-NVME-0002", bus: "nvme" },
        toolsDisk(),
      ],
    });
    report("smart", run);
    assertChecks(run, [
      "disks_present",
      "guest_smartctl_sata",
      "guest_smartctl_nvme",
      "dm_main",
      "create",
      "serve",
      "server_reports_smart",
      "no_smart_errors_logged",
      "serve_stop",
    ]);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("vm ublk 1: ext4 on /dev/ublkb0 (6.12, io_uring, 2 queues): files verify, live defects are remapped", async () => {
  await withImages(async ({ disks }) => {
    const run = await bootVm({
      scenario: "ublk",
      disks,
      kernel: "trixie",
      timeoutMs: 420_000,
      onLine: stopAtStall,
    });
    report("ublk", run);
    assertChecks(run, [
      "ublk_control",
      "dm_main",
      "create",
      "serve",
      "ublk_device",
      "api_device",
      "discover_device",
      "mkfs",
      "write_tree",
      "verify_after_remount",
      "set_bad",
      "write_over_bad",
      "verify_over_bad",
      "status_shows_remaps",
      "dmesg_clean",
      "stop_refused_while_mounted",
      "e2fsck",
      "dmremap_stop",
      "serve_stop",
      "device_removed",
      "io_watch",
    ]);
  });
});

Deno.test("vm ublk 3: power cut (qemu killed) mid-write on /dev/ublkb0, which assemble chose: e2fsck is clean, every fsynced file verifies", async () => {
  await withImages(async ({ disks }) => {
    const fsynced: string[] = [];
    let syncedCount = 0;
    const first = await bootVm({
      scenario: "ublk_powercut1",
      disks,
      kernel: "trixie",
      // 395 s in a run at load 15 on 2 CPUs (TCG): room for a busier host.
      timeoutMs: 600_000,
      onLine(line) {
        const match = FSYNCED_MARK.exec(line);
        if (!match) return stopAtStall(line);
        fsynced.push(match[1]!);
        if (match[1]!.includes("synced/")) syncedCount += 1;
        return syncedCount >= SYNCED_FILES_BEFORE_CUT ? "kill" : undefined;
      },
    });
    report("ublk_powercut1", first);
    assert.ok(first.killed && !first.timedOut, `the first boot was not cut:\n${first.log}`);
    assert.ok(syncedCount >= SYNCED_FILES_BEFORE_CUT, `cut before the fsyncs:\n${first.log}`);
    assertChecks(first, ["dm_main", "create", "assemble_chose_ublk", "write_base", "set_bad"], {
      done: false,
    });
    const ranges = first.checks.find((check) => check.check === "bad_ranges")!.detail;
    const second = await bootVm({
      scenario: "ublk_powercut2",
      disks,
      kernel: "trixie",
      timeoutMs: 420_000,
      params: [`RANGES ${ranges}`, ...fsynced].join("\n") + "\n",
      onLine: stopAtStall,
    });
    report("ublk_powercut2", second);
    for (const check of second.checks) {
      if (
        /^(fsynced_files|verify_fsynced|remaps_survived|dmesg_no_write_errors)$/.test(check.check)
      ) {
        console.log(
          `  ${check.check} ${check.ok ? "ok" : "FAILED"}: ${JSON.stringify(check.detail)}`,
        );
      }
    }
    assertChecks(second, [
      "fsynced_files",
      "spare_check_after_cut",
      "dm_main",
      "assemble_chose_ublk",
      "replay",
      "e2fsck",
      "verify_fsynced",
      "remaps_survived",
      "status_device",
      "dmesg_no_write_errors",
      "dmremap_stop",
      "device_removed",
      "io_watch",
    ]);
  });
});

/**
 * kill -9 cycles of vm ublk 2: 3 in the suite, to keep it under its time budget;
 * scripts/vm_ublk_recovery_cycles.sh runs 10 (the series docs/ublk.md quotes).
 */
const UBLK_CYCLES = Number(Deno.env.get("DMREMAP_UBLK_CYCLES") ?? 3);

Deno.test("vm ublk 2: kill -9 of the ublk server under a writer, 3 times (or DMREMAP_UBLK_CYCLES), restarted with the unit's serve NAME --export --adopt: ublk chosen, recovered, no error, every fsynced file verifies; without recovery the I/O fails", async () => {
  await withImages(async ({ disks }) => {
    const run = await bootVm({
      scenario: "ublk_recovery",
      disks,
      kernel: "trixie",
      params: String(UBLK_CYCLES),
      timeoutMs: 360_000 + UBLK_CYCLES * 60_000,
      onLine: stopAtStall,
    });
    report("ublk_recovery", run);
    // Each cycle's line (scripts/vm_ublk_recovery_cycles.sh collects them for docs/ublk.md).
    for (const check of run.checks) {
      if (
        /^(no_recovery_kill9_fails_io|kill9_restart_\d+|writer_ok|verify_fsynced|dmesg_clean)$/
          .test(check.check)
      ) {
        console.log(
          `  ${check.check} ${check.ok ? "ok" : "FAILED"}: ${JSON.stringify(check.detail)}`,
        );
      }
    }
    assertChecks(run, [
      "dm_main",
      "create",
      "no_recovery_kill9_fails_io",
      "serve",
      "dead_device_replaced",
      "mkfs",
      ...Array.from({ length: UBLK_CYCLES }, (_, i) => `kill9_restart_${i + 1}`),
      "writer_ok",
      "verify_fsynced",
      "e2fsck",
      "dmesg_clean",
      "serve_stop",
      "device_removed",
      "io_watch",
    ]);
  });
});

Deno.test("vm perf: fio on /dev/nbd0 against the raw virtio disk (reported, not asserted)", async () => {
  await withImages(async ({ disks }) => {
    const run = await bootVm({ scenario: "perf", disks });
    report("perf", run);
    assertChecks(run, SERVE_CHECKS);
    const iops = new Map<string, number>();
    for (const check of run.checks) {
      const detail = check.detail as { iops?: number; kibPerSecond?: number };
      if (check.check.startsWith("perf:")) iops.set(check.check.slice(5), detail.kibPerSecond ?? 0);
    }
    for (const job of ["randread4k", "randwrite4k", "read1m", "write1m"]) {
      const raw = iops.get(`${job}:vda`) ?? 0;
      const nbd = iops.get(`${job}:nbd0`) ?? 0;
      console.log(
        `  ${job}: nbd0 ${nbd} KiB/s, raw virtio ${raw} KiB/s, nbd/raw ${(nbd / raw).toFixed(3)}`,
      );
    }
  });
});

Deno.test("vm ublk perf: fio on /dev/ublkb0, /dev/nbd0 and the raw virtio disk, 6.12 (reported, not asserted)", async () => {
  await withImages(async ({ disks }) => {
    const run = await bootVm({
      scenario: "ublk_perf",
      disks,
      kernel: "trixie",
      timeoutMs: 600_000,
      onLine: stopAtStall,
    });
    assertChecks(run, ["dm_main", "create", "serve", "nbd_attach", "profile", "serve_stop"]);
    type PerfDetail = {
      kibPerSecond?: number;
      serverCpuUsPerRequest?: number;
      perfTaskClockUsPerRequest?: number | null;
      perfCyclesPerRequest?: number | null;
      perfCycles?: number | string;
    };
    const perf = new Map<string, PerfDetail>();
    for (const check of run.checks) {
      if (check.check.startsWith("perf:")) {
        perf.set(check.check.slice(5), check.detail as PerfDetail);
      }
    }
    const jobs = ["randread4k-qd1", "randread4k-qd32", "randwrite4k-qd1", "randwrite4k-qd32"]
      .concat(["read1m", "write1m"]);
    const rows = jobs.map((job) => {
      const [raw, nbd, ublk] = ["vda", "nbd0", "ublkb0"].map((dev) =>
        perf.get(`${job}:${dev}`) ?? {}
      );
      return {
        job,
        rawKiBps: raw!.kibPerSecond ?? 0,
        nbdKiBps: nbd!.kibPerSecond ?? 0,
        ublkKiBps: ublk!.kibPerSecond ?? 0,
        ublkOverNbd: (ublk!.kibPerSecond ?? 0) / (nbd!.kibPerSecond ?? 0),
        ublkOverRaw: (ublk!.kibPerSecond ?? 0) / (raw!.kibPerSecond ?? 0),
        // The server's CPU time per request (/proc/PID/stat); on the raw disk it is idle.
        nbdServerCpuUsPerRequest: nbd!.serverCpuUsPerRequest,
        ublkServerCpuUsPerRequest: ublk!.serverCpuUsPerRequest,
        idleServerCpuUsPerRawRequest: raw!.serverCpuUsPerRequest,
        // The same from perf stat -p: task-clock (µs) and cycles per request.
        nbdPerfTaskClockUsPerRequest: nbd!.perfTaskClockUsPerRequest,
        ublkPerfTaskClockUsPerRequest: ublk!.perfTaskClockUsPerRequest,
        idlePerfTaskClockUsPerRawRequest: raw!.perfTaskClockUsPerRequest,
        nbdPerfCyclesPerRequest: nbd!.perfCyclesPerRequest,
        ublkPerfCyclesPerRequest: ublk!.perfCyclesPerRequest,
        perfCycles: ublk!.perfCycles,
      };
    });
    // perf stat counted the server on every device: a figure missing means perf did not run.
    for (const row of rows) {
      assert.ok(
        typeof row.ublkPerfTaskClockUsPerRequest === "number" &&
          typeof row.nbdPerfTaskClockUsPerRequest === "number",
        `perf stat gave no task-clock for ${row.job}: ${JSON.stringify(row)}\n${run.log}`,
      );
    }
    for (const row of rows) {
      console.log(
        `  ${row.job}: ublk ${row.ublkKiBps} KiB/s, nbd ${row.nbdKiBps}, raw ${row.rawKiBps}; ` +
          `ublk/nbd ${row.ublkOverNbd.toFixed(3)}, ublk/raw ${row.ublkOverRaw.toFixed(3)}; ` +
          `server CPU µs/request: ublk ${row.ublkServerCpuUsPerRequest}, ` +
          `nbd ${row.nbdServerCpuUsPerRequest} (idle during raw: ${row.idleServerCpuUsPerRawRequest}); ` +
          `perf task-clock µs/request: ublk ${row.ublkPerfTaskClockUsPerRequest}, ` +
          `nbd ${row.nbdPerfTaskClockUsPerRequest} (idle ${row.idlePerfTaskClockUsPerRawRequest}); ` +
          `cycles/request: ublk ${row.ublkPerfCyclesPerRequest}, nbd ${row.nbdPerfCyclesPerRequest}` +
          ` (${row.perfCycles})`,
      );
    }
    const profile = String(run.checks.find((check) => check.check === "profile")!.detail);
    console.log(`  perf record -g, 4K QD32 random read on ublkb0:\n${profile}`);
    // scripts/bench_ublk.sh names the file the rows go to (bench/results/).
    const out = Deno.env.get("UBLK_BENCH_JSON");
    if (out) {
      await Deno.writeTextFile(
        out,
        JSON.stringify({ kernel: "trixie 6.12 (TCG)", rows }, null, 2) + "\n",
      );
      await Deno.writeTextFile(out.replace(/\.json$/, "-profile.txt"), profile + "\n");
    }
  });
});

Deno.test("vm harness: a failed, missing or unfinished check fails the test and shows the guest log", () => {
  const base: VmRun = {
    checks: [{ check: "a", ok: true, detail: "" }],
    done: true,
    log: "GUEST-LOG-TEXT",
    killed: false,
    timedOut: false,
    initNotReached: false,
    boots: 1,
    durationMs: 1,
  };
  assertChecks(base, ["a"]);
  assert.throws(
    () =>
      assertChecks({ ...base, checks: [{ check: "a", ok: false, detail: "wrong sum" }] }, ["a"]),
    /check "a" failed: "wrong sum"[\s\S]*GUEST-LOG-TEXT/,
  );
  assert.throws(() => assertChecks(base, ["a", "b"]), /check "b" was never reported/);
  assert.throws(() => assertChecks({ ...base, done: false }, ["a"]), /did not print DMREMAP-DONE/);
  // The problems also follow the log: a CI log cut to its tail shows them.
  assert.throws(() => assertChecks(base, ["a", "b"]), /GUEST-LOG-TEXT[\s\S]*never reported$/);
});

Deno.test("vm harness: a kernel that does not reach /init in time is booted twice, then fails", async () => {
  await withImages(async ({ disks }) => {
    const run = await bootVm({ scenario: "basic", disks, initDeadlineMs: 1 });
    assert.equal(run.boots, 2);
    assert.ok(run.initNotReached && run.timedOut && run.killed);
    assert.throws(() => assertChecks(run, []), /did not reach \/init, on either boot/);
  });
});

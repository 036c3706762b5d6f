# Scenario 13: SMART through qemu's emulated disks. The main disk is /dev/mapper/main, dm-linear
# over an IDE disk (/dev/sda, answered through libata's SAT layer), and the spare an NVMe
# namespace (/dev/nvme0n1); smartctl in the guest reads both disks, then `serve` reads them
# itself (its periodic SMART reader, through the dm device to the disk under it) and the status
# API must report the same disks: serial, protocol, temperature, the attributes. The metadata
# scrub on open must have run as well.
note start
SATA=/dev/sda
NVME=/dev/nvme0n1
check disks_present sh -c "[ -b $SATA ] && [ -b $NVME ] && ls /sys/block"
check guest_smartctl_sata sh -c "smartctl --json -a $SATA >/tmp/sata.json; grep -q '\"serial_number\": \"QM-MAIN-0001\"' /tmp/sata.json && grep -q '\"protocol\": \"ATA\"' /tmp/sata.json && cat /tmp/sata.json | head -c 600"
check guest_smartctl_nvme sh -c "smartctl --json -a $NVME >/tmp/nvme.json; grep -q '\"serial_number\": \"QM-NVME-0002\"' /tmp/nvme.json && grep -q nvme_smart_health_information_log /tmp/nvme.json && echo ok"
DISK_MAIN=$SATA DISK_SPARE=$NVME
check dm_main sh -c "DISK_MAIN=$SATA; $(declare_functions) main_table | dmsetup create main"
check create dmremap create "$SETUP" --main "$MAIN" --spare "$NVME"
if serve_start --smart-interval 5 --scrub-interval 5; then result serve true "$(cat /tmp/serve.log)"; else
  result serve false "$(cat /tmp/serve.log)"
  return 1
fi
# The first SMART round runs in the background: wait until the status shows it.
# Each `status` run starts Deno (seconds under TCG): bound the wait by time, not by tries.
deadline=$(($(date +%s) + 90))
until status_json >/tmp/status.json 2>/dev/null && grep -q '"rounds": [1-9]' /tmp/status.json; do
  [ "$(date +%s)" -ge $deadline ] && break
  sleep 0.5
done
cat >/tmp/judge.ts <<'JUDGE'
// Compares what the server reported with what smartctl printed in the guest.
const status = JSON.parse(Deno.readTextFileSync("/tmp/status.json"));
const sata = JSON.parse(Deno.readTextFileSync("/tmp/sata.json"));
const nvme = JSON.parse(Deno.readTextFileSync("/tmp/nvme.json"));
const problems: string[] = [];
const smart = status.health?.smart;
if (!smart) problems.push("no health.smart in the status");
const byRole = new Map((smart?.disks ?? []).map((disk: { role: string }) => [disk.role, disk]));
const main = byRole.get("main") as any;
const spare = byRole.get("spare 0") as any;
const expect = (what: string, got: unknown, want: unknown) => {
  if (got !== want) problems.push(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
};
expect("main disk", main?.path, "/dev/sda");
expect("main under", main?.under, "/dev/mapper/main");
expect("main state", main?.reading?.state, "ok");
expect("main protocol", main?.reading?.protocol, "ata");
expect("main kind", main?.reading?.kind, "hdd");
expect("main serial", main?.reading?.serial, sata.serial_number);
expect("main model", main?.reading?.model, sata.model_name);
expect("main temperature", main?.reading?.temperatureC, sata.temperature?.current);
expect("main attribute 5", main?.reading?.counters?.reallocatedSectors,
  sata.ata_smart_attributes.table.find((a: { id: number }) => a.id === 5)?.raw?.value);
expect("main risk", main?.risk?.level, "none");
expect("spare state", spare?.reading?.state, "ok");
expect("spare protocol", spare?.reading?.protocol, "nvme");
expect("spare serial", spare?.reading?.serial, nvme.serial_number);
expect("spare media errors", spare?.reading?.counters?.mediaErrors,
  nvme.nvme_smart_health_information_log.media_errors);
expect("spare percentage used", spare?.reading?.counters?.percentageUsed,
  nvme.nvme_smart_health_information_log.percentage_used);
expect("scrub on open", status.health?.scrub?.passes >= 1, true);
expect("scrub state", status.health?.scrub?.spares?.[0]?.state, "ok");
expect("forecast", status.health?.forecast?.state, "no-trend");
const seen = (disk: any) => ({
  role: disk?.role, path: disk?.path, under: disk?.under, state: disk?.reading?.state, protocol: disk?.reading?.protocol,
  serial: disk?.reading?.serial, temperatureC: disk?.reading?.temperatureC,
  counters: disk?.reading?.counters, risk: disk?.risk?.level,
});
Deno.writeTextFileSync("/tmp/judge.out", JSON.stringify({ main: seen(main), spare: seen(spare) }));
if (problems.length > 0) {
  console.log(problems.join("\n"));
  Deno.exit(1);
}
JUDGE
check server_reports_smart deno run -A /tmp/judge.ts
observe smart_reported "$(cat /tmp/judge.out 2>/dev/null)"
check no_smart_errors_logged sh -c "! grep -i 'smart' /tmp/serve.log"
serve_stop
note end

/**
 * Goal: one line per record, `key=value` that a program can split, levels
 * that filter and can change while running, and the `<N>` priority prefix
 * exactly when journald reads the output (sd-daemon(3)). Method: format
 * records and read the lines back.
 */

import assert from "node:assert/strict";
import { formatLogLine, StructuredLog } from "../../mod/log/structured_log.ts";

Deno.test("formatLogLine() quotes values with spaces, quotes and line feeds, so the line never splits", () => {
  const line = formatLogLine({
    level: "err",
    message: 'cannot read "/dev/sdb":\nEIO',
    fields: { setup: "big one", path: "/dev/sdb", block: 7, skipped: undefined, ok: false },
  }, { journal: false });
  assert.equal(
    line,
    'level=err setup="big one" path=/dev/sdb block=7 ok=false msg="cannot read \\"/dev/sdb\\":\\nEIO"',
  );
  assert.ok(!line.includes("\n"));
});

Deno.test("formatLogLine() prefixes the syslog priority for journald", () => {
  const priorities = (["err", "warning", "notice", "info", "debug"] as const).map((level) =>
    formatLogLine({ level, message: "m" }, { journal: true }).slice(0, 3)
  );
  assert.deepEqual(priorities, ["<3>", "<4>", "<5>", "<6>", "<7>"]);
});

Deno.test("StructuredLog drops records below its level, and a child follows its parent's level", () => {
  const lines: string[] = [];
  const log = new StructuredLog({
    write: (line) => lines.push(line),
    journal: false,
    level: "notice",
  });
  const child = log.with({ setup: "big" });
  child.log({ level: "info", message: "quiet" });
  child.log({ level: "warning", message: "loud" });
  log.level = "debug";
  child.log({ level: "debug", message: "now shown" });
  assert.deepEqual(lines, [
    "level=warning setup=big msg=loud",
    'level=debug setup=big msg="now shown"',
  ]);
});

Deno.test("StructuredLog writes journald priorities when JOURNAL_STREAM is set", async () => {
  const script = `
    import { StructuredLog } from "${
    new URL("../../mod/log/structured_log.ts", import.meta.url).href
  }";
    new StructuredLog({ write: (line) => console.log(line) }).log({ level: "warning", message: "w" });
  `;
  async function run(env: Record<string, string>): Promise<string> {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["eval", script],
      env,
      clearEnv: true,
      stdout: "piped",
    }).output();
    return new TextDecoder().decode(output.stdout).trim();
  }
  assert.equal(await run({ JOURNAL_STREAM: "8:12345" }), "<4>level=warning msg=w");
  assert.equal(await run({}), "level=warning msg=w");
});

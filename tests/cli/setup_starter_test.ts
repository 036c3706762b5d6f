/**
 * How `assemble` chooses to start setups: as systemd units only on a system
 * systemd runs that is not an initrd. In dracut's initrd systemd runs too, but
 * the real system's units are not there: the server must start directly.
 *
 * Method: startsUnits on temporary trees with and without systemd's run
 * directory and /etc/initrd-release (this host has `systemctl`).
 */

import assert from "node:assert/strict";
import { startsUnits } from "../../mod/cli/setup_starter.ts";

async function tree(paths: string[]): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "dm-remap-starter-" });
  for (const path of paths) {
    await Deno.mkdir(`${root}/${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
    await Deno.writeTextFile(`${root}/${path}`, "");
  }
  return `${root}/`;
}

Deno.test("startsUnits: units under systemd, never in an initrd, nor without systemd", async () => {
  const booted = await tree(["run/systemd/system/.keep"]);
  const initrd = await tree(["run/systemd/system/.keep", "etc/initrd-release"]);
  const plain = await tree(["etc/os-release"]);
  try {
    assert.equal(await startsUnits(booted), true);
    assert.equal(await startsUnits(initrd), false);
    assert.equal(await startsUnits(plain), false);
  } finally {
    for (const root of [booted, initrd, plain]) await Deno.remove(root, { recursive: true });
  }
});

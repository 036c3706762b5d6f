/**
 * smartDisksOf(): the disks SMART is read from for a setup's path. Partitions,
 * dm and md devices (a fake sysfs tree with real device nodes, as
 * storage_stack_test.ts uses) are read through the disks under them; a loop
 * device, an image file and a path that does not exist are read as given.
 */

import assert from "node:assert/strict";
import { smartDisksOf } from "../../mod/health/smart_disks.ts";
import { attachLoopDevice, fakeTree, makeSparseImage } from "../device/fixtures.ts";

Deno.test("smartDisksOf() reads dm and md devices and partitions through the disks under them", async () => {
  const tree = await fakeTree();
  try {
    const disksOf = (name: string) =>
      smartDisksOf(`${tree.nodes}/${name}`, { sysfsRoot: tree.root });
    const rows: [name: string, disks: string[]][] = [
      ["sdz", [`${tree.nodes}/sdz`]], // a whole disk: as given
      ["sdz1", ["/dev/sdz"]], // a partition: its disk
      ["dm-7", ["/dev/sdz"]], // an LVM volume on a partition: the disk
      ["dm-9", ["/dev/sdz"]], // a linear map of a whole disk
      ["md9", ["/dev/sdz", "/dev/sdy"]], // a RAID over a partition and a disk: both disks
    ];
    // The order of slaves/ is the directory's: compared as sets.
    for (const [name, disks] of rows) {
      assert.deepEqual((await disksOf(name)).sort(), disks.sort(), name);
    }
  } finally {
    await tree.cleanup();
  }
});

Deno.test("smartDisksOf() reads a loop device as given, not the disk under its file", async () => {
  const image = await makeSparseImage(16 * 1024 * 1024);
  const loop = await attachLoopDevice(image.path);
  try {
    assert.deepEqual(await smartDisksOf(loop.path), [loop.path]);
  } finally {
    await loop.detach();
    await image.cleanup();
  }
});

Deno.test("smartDisksOf() reads a file or a missing path as given", async () => {
  const image = await makeSparseImage(1024 * 1024);
  try {
    assert.deepEqual(await smartDisksOf(image.path), [image.path]);
  } finally {
    await image.cleanup();
  }
  assert.deepEqual(await smartDisksOf("/nonexistent/disk"), ["/nonexistent/disk"]);
});

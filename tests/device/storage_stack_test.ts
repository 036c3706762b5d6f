/**
 * storageStackOf() and overlapOf(): which two devices can share sectors.
 *
 * Goal: a device is compared by what it is and what it lies on, never by its
 * path: partitions and their disk, dm and md devices and what they are
 * stacked on, loop devices and their files overlap; two partitions of one
 * disk, two LVM volumes on one disk and two files in one filesystem do not.
 * Method: device nodes made with mknod (numbers no real device here uses;
 * they are only stat'ed, never opened) over a fake sysfs tree laid out as
 * the kernel lays it out; real loop devices for the loop rows; real files.
 */

import assert from "node:assert/strict";
import {
  deviceNumberOf,
  overlapOf,
  type StorageStack,
  storageStackOf,
} from "../../mod/device/storage_stack.ts";
import { attachLoopDevice, fakeTree, makeSparseImage } from "./fixtures.ts";

function named(name: string, stack: StorageStack) {
  return { name: `"${name}"`, stack };
}

Deno.test("overlapOf() over partitions, dm and md devices: one row per pair", async () => {
  const tree = await fakeTree();
  try {
    const stackOf = async (name: string) =>
      named(name, await storageStackOf(`${tree.nodes}/${name}`, { sysfsRoot: tree.root }));
    const rows: [a: string, b: string, expected: string | undefined][] = [
      ["sdz", "sdz1", `"sdz1" is a partition of "sdz"`],
      ["sdz1", "sdz", `"sdz1" is a partition of "sdz"`],
      ["sdz1", "sdz2", undefined],
      ["dm-7", "sdz1", `"dm-7" is a device-mapper or md device stacked on "sdz1"`],
      ["sdz", "dm-7", `"dm-7" lies on "sdz" (through /dev/sdz1)`],
      ["dm-7", "dm-8", undefined],
      [
        "dm-9",
        "sdz2",
        `"dm-9" and "sdz2" both lie on /dev/sdz, which a device-mapper or md device maps ` +
        `whole, so they may share sectors`,
      ],
      ["md9", "sdy", `"md9" is a device-mapper or md device stacked on "sdy"`],
      ["md9", "sdz", `"md9" lies on "sdz" (through /dev/sdz2)`],
      ["md9", "sdz1", undefined],
      ["sdy", "sdz", undefined],
    ];
    for (const [a, b, expected] of rows) {
      assert.equal(overlapOf(await stackOf(a), await stackOf(b)), expected, `${a} and ${b}`);
    }
  } finally {
    await tree.cleanup();
  }
});

Deno.test("storageStackOf() names a block device by its number, whatever node or link names it", async () => {
  const tree = await fakeTree();
  try {
    await Deno.symlink(`${tree.nodes}/sdz1`, `${tree.nodes}/by-id-link`);
    const direct = await storageStackOf(`${tree.nodes}/sdz1`, { sysfsRoot: tree.root });
    const linked = await storageStackOf(`${tree.nodes}/by-id-link`, { sysfsRoot: tree.root });
    assert.equal(direct.top.key, "block 240:1");
    assert.equal(linked.top.key, direct.top.key);
    assert.deepEqual(direct.below.map((link) => [link.node.label, link.via]), [
      ["/dev/sdz", "partition"],
    ]);
    assert.equal(
      overlapOf(named("a", direct), named("b", linked)),
      `"a" and "b" are the same block device (device number 240:1)`,
    );
  } finally {
    await tree.cleanup();
  }
});

Deno.test("storageStackOf() of a file: device and inode, and the disk of its filesystem when sysfs has one", async () => {
  const image = await makeSparseImage(1024 * 1024);
  try {
    const info = await Deno.stat(image.path);
    const stack = await storageStackOf(image.path);
    assert.equal(stack.top.key, `file ${deviceNumberOf(info.dev)}:${info.ino}`);
    const holder = `/sys/dev/block/${deviceNumberOf(info.dev)}`;
    const hasDisk = await Deno.stat(holder).then(() => true, () => false);
    assert.deepEqual(
      stack.below.filter((link) => link.via === "filesystem").map((link) => link.node.key),
      hasDisk ? [`block ${deviceNumberOf(info.dev)}`] : [],
    );
    const copy = `${image.path}.copy`;
    await Deno.copyFile(image.path, copy);
    assert.equal(
      overlapOf(named("a", stack), named("b", await storageStackOf(copy))),
      undefined,
      "a copy is another file",
    );
  } finally {
    await image.cleanup();
  }
});

Deno.test("overlapOf() of loop devices: over the file itself, and two over one file", async () => {
  const image = await makeSparseImage(4 * 1024 * 1024);
  const first = await attachLoopDevice(image.path);
  const second = await attachLoopDevice(image.path);
  try {
    const file = named("file", await storageStackOf(image.path));
    const a = named("first", await storageStackOf(first.path));
    const b = named("second", await storageStackOf(second.path));
    assert.equal(overlapOf(file, a), `"first" is a loop device over "file"`);
    assert.equal(
      overlapOf(a, b),
      `"first" and "second" are both loop devices over the file "${image.path}"`,
    );
  } finally {
    await second.detach();
    await first.detach();
    await image.cleanup();
  }
});

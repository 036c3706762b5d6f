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
import { attachLoopDevice, makeSparseImage } from "./fixtures.ts";

/** Block devices of the fake tree: kernel name, number, where sysfs keeps it, what it lies on. */
const DEVICES: { name: string; number: string; directory: string; files?: string[] }[] = [
  { name: "sdz", number: "240:0", directory: "devices/pci0/block/sdz" },
  { name: "sdz1", number: "240:1", directory: "devices/pci0/block/sdz/sdz1", files: ["partition"] },
  { name: "sdz2", number: "240:2", directory: "devices/pci0/block/sdz/sdz2", files: ["partition"] },
  { name: "sdy", number: "240:16", directory: "devices/pci0/block/sdy" },
  { name: "dm-7", number: "241:7", directory: "devices/virtual/block/dm-7" },
  { name: "dm-8", number: "241:8", directory: "devices/virtual/block/dm-8" },
  { name: "dm-9", number: "241:9", directory: "devices/virtual/block/dm-9" },
  { name: "md9", number: "242:9", directory: "devices/virtual/block/md9" },
];

/** Who is stacked on whom: holder → slaves. */
const SLAVES: Record<string, string[]> = {
  "dm-7": ["sdz1"], // an LVM volume on the first partition
  "dm-8": ["sdz1"], // another volume on the same partition
  "dm-9": ["sdz"], // a linear map of the whole disk
  "md9": ["sdz2", "sdy"], // a RAID over a partition and a whole disk
};

async function fakeTree(): Promise<{ root: string; nodes: string; cleanup: () => Promise<void> }> {
  const root = await Deno.makeTempDir({ prefix: "dm-remap-stack-" });
  const sysfs = `${root}/sys`;
  const nodes = `${root}/dev`;
  await Deno.mkdir(`${sysfs}/dev/block`, { recursive: true });
  await Deno.mkdir(nodes);
  const byName = new Map(DEVICES.map((device) => [device.name, device]));
  for (const device of DEVICES) {
    const directory = `${sysfs}/${device.directory}`;
    await Deno.mkdir(`${directory}/slaves`, { recursive: true });
    await Deno.writeTextFile(`${directory}/dev`, `${device.number}\n`);
    for (const file of device.files ?? []) await Deno.writeTextFile(`${directory}/${file}`, "1\n");
    await Deno.symlink(`../../${device.directory}`, `${sysfs}/dev/block/${device.number}`);
    const [major, minor] = device.number.split(":");
    const made = await new Deno.Command("mknod", {
      args: [`${nodes}/${device.name}`, "b", major!, minor!],
    }).output();
    assert.ok(made.success, new TextDecoder().decode(made.stderr));
  }
  for (const [holder, slaves] of Object.entries(SLAVES)) {
    for (const slave of slaves) {
      await Deno.symlink(
        `${sysfs}/${byName.get(slave)!.directory}`,
        `${sysfs}/${byName.get(holder)!.directory}/slaves/${slave}`,
      );
    }
  }
  return { root: sysfs, nodes, cleanup: () => Deno.remove(root, { recursive: true }) };
}

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

/**
 * probeDeviceIdentity() on files, a real loop device, and fake sysfs trees.
 *
 * Goal: kind and size always; serial, WWN and model from wherever the kernel
 * puts them (virtio `serial`, NVMe `wwid`, SCSI `device/vpd_pg80`), and a
 * partition reporting its disk's. Method: a real loop device for the sysfs
 * path by major:minor, then fake trees under `sysfsRoot` for the attributes
 * that loop devices lack. The fake trees are keyed by the real major:minor of
 * the /dev/loop0 and /dev/loop1 nodes, which exist whether attached or not.
 *
 * @module
 */

import assert from "node:assert/strict";
import { canonicalPathOf, probeDeviceIdentity } from "../../mod/device/probe_device_identity.ts";
import { deviceNumberOf } from "../../mod/device/storage_stack.ts";
import { DeviceOpenError } from "../../mod/errors.ts";
import { attachLoopDevice, makeSparseImage } from "./fixtures.ts";

Deno.test("probeDeviceIdentity() of an image file gives its kind, size, device and inode", async () => {
  const image = await makeSparseImage(2 * 1024 * 1024);
  try {
    const info = await Deno.stat(image.path);
    assert.deepEqual(await probeDeviceIdentity(image.path), {
      kind: "file",
      sizeBytes: 2 * 1024 * 1024,
      deviceNumber: deviceNumberOf(info.dev),
      inode: info.ino,
    });
  } finally {
    await image.cleanup();
  }
});

Deno.test("probeDeviceIdentity() of a loop device gives kind block, its size and number, no serial", async () => {
  const image = await makeSparseImage(3 * 1024 * 1024);
  const loop = await attachLoopDevice(image.path);
  try {
    assert.deepEqual(await probeDeviceIdentity(loop.path), {
      kind: "block",
      sizeBytes: 3 * 1024 * 1024,
      deviceNumber: majorMinorOf(loop.path),
    });
  } finally {
    await loop.detach();
    await image.cleanup();
  }
});

Deno.test("probeDeviceIdentity() of a missing path or a character device is DeviceOpenError", async () => {
  for (const [path, code] of [["/nonexistent/disk", "ENOENT"], ["/dev/null", "EINVAL"]]) {
    await assert.rejects(() => probeDeviceIdentity(path!), (error) => {
      assert.ok(error instanceof DeviceOpenError, path);
      assert.equal(error.code, code, path);
      assert.ok(error.message.startsWith(`Cannot open "${path}"`), error.message);
      return true;
    });
  }
});

/** Writes files of a fake sysfs tree: path relative to the root → contents. */
async function writeTree(root: string, files: Record<string, string | Uint8Array>): Promise<void> {
  for (const [relative, contents] of Object.entries(files)) {
    const path = `${root}/${relative}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    if (typeof contents === "string") await Deno.writeTextFile(path, contents);
    else await Deno.writeFile(path, contents);
  }
}

function majorMinorOf(path: string): string {
  const rdev = BigInt(Deno.statSync(path).rdev!);
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

Deno.test("probeDeviceIdentity() reads serial, WWN and model wherever sysfs keeps them", async () => {
  const vpdPage = new Uint8Array([
    0x00,
    0x80,
    0x00,
    0x0c,
    ...new TextEncoder().encode("  ZA1234567 "),
  ]);
  const rows: { name: string; files: Record<string, string | Uint8Array>; expected: object }[] = [
    {
      name: "SCSI disk: device/wwid, device/model, device/vpd_pg80",
      files: {
        "size": "16384\n",
        "device/wwid": "naa.5000c500a1b2c3d4\n",
        "device/model": "ST4000NM0035    \n",
        "device/vpd_pg80": vpdPage,
      },
      expected: { serial: "ZA1234567", wwn: "naa.5000c500a1b2c3d4", model: "ST4000NM0035" },
    },
    {
      name: "NVMe namespace: wwid, device/serial, device/model",
      files: {
        "size": "16384\n",
        "wwid": "eui.0025388b91b2c3d4\n",
        "device/serial": "S4EWNX0R123456\n",
        "device/model": "Samsung SSD 970\n",
      },
      expected: { serial: "S4EWNX0R123456", wwn: "eui.0025388b91b2c3d4", model: "Samsung SSD 970" },
    },
    {
      name: "virtio disk: serial only",
      files: { "size": "16384\n", "serial": "vm-disk-7\n" },
      expected: { serial: "vm-disk-7" },
    },
    {
      name: "empty attributes are left out",
      files: { "size": "16384\n", "serial": "\n", "device/model": "  \n" },
      expected: {},
    },
  ];
  for (const row of rows) {
    const root = await Deno.makeTempDir({ prefix: "dm-remap-sysfs-" });
    try {
      await writeTree(
        root,
        Object.fromEntries(
          Object.entries(row.files).map((
            [key, value],
          ) => [`dev/block/${majorMinorOf("/dev/loop0")}/${key}`, value]),
        ),
      );
      const identity = await probeDeviceIdentity("/dev/loop0", { sysfsRoot: root });
      assert.deepEqual(
        identity,
        {
          kind: "block",
          sizeBytes: 16384 * 512,
          ...row.expected,
          deviceNumber: majorMinorOf("/dev/loop0"),
        },
        row.name,
      );
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  }
});

Deno.test("probeDeviceIdentity() of a partition reports its disk's serial, and its own size, number and start", async () => {
  const root = await Deno.makeTempDir({ prefix: "dm-remap-sysfs-" });
  try {
    const disk = "devices/pci0000:00/block/sdz";
    await writeTree(root, {
      [`${disk}/size`]: "20000\n",
      [`${disk}/device/vpd_pg80`]: new Uint8Array([
        0,
        0x80,
        0,
        4,
        ...new TextEncoder().encode("WD-1"),
      ]),
      [`${disk}/sdz1/size`]: "2048\n",
      [`${disk}/sdz1/partition`]: "1\n",
      [`${disk}/sdz1/start`]: "2048\n",
    });
    await Deno.mkdir(`${root}/dev/block`, { recursive: true });
    await Deno.symlink(`../../${disk}/sdz1`, `${root}/dev/block/${majorMinorOf("/dev/loop1")}`);
    const identity = await probeDeviceIdentity("/dev/loop1", { sysfsRoot: root });
    assert.deepEqual(identity, {
      kind: "block",
      sizeBytes: 2048 * 512,
      serial: "WD-1",
      deviceNumber: majorMinorOf("/dev/loop1"),
      partition: { number: 1, startSector: 2048 },
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("probeDeviceIdentity() lists the by-id links to a disk, and canonicalPathOf() prefers the WWN one", async () => {
  const byId = await Deno.makeTempDir({ prefix: "dm-remap-by-id-" });
  try {
    await Deno.symlink("/dev/loop0", `${byId}/virtio-disk7`);
    await Deno.symlink("/dev/loop0", `${byId}/wwn-0x5000c500a1b2c3d4`);
    await Deno.symlink("/dev/loop1", `${byId}/virtio-other`);
    await Deno.symlink("/dev/nonexistent", `${byId}/dangling`);
    const identity = await probeDeviceIdentity("/dev/loop0", { byIdDirectory: byId });
    assert.deepEqual(identity.byId, [`${byId}/virtio-disk7`, `${byId}/wwn-0x5000c500a1b2c3d4`]);
    assert.equal(await canonicalPathOf("/dev/loop0", identity), `${byId}/wwn-0x5000c500a1b2c3d4`);
  } finally {
    await Deno.remove(byId, { recursive: true });
  }
});

Deno.test("canonicalPathOf() gives a file's real absolute path, and keeps /dev/mapper names", async () => {
  const image = await makeSparseImage(1024 * 1024);
  const directory = image.path.slice(0, image.path.lastIndexOf("/"));
  try {
    await Deno.symlink("disk.img", `${directory}/link.img`);
    const identity = await probeDeviceIdentity(`${directory}/link.img`);
    const cwd = Deno.cwd();
    Deno.chdir(directory);
    try {
      assert.equal(await canonicalPathOf("link.img", identity), await Deno.realPath(image.path));
      assert.equal(await canonicalPathOf("./disk.img", identity), await Deno.realPath(image.path));
    } finally {
      Deno.chdir(cwd);
    }
    const block = { kind: "block" as const, sizeBytes: 512 };
    assert.equal(await canonicalPathOf("/dev/mapper/main", block), "/dev/mapper/main");
  } finally {
    await image.cleanup();
  }
});

/**
 * The main disk's identity, checked in layers.
 *
 * Goal: the strongest layer the setup recorded decides (serial/WWN, then a
 * file's device and inode, then a block device's number or by-id link);
 * kind and size always count and cannot be overridden; a setup from an older
 * version, which recorded size and serial only, is still opened and its
 * missing layers are reported so they can be recorded.
 * Method: table rows of recorded identity → probed identity → expected result.
 */

import assert from "node:assert/strict";
import {
  describeIdentity,
  identityMismatch,
  identityStrengthOf,
  mainIdentityOf,
  missingLayers,
  type ProbedIdentity,
} from "../../mod/assembly/identity.ts";

const FILE: ProbedIdentity = {
  path: "/srv/main.img",
  kind: "file",
  sizeBytes: 1 << 30,
  deviceNumber: "254:0",
  inode: 1234,
};
const DISK: ProbedIdentity = {
  path: "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4",
  kind: "block",
  sizeBytes: 4 * 2 ** 30,
  serial: "ZA1234567",
  wwn: "naa.5000c500a1b2c3d4",
  deviceNumber: "8:16",
  byId: ["/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"],
};
const VIRTUAL: ProbedIdentity = {
  path: "/dev/vdb",
  kind: "block",
  sizeBytes: 1 << 30,
  deviceNumber: "254:16",
};

Deno.test("identityMismatch() compares the strongest recorded layer: one row per case", async () => {
  const rows: [
    scenario: string,
    recorded: ProbedIdentity,
    probed: ProbedIdentity,
    expected: { reason: string; replaceable: boolean } | undefined,
  ][] = [
    ["the same file", FILE, { ...FILE, path: "/srv/link.img" }, undefined],
    ["another file of the same size", FILE, { ...FILE, inode: 99 }, {
      reason:
        'it is another file (device 254:0, inode 99); the setup\'s main disk "/srv/main.img" ' +
        "is device 254:0, inode 1234",
      replaceable: true,
    }],
    ["the same inode on another filesystem", FILE, { ...FILE, deviceNumber: "8:1" }, {
      reason:
        'it is another file (device 8:1, inode 1234); the setup\'s main disk "/srv/main.img" ' +
        "is device 254:0, inode 1234",
      replaceable: true,
    }],
    ["a file of another size", FILE, { ...FILE, sizeBytes: 1 << 20 }, {
      reason: 'its size is 1048576 bytes; the setup\'s main disk "/srv/main.img" has 1073741824',
      replaceable: false,
    }],
    ["a block device for a file", FILE, { ...VIRTUAL, sizeBytes: 1 << 30 }, {
      reason: 'it is a block device; the setup\'s main disk "/srv/main.img" is a file',
      replaceable: false,
    }],
    ["the disk, renumbered after a reboot", DISK, { ...DISK, deviceNumber: "8:32" }, undefined],
    ["another disk of the same size", DISK, { ...DISK, serial: "ZB7654321", wwn: undefined }, {
      reason: 'it has serial "ZB7654321" and WWN "-"; the setup\'s main disk ' +
        `"${DISK.path}" has serial "ZA1234567" and WWN "naa.5000c500a1b2c3d4"`,
      replaceable: true,
    }],
    [
      "another partition of the same disk, of the same size",
      { ...DISK, partition: { number: 1, startSector: 2048 } },
      { ...DISK, partition: { number: 2, startSector: 8390656 } },
      {
        reason: "it is partition 2 (from sector 8390656); the setup's main disk " +
          `"${DISK.path}" is partition 1 (from sector 2048) of the same disk`,
        replaceable: true,
      },
    ],
    [
      "the whole disk for a partition of it",
      { ...DISK, partition: { number: 1, startSector: 2048 } },
      DISK,
      {
        reason: "it is the whole disk; the setup's main disk " +
          `"${DISK.path}" is partition 1 (from sector 2048) of the same disk`,
        replaceable: true,
      },
    ],
    ["a virtual disk at its number", VIRTUAL, { ...VIRTUAL }, undefined],
    ["a virtual disk at another number", VIRTUAL, { ...VIRTUAL, deviceNumber: "254:32" }, {
      reason: 'it is device 254:32; the setup\'s main disk "/dev/vdb" was device 254:16 (it has ' +
        "no serial or WWN, so only its device number and size identify it)",
      replaceable: true,
    }],
    [
      "a dm device renumbered, found by its by-id link",
      { ...VIRTUAL, byId: ["/dev/disk/by-id/dm-name-main"] },
      { ...VIRTUAL, deviceNumber: "253:1", byId: ["/dev/disk/by-id/dm-name-main"] },
      undefined,
    ],
  ];
  for (const [scenario, recorded, probed, expected] of rows) {
    assert.deepEqual(
      identityMismatch(await mainIdentityOf(recorded), probed),
      expected,
      scenario,
    );
  }
});

Deno.test("identityMismatch() opens a setup from an older version by size, and missingLayers() says to record the rest", async () => {
  const { deviceNumber: _number, inode: _inode, ...old } = await mainIdentityOf(FILE);
  assert.equal(identityStrengthOf(old), "size-only");
  assert.equal(identityMismatch(old, FILE), undefined);
  assert.equal(missingLayers(old, FILE), true);
  assert.equal(missingLayers(await mainIdentityOf(FILE), FILE), false);
  assert.deepEqual(identityMismatch(old, { ...FILE, sizeBytes: 512 })?.replaceable, false);
});

Deno.test("describeIdentity() warns of a weak identity: a plain file, a disk without serial", () => {
  assert.deepEqual(describeIdentity(DISK), {
    description: 'serial "ZA1234567", WWN "naa.5000c500a1b2c3d4", ' +
      `by-id ${DISK.byId![0]}, 4294967296 bytes`,
  });
  assert.match(describeIdentity(FILE).warning!, /is a plain file: it is recognised by its device/);
  assert.match(describeIdentity(VIRTUAL).warning!, /has no serial number or WWN/);
});

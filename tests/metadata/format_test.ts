/**
 * The on-disk format, field by field: checksums, copies, the winner rule,
 * the remap log and checkpoints, and the spare layout.
 *
 * Method: encode, change one thing, decode; round trips and bit flips are
 * checked as seeded properties with fast-check (the seed is printed on failure).
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { crc32c } from "../../mod/metadata/crc32c.ts";
import {
  compareCopies,
  type CopyHeader,
  decodeCopy,
  encodeCopy,
  FORMAT_VERSION,
} from "../../mod/metadata/superblock.ts";
import {
  decodeLogSector,
  encodeLogSectors,
  LOG_RECORDS_PER_SECTOR,
  replayLog,
} from "../../mod/metadata/remap_log.ts";
import {
  decodeCheckpoint,
  decodeCheckpointSeal,
  encodeCheckpoint,
  encodeCheckpointSeal,
} from "../../mod/metadata/checkpoint.ts";
import {
  computeLayout,
  minimumSpareBytes,
  slotOffsetBytes,
} from "../../mod/metadata/spare_layout.ts";
import { COPY_BYTES, COPY_SECTORS, SECTOR_BYTES, SPARE_SLOTS_MIN } from "../../mod/constants.ts";
import { payloadFor, SETUP_UUID } from "./fixtures.ts";

const SPARE_BYTES = 64 * 1024 * 1024;
const header = (overrides: Partial<CopyHeader> = {}): CopyHeader => ({
  formatVersion: FORMAT_VERSION,
  sequence: 7,
  timestampMs: 1_700_000_000_123,
  copyIndex: 2,
  setupUuid: SETUP_UUID,
  spareIndex: 0,
  ...overrides,
});

Deno.test("crc32c() matches the RFC 3720 test vectors", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
  assert.equal(crc32c(ascending), 0x46dd794e);
});

Deno.test("crc32c() continues across pieces", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(300), (bytes, cut) => {
    const at = Math.min(cut, bytes.length);
    assert.equal(crc32c(bytes.subarray(at), crc32c(bytes.subarray(0, at))), crc32c(bytes));
  }));
});

Deno.test("decodeCopy() returns what encodeCopy() wrote", () => {
  fc.assert(fc.property(
    fc.record({
      sequence: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
      timestampMs: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
      copyIndex: fc.integer({ min: 0, max: 4 }),
      name: fc.string({ minLength: 1, maxLength: 64 }),
      pending: fc.array(fc.nat({ max: 2 ** 40 }), { maxLength: 1024 }),
    }),
    ({ sequence, timestampMs, copyIndex, name, pending }) => {
      const payload = payloadFor(SPARE_BYTES);
      payload.setup.name = name;
      payload.pending = pending;
      const copyHeader = header({ sequence, timestampMs, copyIndex });
      const decoded = decodeCopy(encodeCopy(copyHeader, payload), copyIndex);
      assert.ok(decoded.valid, decoded.valid ? "" : decoded.reason);
      assert.deepEqual(decoded.header, copyHeader);
      assert.deepEqual(decoded.payload, payload);
    },
  ));
});

Deno.test("decodeCopy() rejects a flip of any single bit of the header or payload", () => {
  const bytes = encodeCopy(header(), payloadFor(SPARE_BYTES));
  // Padding after the payload, up to the sector boundary, carries nothing.
  const usedBytes = 512 + new DataView(bytes.buffer).getUint32(36, true);
  fc.assert(fc.property(fc.nat(usedBytes - 1), fc.integer({ min: 0, max: 7 }), (byteIndex, bit) => {
    const damaged = bytes.slice();
    damaged[byteIndex]! ^= 1 << bit;
    const decoded = decodeCopy(damaged, 2);
    assert.equal(decoded.valid, false, `flip of bit ${bit} in byte ${byteIndex} went unnoticed`);
  }));
});

Deno.test("decodeCopy() names the check that failed for each header field", () => {
  const bytes = encodeCopy(header(), payloadFor(SPARE_BYTES));
  const rows: [string, number, RegExp][] = [
    ["magic", 0, /no dm-remap magic/],
    ["format version", 8, /header checksum/],
    ["sequence", 16, /header checksum/],
    ["timestamp", 24, /header checksum/],
    ["copy index", 32, /header checksum/],
    ["payload length", 36, /header checksum/],
    ["payload CRC", 40, /header checksum/],
    ["setup UUID", 44, /header checksum/],
    ["spare index", 60, /header checksum/],
    ["header CRC", 508, /header checksum/],
    ["first payload byte", 512, /payload checksum/],
    [
      "last payload byte",
      512 + new DataView(bytes.buffer).getUint32(36, true) - 1,
      /payload checksum/,
    ],
  ];
  for (const [field, offset, reason] of rows) {
    const damaged = bytes.slice();
    damaged[offset]! ^= 0x01;
    const decoded = decodeCopy(damaged, 2);
    assert.ok(
      !decoded.valid && reason.test(decoded.reason),
      `${field}: ${JSON.stringify(decoded)}`,
    );
  }
});

Deno.test("decodeCopy() rejects a copy found at another copy's position", () => {
  const decoded = decodeCopy(encodeCopy(header({ copyIndex: 1 }), payloadFor(SPARE_BYTES)), 3);
  assert.ok(!decoded.valid && /copy index 1 found at position 3/.test(decoded.reason));
});

Deno.test("decodeCopy() refuses a copy from a newer format and names the version", () => {
  const bytes = encodeCopy(header(), payloadFor(SPARE_BYTES));
  const view = new DataView(bytes.buffer);
  view.setUint32(8, FORMAT_VERSION + 1, true);
  view.setUint32(508, crc32c(bytes.subarray(0, 508)), true);
  const decoded = decodeCopy(bytes, 2);
  assert.ok(!decoded.valid);
  assert.equal(decoded.newerVersion, FORMAT_VERSION + 1);
});

Deno.test("compareCopies() picks the highest sequence, then timestamp, then copy index", () => {
  const rows: [Partial<CopyHeader>, Partial<CopyHeader>, "a" | "b"][] = [
    [{ sequence: 5 }, { sequence: 4 }, "a"],
    [{ sequence: 4, timestampMs: 9 }, { sequence: 5, timestampMs: 1 }, "b"],
    [{ sequence: 5, timestampMs: 2 }, { sequence: 5, timestampMs: 1 }, "a"],
    [
      { sequence: 5, timestampMs: 1, copyIndex: 0 },
      { sequence: 5, timestampMs: 1, copyIndex: 4 },
      "b",
    ],
    [
      { sequence: 5, timestampMs: 1, copyIndex: 3 },
      { sequence: 5, timestampMs: 1, copyIndex: 1 },
      "a",
    ],
  ];
  for (const [a, b, winner] of rows) {
    const order = compareCopies(header(a), header(b));
    assert.equal(order < 0 ? "a" : "b", winner, JSON.stringify({ a, b }));
  }
});

Deno.test("replayLog() returns the records encodeLogSectors() wrote, across sectors", () => {
  const records = Array.from({ length: LOG_RECORDS_PER_SECTOR * 3 + 5 }, (_, i) => ({
    slotIndex: 10 + i,
    blockIndex: 2 ** 40 + i * 7,
  }));
  const region = new Uint8Array(64 * SECTOR_BYTES);
  region.set(
    encodeLogSectors({ setupUuid: SETUP_UUID, spareIndex: 1, blockBytes: 4096 }, 100, records),
    0,
  );
  const replay = replayLog(region, {
    setupUuid: SETUP_UUID,
    spareIndex: 1,
    startSequence: 100,
    firstSlot: 10,
  });
  assert.deepEqual(replay.blockIndexes, records.map((record) => record.blockIndex));
  assert.equal(replay.sectorsUsed, 4);
  assert.equal(replay.stopReason, "end");
});

Deno.test("replayLog() stops at a torn sector, a stale sequence, another setup or a slot gap", () => {
  const identity = { setupUuid: SETUP_UUID, spareIndex: 0, blockBytes: 4096 };
  const sector = (sequence: number, slotIndex: number, setupUuid = SETUP_UUID) =>
    encodeLogSectors({ ...identity, setupUuid }, sequence, [{ slotIndex, blockIndex: 99 }]);
  const rows: [string, Uint8Array, string | RegExp][] = [
    [
      "torn second sector",
      (() => {
        const torn = sector(2, 1);
        torn.fill(0, 200);
        return torn;
      })(),
      /torn or corrupt sector 1/,
    ],
    ["stale sequence from before a checkpoint", sector(0, 1), "end"],
    [
      "sector of another setup",
      sector(2, 1, "11111111-2222-4333-8444-555555555555"),
      /another setup/,
    ],
    ["slot gap", sector(2, 5), /breaks slot order/],
  ];
  for (const [scenario, second, reason] of rows) {
    const region = new Uint8Array(8 * SECTOR_BYTES);
    region.set(sector(1, 0), 0);
    region.set(second, SECTOR_BYTES);
    const replay = replayLog(region, { ...identity, startSequence: 1, firstSlot: 0 });
    assert.deepEqual(replay.blockIndexes, [99], scenario);
    assert.equal(replay.sectorsUsed, 1, scenario);
    if (typeof reason === "string") assert.equal(replay.stopReason, reason, scenario);
    else assert.match(replay.stopReason, reason, scenario);
  }
});

Deno.test("decodeCheckpoint() returns the entries and rejects any changed entry", () => {
  const blocks = [0, 1, 2 ** 32, 2 ** 52 + 3, 77];
  const encoded = encodeCheckpoint(blocks, blocks.length);
  assert.deepEqual(decodeCheckpoint(encoded.bytes, blocks.length, encoded.crc32c), blocks);
  const damaged = encoded.bytes.slice();
  damaged[20]! ^= 4;
  assert.equal(decodeCheckpoint(damaged, blocks.length, encoded.crc32c), undefined);
  assert.equal(decodeCheckpoint(encoded.bytes, blocks.length - 1, encoded.crc32c), undefined);
});

Deno.test("decodeLogSector() gives the sector's setup, spare, block size and records, alone", () => {
  const bytes = encodeLogSectors(
    { setupUuid: SETUP_UUID, spareIndex: 3, blockBytes: 65536 },
    41,
    [{ slotIndex: 7, blockIndex: 2 ** 50 }, { slotIndex: 8, blockIndex: 0 }],
  );
  assert.deepEqual(decodeLogSector(bytes, "sector 0"), {
    valid: true,
    sector: {
      setupUuid: SETUP_UUID,
      spareIndex: 3,
      blockBytes: 65536,
      sequence: 41,
      ownSlotsBefore: 0,
      records: [
        { slotIndex: 7, type: 1, blockIndex: 2 ** 50, ownerIndex: 3, vacate: false },
        { slotIndex: 8, type: 1, blockIndex: 0, ownerIndex: 3, vacate: false },
      ],
    },
  });
  const torn = bytes.slice();
  torn[45]! ^= 1;
  assert.deepEqual(decodeLogSector(torn, "sector 0"), {
    valid: false,
    reason: "torn or corrupt sector 0",
  });
  assert.equal(decodeLogSector(new Uint8Array(SECTOR_BYTES), "sector 0").valid, false);
});

Deno.test("decodeCheckpointSeal() returns what encodeCheckpointSeal() wrote and rejects any bit flip", () => {
  const seal = {
    setupUuid: SETUP_UUID,
    spareIndex: 2,
    entryCount: 123_456,
    crc32c: 0xdeadbeef,
    logStartSequence: 2 ** 40,
  };
  const bytes = encodeCheckpointSeal(seal);
  assert.equal(bytes.length, SECTOR_BYTES);
  assert.deepEqual(decodeCheckpointSeal(bytes), seal);
  fc.assert(fc.property(fc.nat(SECTOR_BYTES * 8 - 1), (bit) => {
    const flipped = bytes.slice();
    flipped[bit >> 3]! ^= 1 << (bit & 7);
    assert.equal(decodeCheckpointSeal(flipped), undefined);
  }));
});

Deno.test("computeLayout() keeps data slots clear of every copy, the log and both checkpoints", () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 64 * 1024 }).map((mib) => mib * 1024 * 1024 + 512 * 37),
    fc.constantFrom(512, 1024, 4096, 65536),
    (sizeBytes, blockBytes) => {
      const layout = computeLayout(sizeBytes, blockBytes);
      if (!layout) return assert.ok(sizeBytes < minimumSpareBytes(blockBytes));
      const lastCopyEnd = COPY_SECTORS[4]! * SECTOR_BYTES + COPY_BYTES;
      assert.ok(layout.logOffsetBytes >= lastCopyEnd);
      const firstSlot = slotOffsetBytes(layout, 0);
      assert.ok(firstSlot >= layout.checkpointOffsetBytes[1] + layout.checkpointBytes);
      assert.ok(slotOffsetBytes(layout, layout.slotCount - 1) + blockBytes <= sizeBytes);
      assert.ok(layout.slotCount >= SPARE_SLOTS_MIN);
      // The largest count that fits: one more slot would not.
      const unusedBytes = sizeBytes - (slotOffsetBytes(layout, layout.slotCount - 1) + blockBytes);
      assert.ok(unusedBytes < blockBytes + 2 * 2 ** 20, `unused ${unusedBytes}`);
    },
  ));
});

Deno.test("minimumSpareBytes() is the exact threshold computeLayout() accepts", () => {
  for (const blockBytes of [512, 4096, 65536]) {
    const minimum = minimumSpareBytes(blockBytes);
    assert.ok(computeLayout(minimum, blockBytes));
    assert.equal(computeLayout(minimum - 512, blockBytes), undefined);
  }
});

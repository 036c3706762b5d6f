/**
 * What the ublk export writes into the driver's structures: the device info
 * of ADD_DEV round-trips (the setup's fingerprint in `ublksrv_flags`, which
 * a later server finds its device by), SET_PARAMS's parameters carry the
 * size, block sizes, I/O and discard limits and the cache/FUA attributes at
 * the offsets of ublk_cmd.h (checked against the header by
 * tests/sys/uapi_layout_test.ts), and fingerprints tell setups apart.
 */

import assert, { deepStrictEqual as assertEquals } from "node:assert/strict";
import {
  decodeDevInfo,
  descriptorAreaOffset,
  DEV_INFO,
  encodeDevInfo,
  encodeParams,
  PARAM_BASIC,
  PARAM_DISCARD,
  PARAMS,
  UBLK_ATTR,
  UBLK_PARAM_TYPE,
  type UblkDevInfo,
} from "../../../mod/sys/ublk_abi.ts";
import { setupFingerprintOf as fingerprintOf } from "../../../mod/sys/ublk_control.ts";

Deno.test("ublk encoding: device info round-trips, the fingerprint in ublksrv_flags", () => {
  const info: UblkDevInfo = {
    queues: 2,
    queueDepth: 64,
    state: 1,
    maxIoBufBytes: 512 * 1024,
    devId: 7,
    serverPid: 4242,
    flags: 0x58n,
    serverFlags: 0x282f9ac61cfe4efbn,
  };
  const bytes = encodeDevInfo(info);
  assertEquals(bytes.length, DEV_INFO.BYTES);
  assertEquals(decodeDevInfo(bytes), info);
  const view = new DataView(bytes.buffer);
  assertEquals(view.getBigUint64(DEV_INFO.UBLKSRV_FLAGS, true), 0x282f9ac61cfe4efbn);
  // ADD_DEV's "any free id" is -1, the u32 all ones.
  assertEquals(view.getUint32(DEV_INFO.DEV_ID, true), 7);
  assertEquals(
    new DataView(encodeDevInfo({ ...info, devId: -1 }).buffer).getUint32(DEV_INFO.DEV_ID, true),
    0xffffffff,
  );
});

Deno.test("ublk encoding: parameters carry size, block sizes, limits and attributes", () => {
  const bytes = encodeParams({
    sizeBytes: 256 << 20,
    logicalBlockBytes: 4096,
    physicalBlockBytes: 4096,
    maxIoBytes: 512 * 1024,
    maxDiscardBytes: 512 * 1024,
    discardGranularityBytes: 4096,
  });
  const view = new DataView(bytes.buffer);
  const basic = PARAMS.BASIC;
  const discard = PARAMS.DISCARD;
  assertEquals(view.getUint32(PARAMS.LEN, true), PARAMS.BYTES);
  assertEquals(view.getUint32(PARAMS.TYPES, true), UBLK_PARAM_TYPE.BASIC | UBLK_PARAM_TYPE.DISCARD);
  assertEquals(
    view.getUint32(basic + PARAM_BASIC.ATTRS, true),
    UBLK_ATTR.VOLATILE_CACHE | UBLK_ATTR.FUA,
  );
  assertEquals(view.getUint8(basic + PARAM_BASIC.LOGICAL_BS_SHIFT), 12);
  assertEquals(view.getUint8(basic + PARAM_BASIC.PHYSICAL_BS_SHIFT), 12);
  assertEquals(view.getUint32(basic + PARAM_BASIC.MAX_SECTORS, true), 1024);
  assertEquals(view.getBigUint64(basic + PARAM_BASIC.DEV_SECTORS, true), 524288n);
  assertEquals(view.getUint32(discard + PARAM_DISCARD.DISCARD_GRANULARITY, true), 4096);
  assertEquals(view.getUint32(discard + PARAM_DISCARD.MAX_DISCARD_SECTORS, true), 1024);
  assertEquals(view.getUint32(discard + PARAM_DISCARD.MAX_WRITE_ZEROES_SECTORS, true), 1024);
  assertEquals(view.getUint16(discard + PARAM_DISCARD.MAX_DISCARD_SEGMENTS, true), 1);
});

Deno.test("ublk encoding: queue descriptor areas are a whole number of pages apart", () => {
  // 4096 tags × 24 bytes = 24 pages per queue (UBLK_MAX_QUEUE_DEPTH).
  assertEquals([0, 1, 2].map((queue) => descriptorAreaOffset(queue, 4096)), [0, 98304, 196608]);
});

Deno.test("ublk encoding: the fingerprint is the setup UUID's first 64 bits", () => {
  assertEquals(fingerprintOf("282f9ac6-1cfe-4efb-931a-39a1d796f055"), 0x282f9ac61cfe4efbn);
  assert(
    fingerprintOf("282f9ac6-1cfe-4efb-931a-39a1d796f055") !==
      fingerprintOf("4d4aa7ec-3028-4eeb-a15a-d1e56c1ca55e"),
  );
});

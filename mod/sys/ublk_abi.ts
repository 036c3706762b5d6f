/**
 * The ublk driver's user-space interface (include/uapi/linux/ublk_cmd.h of
 * Linux 6.12): command numbers, flags, and the byte layout of the structures
 * the control and queue commands carry, with encoders and decoders.
 *
 * tests/sys/ublk_abi_test.ts checks every size, offset and constant here
 * against the header (trixie's linux-libc-dev, 6.12) with a compiled C program.
 *
 * @module
 */

/** `_IOC(dir, 'u', nr, size)`: ublk's ioctl-encoded command numbers (UBLK_F_CMD_IOCTL_ENCODE). */
function ublkIoc(direction: "r" | "rw", nr: number, sizeBytes: number): number {
  const dir = direction === "r" ? 2 : 3;
  return ((dir << 30) | (sizeBytes << 16) | (0x75 << 8) | nr) >>> 0;
}

/** struct ublksrv_ctrl_cmd (32 bytes): the command area of a control SQE. */
export const CTRL_CMD = {
  BYTES: 32,
  DEV_ID: 0,
  QUEUE_ID: 4,
  LEN: 6,
  ADDR: 8,
  DATA: 16,
  DEV_PATH_LEN: 24,
} as const;

/** struct ublksrv_io_cmd (16 bytes): the command area of a queue SQE. */
export const IO_CMD = { BYTES: 16, Q_ID: 0, TAG: 2, RESULT: 4, ADDR: 8 } as const;

/** Control commands, ioctl-encoded (the legacy numbers are the low byte). */
export const UBLK_U_CMD = {
  GET_DEV_INFO: ublkIoc("r", 0x02, CTRL_CMD.BYTES),
  ADD_DEV: ublkIoc("rw", 0x04, CTRL_CMD.BYTES),
  DEL_DEV: ublkIoc("rw", 0x05, CTRL_CMD.BYTES),
  START_DEV: ublkIoc("rw", 0x06, CTRL_CMD.BYTES),
  STOP_DEV: ublkIoc("rw", 0x07, CTRL_CMD.BYTES),
  SET_PARAMS: ublkIoc("rw", 0x08, CTRL_CMD.BYTES),
  GET_PARAMS: ublkIoc("r", 0x09, CTRL_CMD.BYTES),
  START_USER_RECOVERY: ublkIoc("rw", 0x10, CTRL_CMD.BYTES),
  END_USER_RECOVERY: ublkIoc("rw", 0x11, CTRL_CMD.BYTES),
  GET_FEATURES: ublkIoc("r", 0x13, CTRL_CMD.BYTES),
} as const;

/** Queue commands, ioctl-encoded. */
export const UBLK_U_IO = {
  FETCH_REQ: ublkIoc("rw", 0x20, IO_CMD.BYTES),
  COMMIT_AND_FETCH_REQ: ublkIoc("rw", 0x21, IO_CMD.BYTES),
} as const;

/** Device flags (`ublksrv_ctrl_dev_info.flags`). */
export const UBLK_F = {
  URING_CMD_COMP_IN_TASK: 1n << 1n,
  USER_RECOVERY: 1n << 3n,
  USER_RECOVERY_REISSUE: 1n << 4n,
  CMD_IOCTL_ENCODE: 1n << 6n,
} as const;

/** Device states (`ublksrv_ctrl_dev_info.state`). */
export const UBLK_S = { DEV_DEAD: 0, DEV_LIVE: 1, DEV_QUIESCED: 2 } as const;

/** Largest queue depth and count the driver accepts. */
export const UBLK_MAX_QUEUE_DEPTH = 4096;
export const UBLK_MAX_NR_QUEUES = 4096;

/** struct ublksrv_ctrl_dev_info (64 bytes). */
export const DEV_INFO = {
  BYTES: 64,
  NR_HW_QUEUES: 0,
  QUEUE_DEPTH: 2,
  STATE: 4,
  MAX_IO_BUF_BYTES: 8,
  DEV_ID: 12,
  UBLKSRV_PID: 16,
  FLAGS: 24,
  UBLKSRV_FLAGS: 32,
  OWNER_UID: 40,
  OWNER_GID: 44,
} as const;

/** struct ublksrv_io_desc (24 bytes): one tag's request, in the queue's mapped descriptor array. */
export const IO_DESC = {
  BYTES: 24,
  OP_FLAGS: 0,
  NR_SECTORS: 4,
  START_SECTOR: 8,
  ADDR: 16,
} as const;

/** Request operations (low 8 bits of `op_flags`) and flags. */
export const UBLK_IO_OP = {
  READ: 0,
  WRITE: 1,
  FLUSH: 2,
  DISCARD: 3,
  WRITE_SAME: 4,
  WRITE_ZEROES: 5,
} as const;
export const UBLK_IO_F = { FUA: 1 << 13, NOUNMAP: 1 << 15 } as const;

/** Command results of a queue's CQEs. */
export const UBLK_IO_RES_OK = 0;
/** -ENODEV: the device is stopping; the fetch will not be answered. */
export const UBLK_IO_RES_ABORT = -19;

/** struct ublk_params and its parts. */
export const PARAMS = {
  /** sizeof(struct ublk_params) in 6.12 (basic, discard, devt, zoned). */
  BYTES: 112,
  LEN: 0,
  TYPES: 4,
  BASIC: 8,
  DISCARD: 40,
  DEVT: 60,
} as const;
export const UBLK_PARAM_TYPE = { BASIC: 1, DISCARD: 2, DEVT: 4 } as const;
/** struct ublk_param_basic (32 bytes), offsets within it. */
export const PARAM_BASIC = {
  BYTES: 32,
  /** A u32 of UBLK_ATTR bits. */
  ATTRS: 0,
  LOGICAL_BS_SHIFT: 4,
  PHYSICAL_BS_SHIFT: 5,
  IO_OPT_SHIFT: 6,
  IO_MIN_SHIFT: 7,
  MAX_SECTORS: 8,
  CHUNK_SECTORS: 12,
  DEV_SECTORS: 16,
  VIRT_BOUNDARY_MASK: 24,
} as const;
export const UBLK_ATTR = { READ_ONLY: 1, ROTATIONAL: 2, VOLATILE_CACHE: 4, FUA: 8 } as const;
/** struct ublk_param_discard (20 bytes), offsets within it. */
export const PARAM_DISCARD = {
  BYTES: 20,
  DISCARD_ALIGNMENT: 0,
  DISCARD_GRANULARITY: 4,
  MAX_DISCARD_SECTORS: 8,
  MAX_WRITE_ZEROES_SECTORS: 12,
  MAX_DISCARD_SEGMENTS: 16,
} as const;
/** struct ublk_param_devt (16 bytes), offsets within it. */
export const PARAM_DEVT = {
  BYTES: 16,
  CHAR_MAJOR: 0,
  CHAR_MINOR: 4,
  DISK_MAJOR: 8,
  DISK_MINOR: 12,
} as const;

/** What a device is, as ADD_DEV asks for it and GET_DEV_INFO tells it. */
export interface UblkDevInfo {
  queues: number;
  queueDepth: number;
  state: number;
  maxIoBufBytes: number;
  /** -1 asks ADD_DEV for the next free id. */
  devId: number;
  serverPid: number;
  flags: bigint;
  /** `ublksrv_flags`: the server's own word, kept by the driver (dm-remap: its setup's fingerprint). */
  serverFlags: bigint;
}

/** Encodes a struct ublksrv_ctrl_dev_info. */
export function encodeDevInfo(info: UblkDevInfo): Uint8Array {
  const bytes = new Uint8Array(DEV_INFO.BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint16(DEV_INFO.NR_HW_QUEUES, info.queues, true);
  view.setUint16(DEV_INFO.QUEUE_DEPTH, info.queueDepth, true);
  view.setUint16(DEV_INFO.STATE, info.state, true);
  view.setUint32(DEV_INFO.MAX_IO_BUF_BYTES, info.maxIoBufBytes, true);
  view.setUint32(DEV_INFO.DEV_ID, info.devId >>> 0, true);
  view.setInt32(DEV_INFO.UBLKSRV_PID, info.serverPid, true);
  view.setBigUint64(DEV_INFO.FLAGS, info.flags, true);
  view.setBigUint64(DEV_INFO.UBLKSRV_FLAGS, info.serverFlags, true);
  return bytes;
}

/** Decodes a struct ublksrv_ctrl_dev_info. */
export function decodeDevInfo(bytes: Uint8Array): UblkDevInfo {
  const view = new DataView(bytes.buffer, bytes.byteOffset, DEV_INFO.BYTES);
  return {
    queues: view.getUint16(DEV_INFO.NR_HW_QUEUES, true),
    queueDepth: view.getUint16(DEV_INFO.QUEUE_DEPTH, true),
    state: view.getUint16(DEV_INFO.STATE, true),
    maxIoBufBytes: view.getUint32(DEV_INFO.MAX_IO_BUF_BYTES, true),
    devId: view.getInt32(DEV_INFO.DEV_ID, true),
    serverPid: view.getInt32(DEV_INFO.UBLKSRV_PID, true),
    flags: view.getBigUint64(DEV_INFO.FLAGS, true),
    serverFlags: view.getBigUint64(DEV_INFO.UBLKSRV_FLAGS, true),
  };
}

/** The parameters dm-remap sets on its device. */
export interface UblkDeviceParams {
  sizeBytes: number;
  logicalBlockBytes: number;
  physicalBlockBytes: number;
  maxIoBytes: number;
  /** Discard and write-zeroes limit per request, in bytes. */
  maxDiscardBytes: number;
  discardGranularityBytes: number;
}

/** Encodes a struct ublk_params with its basic and discard parts: volatile cache, FUA. */
export function encodeParams(params: UblkDeviceParams): Uint8Array {
  const bytes = new Uint8Array(PARAMS.BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(PARAMS.LEN, PARAMS.BYTES, true);
  view.setUint32(PARAMS.TYPES, UBLK_PARAM_TYPE.BASIC | UBLK_PARAM_TYPE.DISCARD, true);
  const basic = PARAMS.BASIC;
  view.setUint32(basic + PARAM_BASIC.ATTRS, UBLK_ATTR.VOLATILE_CACHE | UBLK_ATTR.FUA, true);
  view.setUint8(basic + PARAM_BASIC.LOGICAL_BS_SHIFT, Math.log2(params.logicalBlockBytes));
  view.setUint8(basic + PARAM_BASIC.PHYSICAL_BS_SHIFT, Math.log2(params.physicalBlockBytes));
  view.setUint8(basic + PARAM_BASIC.IO_OPT_SHIFT, Math.log2(params.physicalBlockBytes));
  view.setUint8(basic + PARAM_BASIC.IO_MIN_SHIFT, Math.log2(params.physicalBlockBytes));
  view.setUint32(basic + PARAM_BASIC.MAX_SECTORS, params.maxIoBytes / 512, true);
  view.setBigUint64(basic + PARAM_BASIC.DEV_SECTORS, BigInt(params.sizeBytes / 512), true);
  const discard = PARAMS.DISCARD;
  view.setUint32(discard + PARAM_DISCARD.DISCARD_GRANULARITY, params.discardGranularityBytes, true);
  view.setUint32(discard + PARAM_DISCARD.MAX_DISCARD_SECTORS, params.maxDiscardBytes / 512, true);
  view.setUint32(
    discard + PARAM_DISCARD.MAX_WRITE_ZEROES_SECTORS,
    params.maxDiscardBytes / 512,
    true,
  );
  view.setUint16(discard + PARAM_DISCARD.MAX_DISCARD_SEGMENTS, 1, true);
  return bytes;
}

/** Byte offset of queue `queueId`'s descriptor array in the char device's mapping. */
export function descriptorAreaOffset(queueId: number, pageBytes: number): number {
  return queueId * roundUp(UBLK_MAX_QUEUE_DEPTH * IO_DESC.BYTES, pageBytes);
}

/** Bytes to map for a queue's descriptors. */
export function descriptorAreaBytes(queueDepth: number, pageBytes: number): number {
  return roundUp(queueDepth * IO_DESC.BYTES, pageBytes);
}

function roundUp(value: number, unit: number): number {
  return Math.ceil(value / unit) * unit;
}

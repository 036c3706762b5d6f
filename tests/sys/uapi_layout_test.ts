/**
 * The io_uring and ublk structures that `mod/sys/io_uring.ts` and
 * `mod/sys/ublk_abi.ts` encode by hand, checked against the kernel's own
 * uapi headers (Debian trixie's linux-libc-dev, Linux 6.12, the kernel the
 * ublk VM tests boot): `uapi_layout.c` is compiled with gcc against them and
 * prints each size, offset and constant, and every one must equal ours.
 */

import { deepStrictEqual as assertEquals } from "node:assert/strict";
import {
  CQE,
  IORING_ENTER_GETEVENTS,
  IORING_FEAT_SINGLE_MMAP,
  IORING_FSYNC_DATASYNC,
  IORING_OFF,
  IORING_OP,
  IORING_REGISTER,
  IORING_SETUP,
  PARAMS as RING_PARAMS,
  SQE,
} from "../../mod/sys/io_uring.ts";
import {
  CTRL_CMD,
  DEV_INFO,
  IO_CMD,
  IO_DESC,
  PARAM_BASIC,
  PARAM_DEVT,
  PARAM_DISCARD,
  PARAMS,
  UBLK_ATTR,
  UBLK_F,
  UBLK_IO_F,
  UBLK_IO_OP,
  UBLK_IO_RES_ABORT,
  UBLK_IO_RES_OK,
  UBLK_MAX_NR_QUEUES,
  UBLK_MAX_QUEUE_DEPTH,
  UBLK_PARAM_TYPE,
  UBLK_S,
  UBLK_U_CMD,
  UBLK_U_IO,
} from "../../mod/sys/ublk_abi.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

async function output(command: string, args: string[]): Promise<string> {
  const result = await new Deno.Command(command, { args, cwd: ROOT, stderr: "inherit" }).output();
  if (!result.success) throw new Error(`${command} ${args.join(" ")} failed`);
  return new TextDecoder().decode(result.stdout);
}

/** The header's values: "NAME VALUE" lines of the compiled program. */
async function headerValues(): Promise<Map<string, number>> {
  const include = (await output("scripts/uapi_headers_trixie.sh", [])).trim();
  const binary = await Deno.makeTempFile({ prefix: "uapi_layout" });
  try {
    const multiarch = `${include}/${Deno.build.arch}-linux-gnu`;
    await output("gcc", ["-I", include, "-I", multiarch, "-o", binary, "tests/sys/uapi_layout.c"]);
    const lines = (await output(binary, [])).trim().split("\n");
    return new Map(lines.map((line) => {
      const [name, value] = line.split(" ");
      return [name!, Number(value)];
    }));
  } finally {
    await Deno.remove(binary);
  }
}

/** Ours, named as the C program names the header's. */
const OURS: Record<string, number | bigint> = {
  "sizeof(io_uring_params)": RING_PARAMS.BYTES,
  "io_uring_params.sq_entries": RING_PARAMS.SQ_ENTRIES,
  "io_uring_params.cq_entries": RING_PARAMS.CQ_ENTRIES,
  "io_uring_params.flags": RING_PARAMS.FLAGS,
  "io_uring_params.features": RING_PARAMS.FEATURES,
  "io_uring_params.sq_off": RING_PARAMS.SQ_OFF,
  "io_uring_params.cq_off": RING_PARAMS.CQ_OFF,
  // The ring reads the offsets structures as u32 arrays: field index times 4.
  "io_sqring_offsets.head": 0 * 4,
  "io_sqring_offsets.tail": 1 * 4,
  "io_sqring_offsets.ring_mask": 2 * 4,
  "io_sqring_offsets.array": 6 * 4,
  "io_cqring_offsets.head": 0 * 4,
  "io_cqring_offsets.tail": 1 * 4,
  "io_cqring_offsets.ring_mask": 2 * 4,
  "io_cqring_offsets.cqes": 5 * 4,
  "sizeof(io_uring_sqe)": SQE.BYTES,
  "io_uring_sqe.opcode": SQE.OPCODE,
  "io_uring_sqe.flags": SQE.FLAGS,
  "io_uring_sqe.ioprio": SQE.IOPRIO,
  "io_uring_sqe.fd": SQE.FD,
  "io_uring_sqe.off": SQE.OFF,
  "io_uring_sqe.cmd_op": SQE.CMD_OP,
  "io_uring_sqe.addr": SQE.ADDR,
  "io_uring_sqe.len": SQE.LEN,
  "io_uring_sqe.rw_flags": SQE.OP_FLAGS,
  "io_uring_sqe.user_data": SQE.USER_DATA,
  "io_uring_sqe.cmd": SQE.CMD,
  "sizeof(io_uring_cqe)": CQE.BYTES,
  "io_uring_cqe.user_data": CQE.USER_DATA,
  "io_uring_cqe.res": CQE.RES,
  "io_uring_cqe.flags": CQE.FLAGS,
  IORING_SETUP_CQSIZE: IORING_SETUP.CQSIZE,
  IORING_SETUP_COOP_TASKRUN: IORING_SETUP.COOP_TASKRUN,
  IORING_SETUP_SQE128: IORING_SETUP.SQE128,
  IORING_FEAT_SINGLE_MMAP: IORING_FEAT_SINGLE_MMAP,
  IORING_ENTER_GETEVENTS: IORING_ENTER_GETEVENTS,
  IORING_OP_NOP: IORING_OP.NOP,
  IORING_OP_POLL_ADD: IORING_OP.POLL_ADD,
  IORING_OP_READ: IORING_OP.READ,
  IORING_OP_READV: IORING_OP.READV,
  IORING_OP_WRITEV: IORING_OP.WRITEV,
  IORING_OP_FSYNC: IORING_OP.FSYNC,
  IORING_FSYNC_DATASYNC,
  IORING_REGISTER_EVENTFD: IORING_REGISTER.EVENTFD,
  IORING_OP_WRITE: IORING_OP.WRITE,
  IORING_OP_URING_CMD: IORING_OP.URING_CMD,
  IORING_OFF_SQ_RING: IORING_OFF.SQ_RING,
  IORING_OFF_CQ_RING: IORING_OFF.CQ_RING,
  IORING_OFF_SQES: IORING_OFF.SQES,
  "sizeof(ublksrv_ctrl_cmd)": CTRL_CMD.BYTES,
  "ublksrv_ctrl_cmd.dev_id": CTRL_CMD.DEV_ID,
  "ublksrv_ctrl_cmd.queue_id": CTRL_CMD.QUEUE_ID,
  "ublksrv_ctrl_cmd.len": CTRL_CMD.LEN,
  "ublksrv_ctrl_cmd.addr": CTRL_CMD.ADDR,
  "ublksrv_ctrl_cmd.data": CTRL_CMD.DATA,
  "ublksrv_ctrl_cmd.dev_path_len": CTRL_CMD.DEV_PATH_LEN,
  "sizeof(ublksrv_io_cmd)": IO_CMD.BYTES,
  "ublksrv_io_cmd.q_id": IO_CMD.Q_ID,
  "ublksrv_io_cmd.tag": IO_CMD.TAG,
  "ublksrv_io_cmd.result": IO_CMD.RESULT,
  "ublksrv_io_cmd.addr": IO_CMD.ADDR,
  "sizeof(ublksrv_ctrl_dev_info)": DEV_INFO.BYTES,
  "ublksrv_ctrl_dev_info.nr_hw_queues": DEV_INFO.NR_HW_QUEUES,
  "ublksrv_ctrl_dev_info.queue_depth": DEV_INFO.QUEUE_DEPTH,
  "ublksrv_ctrl_dev_info.state": DEV_INFO.STATE,
  "ublksrv_ctrl_dev_info.max_io_buf_bytes": DEV_INFO.MAX_IO_BUF_BYTES,
  "ublksrv_ctrl_dev_info.dev_id": DEV_INFO.DEV_ID,
  "ublksrv_ctrl_dev_info.ublksrv_pid": DEV_INFO.UBLKSRV_PID,
  "ublksrv_ctrl_dev_info.flags": DEV_INFO.FLAGS,
  "ublksrv_ctrl_dev_info.ublksrv_flags": DEV_INFO.UBLKSRV_FLAGS,
  "ublksrv_ctrl_dev_info.owner_uid": DEV_INFO.OWNER_UID,
  "ublksrv_ctrl_dev_info.owner_gid": DEV_INFO.OWNER_GID,
  "sizeof(ublksrv_io_desc)": IO_DESC.BYTES,
  "ublksrv_io_desc.op_flags": IO_DESC.OP_FLAGS,
  "ublksrv_io_desc.nr_sectors": IO_DESC.NR_SECTORS,
  "ublksrv_io_desc.start_sector": IO_DESC.START_SECTOR,
  "ublksrv_io_desc.addr": IO_DESC.ADDR,
  "sizeof(ublk_params)": PARAMS.BYTES,
  "ublk_params.len": PARAMS.LEN,
  "ublk_params.types": PARAMS.TYPES,
  "ublk_params.basic": PARAMS.BASIC,
  "ublk_params.discard": PARAMS.DISCARD,
  "ublk_params.devt": PARAMS.DEVT,
  "sizeof(ublk_param_basic)": PARAM_BASIC.BYTES,
  "ublk_param_basic.attrs": PARAM_BASIC.ATTRS,
  "ublk_param_basic.logical_bs_shift": PARAM_BASIC.LOGICAL_BS_SHIFT,
  "ublk_param_basic.physical_bs_shift": PARAM_BASIC.PHYSICAL_BS_SHIFT,
  "ublk_param_basic.io_opt_shift": PARAM_BASIC.IO_OPT_SHIFT,
  "ublk_param_basic.io_min_shift": PARAM_BASIC.IO_MIN_SHIFT,
  "ublk_param_basic.max_sectors": PARAM_BASIC.MAX_SECTORS,
  "ublk_param_basic.chunk_sectors": PARAM_BASIC.CHUNK_SECTORS,
  "ublk_param_basic.dev_sectors": PARAM_BASIC.DEV_SECTORS,
  "ublk_param_basic.virt_boundary_mask": PARAM_BASIC.VIRT_BOUNDARY_MASK,
  "sizeof(ublk_param_discard)": PARAM_DISCARD.BYTES,
  "ublk_param_discard.discard_alignment": PARAM_DISCARD.DISCARD_ALIGNMENT,
  "ublk_param_discard.discard_granularity": PARAM_DISCARD.DISCARD_GRANULARITY,
  "ublk_param_discard.max_discard_sectors": PARAM_DISCARD.MAX_DISCARD_SECTORS,
  "ublk_param_discard.max_write_zeroes_sectors": PARAM_DISCARD.MAX_WRITE_ZEROES_SECTORS,
  "ublk_param_discard.max_discard_segments": PARAM_DISCARD.MAX_DISCARD_SEGMENTS,
  "sizeof(ublk_param_devt)": PARAM_DEVT.BYTES,
  "ublk_param_devt.char_major": PARAM_DEVT.CHAR_MAJOR,
  "ublk_param_devt.char_minor": PARAM_DEVT.CHAR_MINOR,
  "ublk_param_devt.disk_major": PARAM_DEVT.DISK_MAJOR,
  "ublk_param_devt.disk_minor": PARAM_DEVT.DISK_MINOR,
  UBLK_U_CMD_GET_DEV_INFO: UBLK_U_CMD.GET_DEV_INFO,
  UBLK_U_CMD_ADD_DEV: UBLK_U_CMD.ADD_DEV,
  UBLK_U_CMD_DEL_DEV: UBLK_U_CMD.DEL_DEV,
  UBLK_U_CMD_START_DEV: UBLK_U_CMD.START_DEV,
  UBLK_U_CMD_STOP_DEV: UBLK_U_CMD.STOP_DEV,
  UBLK_U_CMD_SET_PARAMS: UBLK_U_CMD.SET_PARAMS,
  UBLK_U_CMD_GET_PARAMS: UBLK_U_CMD.GET_PARAMS,
  UBLK_U_CMD_START_USER_RECOVERY: UBLK_U_CMD.START_USER_RECOVERY,
  UBLK_U_CMD_END_USER_RECOVERY: UBLK_U_CMD.END_USER_RECOVERY,
  UBLK_U_CMD_GET_FEATURES: UBLK_U_CMD.GET_FEATURES,
  UBLK_U_IO_FETCH_REQ: UBLK_U_IO.FETCH_REQ,
  UBLK_U_IO_COMMIT_AND_FETCH_REQ: UBLK_U_IO.COMMIT_AND_FETCH_REQ,
  UBLK_F_URING_CMD_COMP_IN_TASK: UBLK_F.URING_CMD_COMP_IN_TASK,
  UBLK_F_USER_RECOVERY: UBLK_F.USER_RECOVERY,
  UBLK_F_USER_RECOVERY_REISSUE: UBLK_F.USER_RECOVERY_REISSUE,
  UBLK_F_CMD_IOCTL_ENCODE: UBLK_F.CMD_IOCTL_ENCODE,
  UBLK_S_DEV_DEAD: UBLK_S.DEV_DEAD,
  UBLK_S_DEV_LIVE: UBLK_S.DEV_LIVE,
  UBLK_S_DEV_QUIESCED: UBLK_S.DEV_QUIESCED,
  UBLK_MAX_QUEUE_DEPTH: UBLK_MAX_QUEUE_DEPTH,
  UBLK_MAX_NR_QUEUES: UBLK_MAX_NR_QUEUES,
  UBLK_IO_OP_READ: UBLK_IO_OP.READ,
  UBLK_IO_OP_WRITE: UBLK_IO_OP.WRITE,
  UBLK_IO_OP_FLUSH: UBLK_IO_OP.FLUSH,
  UBLK_IO_OP_DISCARD: UBLK_IO_OP.DISCARD,
  UBLK_IO_OP_WRITE_SAME: UBLK_IO_OP.WRITE_SAME,
  UBLK_IO_OP_WRITE_ZEROES: UBLK_IO_OP.WRITE_ZEROES,
  UBLK_IO_F_FUA: UBLK_IO_F.FUA,
  UBLK_IO_F_NOUNMAP: UBLK_IO_F.NOUNMAP,
  UBLK_IO_RES_OK: UBLK_IO_RES_OK,
  UBLK_IO_RES_ABORT: UBLK_IO_RES_ABORT,
  UBLK_PARAM_TYPE_BASIC: UBLK_PARAM_TYPE.BASIC,
  UBLK_PARAM_TYPE_DISCARD: UBLK_PARAM_TYPE.DISCARD,
  UBLK_PARAM_TYPE_DEVT: UBLK_PARAM_TYPE.DEVT,
  UBLK_ATTR_READ_ONLY: UBLK_ATTR.READ_ONLY,
  UBLK_ATTR_ROTATIONAL: UBLK_ATTR.ROTATIONAL,
  UBLK_ATTR_VOLATILE_CACHE: UBLK_ATTR.VOLATILE_CACHE,
  UBLK_ATTR_FUA: UBLK_ATTR.FUA,
};

Deno.test("uapi layout: every io_uring and ublk size, offset and constant matches the 6.12 headers", async () => {
  const header = await headerValues();
  const ours = Object.fromEntries(
    Object.entries(OURS).map(([name, value]) => [name, Number(value)]),
  );
  const theirs = Object.fromEntries(Object.keys(OURS).map((name) => [name, header.get(name)]));
  assertEquals(ours, theirs);
  // Nothing the program prints is left unchecked.
  assertEquals([...header.keys()].filter((name) => !(name in OURS)), []);
});

/* Prints the sizes, offsets and constants of the kernel's io_uring and ublk uapi that
 * mod/sys/io_uring.ts and mod/sys/ublk_abi.ts encode by hand, one "NAME VALUE" per line.
 * Built and run by tests/sys/uapi_layout_test.ts against trixie's (6.12) headers. */
#include <stddef.h>
#include <errno.h>
#include <stdio.h>
#include <linux/io_uring.h>
#include <linux/ublk_cmd.h>

#define SIZE(type) printf("sizeof(" #type ") %zu\n", sizeof(struct type))
#define OFF(type, field) printf(#type "." #field " %zu\n", offsetof(struct type, field))
#define CONST(name) printf(#name " %llu\n", (unsigned long long)(name))

int main(void) {
  SIZE(io_uring_params);
  OFF(io_uring_params, sq_entries); OFF(io_uring_params, cq_entries); OFF(io_uring_params, flags);
  OFF(io_uring_params, features); OFF(io_uring_params, sq_off); OFF(io_uring_params, cq_off);
  OFF(io_sqring_offsets, head); OFF(io_sqring_offsets, tail); OFF(io_sqring_offsets, ring_mask);
  OFF(io_sqring_offsets, array); OFF(io_cqring_offsets, head); OFF(io_cqring_offsets, tail);
  OFF(io_cqring_offsets, ring_mask); OFF(io_cqring_offsets, cqes);
  SIZE(io_uring_sqe);
  OFF(io_uring_sqe, opcode); OFF(io_uring_sqe, flags); OFF(io_uring_sqe, ioprio); OFF(io_uring_sqe, fd);
  OFF(io_uring_sqe, off); OFF(io_uring_sqe, cmd_op); OFF(io_uring_sqe, addr); OFF(io_uring_sqe, len);
  OFF(io_uring_sqe, rw_flags); OFF(io_uring_sqe, user_data); OFF(io_uring_sqe, cmd);
  SIZE(io_uring_cqe);
  OFF(io_uring_cqe, user_data); OFF(io_uring_cqe, res); OFF(io_uring_cqe, flags);
  CONST(IORING_SETUP_CQSIZE); CONST(IORING_SETUP_COOP_TASKRUN); CONST(IORING_SETUP_SQE128);
  CONST(IORING_FEAT_SINGLE_MMAP); CONST(IORING_ENTER_GETEVENTS);
  CONST(IORING_OP_NOP); CONST(IORING_OP_POLL_ADD); CONST(IORING_OP_READ); CONST(IORING_OP_WRITE); CONST(IORING_OP_URING_CMD);
  CONST(IORING_OP_READV); CONST(IORING_OP_WRITEV); CONST(IORING_OP_FSYNC); CONST(IORING_FSYNC_DATASYNC);
  CONST(IORING_REGISTER_EVENTFD);
  CONST(IORING_OFF_SQ_RING); CONST(IORING_OFF_CQ_RING); CONST(IORING_OFF_SQES);

  SIZE(ublksrv_ctrl_cmd);
  OFF(ublksrv_ctrl_cmd, dev_id); OFF(ublksrv_ctrl_cmd, queue_id); OFF(ublksrv_ctrl_cmd, len);
  OFF(ublksrv_ctrl_cmd, addr); OFF(ublksrv_ctrl_cmd, data); OFF(ublksrv_ctrl_cmd, dev_path_len);
  SIZE(ublksrv_io_cmd);
  OFF(ublksrv_io_cmd, q_id); OFF(ublksrv_io_cmd, tag); OFF(ublksrv_io_cmd, result); OFF(ublksrv_io_cmd, addr);
  SIZE(ublksrv_ctrl_dev_info);
  OFF(ublksrv_ctrl_dev_info, nr_hw_queues); OFF(ublksrv_ctrl_dev_info, queue_depth);
  OFF(ublksrv_ctrl_dev_info, state); OFF(ublksrv_ctrl_dev_info, max_io_buf_bytes);
  OFF(ublksrv_ctrl_dev_info, dev_id); OFF(ublksrv_ctrl_dev_info, ublksrv_pid);
  OFF(ublksrv_ctrl_dev_info, flags); OFF(ublksrv_ctrl_dev_info, ublksrv_flags);
  OFF(ublksrv_ctrl_dev_info, owner_uid); OFF(ublksrv_ctrl_dev_info, owner_gid);
  SIZE(ublksrv_io_desc);
  OFF(ublksrv_io_desc, op_flags); OFF(ublksrv_io_desc, nr_sectors); OFF(ublksrv_io_desc, start_sector);
  OFF(ublksrv_io_desc, addr);
  SIZE(ublk_params);
  OFF(ublk_params, len); OFF(ublk_params, types); OFF(ublk_params, basic); OFF(ublk_params, discard);
  OFF(ublk_params, devt);
  SIZE(ublk_param_basic);
  OFF(ublk_param_basic, attrs); OFF(ublk_param_basic, logical_bs_shift);
  OFF(ublk_param_basic, physical_bs_shift); OFF(ublk_param_basic, io_opt_shift);
  OFF(ublk_param_basic, io_min_shift); OFF(ublk_param_basic, max_sectors);
  OFF(ublk_param_basic, chunk_sectors); OFF(ublk_param_basic, dev_sectors);
  OFF(ublk_param_basic, virt_boundary_mask);
  SIZE(ublk_param_discard);
  OFF(ublk_param_discard, discard_alignment); OFF(ublk_param_discard, discard_granularity);
  OFF(ublk_param_discard, max_discard_sectors); OFF(ublk_param_discard, max_write_zeroes_sectors);
  OFF(ublk_param_discard, max_discard_segments);
  SIZE(ublk_param_devt);
  OFF(ublk_param_devt, char_major); OFF(ublk_param_devt, char_minor); OFF(ublk_param_devt, disk_major);
  OFF(ublk_param_devt, disk_minor);
  CONST(UBLK_U_CMD_GET_DEV_INFO); CONST(UBLK_U_CMD_ADD_DEV); CONST(UBLK_U_CMD_DEL_DEV);
  CONST(UBLK_U_CMD_START_DEV); CONST(UBLK_U_CMD_STOP_DEV); CONST(UBLK_U_CMD_SET_PARAMS);
  CONST(UBLK_U_CMD_GET_PARAMS); CONST(UBLK_U_CMD_START_USER_RECOVERY);
  CONST(UBLK_U_CMD_END_USER_RECOVERY); CONST(UBLK_U_CMD_GET_FEATURES);
  CONST(UBLK_U_IO_FETCH_REQ); CONST(UBLK_U_IO_COMMIT_AND_FETCH_REQ);
  CONST(UBLK_F_URING_CMD_COMP_IN_TASK); CONST(UBLK_F_USER_RECOVERY); CONST(UBLK_F_USER_RECOVERY_REISSUE);
  CONST(UBLK_F_CMD_IOCTL_ENCODE);
  CONST(UBLK_S_DEV_DEAD); CONST(UBLK_S_DEV_LIVE); CONST(UBLK_S_DEV_QUIESCED);
  CONST(UBLK_MAX_QUEUE_DEPTH); CONST(UBLK_MAX_NR_QUEUES);
  CONST(UBLK_IO_OP_READ); CONST(UBLK_IO_OP_WRITE); CONST(UBLK_IO_OP_FLUSH); CONST(UBLK_IO_OP_DISCARD);
  CONST(UBLK_IO_OP_WRITE_SAME); CONST(UBLK_IO_OP_WRITE_ZEROES);
  CONST(UBLK_IO_F_FUA); CONST(UBLK_IO_F_NOUNMAP);
  CONST(UBLK_IO_RES_OK); printf("UBLK_IO_RES_ABORT %d\n", UBLK_IO_RES_ABORT);
  CONST(UBLK_PARAM_TYPE_BASIC); CONST(UBLK_PARAM_TYPE_DISCARD); CONST(UBLK_PARAM_TYPE_DEVT);
  CONST(UBLK_ATTR_READ_ONLY); CONST(UBLK_ATTR_ROTATIONAL); CONST(UBLK_ATTR_VOLATILE_CACHE);
  CONST(UBLK_ATTR_FUA);
  return 0;
}

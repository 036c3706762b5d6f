/**
 * Every limit of dm-remap in one place, with load-time checks of how they relate.
 *
 * Units are in the names: `_BYTES`, `_SECTORS`, `_MS`, `_MAX`, `_COUNT`.
 *
 * @module
 */

import { assert } from "./assert.ts";

/** The unit of metadata placement and of torn-write atomicity we assume: none larger. */
export const SECTOR_BYTES = 512;

/** Sectors of a spare where the five metadata copies start (product definition). */
export const COPY_SECTORS: readonly number[] = [0, 1024, 2048, 4096, 8192];

/** Bytes reserved for one metadata copy: one header sector plus the payload. */
export const COPY_BYTES = 64 * 1024;

/** The largest payload one copy can carry. */
export const COPY_PAYLOAD_BYTES_MAX = COPY_BYTES - SECTOR_BYTES;

/** Where the remap log starts on a spare: past the last copy, aligned to 1 MiB. */
export const LOG_OFFSET_BYTES = 8 * 1024 * 1024;

/** Size of the remap log region on each spare. */
export const LOG_BYTES = 4 * 1024 * 1024;

/** Smallest allowed block size (the unit that is remapped). */
export const BLOCK_BYTES_MIN = 512;
/** Largest allowed block size. */
export const BLOCK_BYTES_MAX = 64 * 1024;
/** Block size used when `create` is not told otherwise. */
export const BLOCK_BYTES_DEFAULT = 4096;

/** Data slots start on this boundary so they never share a sector with metadata. */
export const DATA_ALIGN_BYTES = 1024 * 1024;

/** A spare must hold at least this many data slots to be worth adding. */
export const SPARE_SLOTS_MIN = 16;

/** Spares per setup (product definition: 1 to 8). */
export const SPARES_MAX = 8;

/** Pending (unreadable, not yet rewritten) blocks remembered in the metadata. */
export const PENDING_MAX = 1024;

/** Extra attempts at a failed main-disk read before it is EIO and pending. */
export const READ_RETRIES_DEFAULT = 2;
/** Upper bound for the configurable read retries. */
export const READ_RETRIES_MAX = 16;

/** Remaps committed together in one group commit (one data flush, one log flush). */
export const REMAP_BATCH_MAX = 256;

/**
 * Blocks a spare removal queues at a time: one group commit's worth, so
 * client remaps queued meanwhile wait for at most one batch of the migration.
 */
export const MIGRATION_CHUNK_BLOCKS = REMAP_BATCH_MAX;

/**
 * How long `spare add|remove` waits for the API's answer: adding formats the
 * spare and writes every spare's metadata; removing waits for the metadata
 * queue, behind a group commit.
 */
export const SPARE_REQUEST_TIMEOUT_MS = 60_000;

/** Requests in flight per O_DIRECT device through Linux AIO (its io_setup size). */
export const AIO_SLOTS_MAX = 256;

/** Events kept in a setup's history database; the oldest are dropped past this. */
export const EVENTS_MAX = 100_000;

/**
 * How long opening or writing the history database waits for another
 * process's write (SQLite's busy timeout): `assemble` records its decisions
 * in the same file while the `serve` it started opens it.
 */
export const HISTORY_BUSY_TIMEOUT_MS = 10_000;

/** NBD: the largest request payload the server accepts (as nbdkit's MAX_REQUEST_SIZE). */
export const NBD_REQUEST_BYTES_MAX = 32 * 1024 * 1024;
/** NBD: options a client may send before it must pick an export. */
export const NBD_OPTIONS_MAX = 64;
/** NBD: the longest option payload accepted during the handshake. */
export const NBD_OPTION_BYTES_MAX = 64 * 1024;
/** NBD: the longest string (export name, meta context) accepted. */
export const NBD_STRING_BYTES_MAX = 4096;
/** NBD: requests in flight per connection before the reader waits. */
export const NBD_INFLIGHT_MAX = 128;
/** Memory one buffer shape may keep in its pool (1 MiB replies keep 16, 4 KiB ones the in-flight maximum). */
export const BUFFER_POOL_SHAPE_BYTES_MAX = 16 * 1024 * 1024;
/** Buffer shapes pooled per connection; others are allocated per request. */
export const BUFFER_POOL_SHAPES_MAX = 4;
/** Fault layer: bad blocks listed exactly for the data plane; more send every request through the layer. */
export const FAULT_SHARED_BLOCKS_MAX = 65_536;
/** NBD: connections served at once. */
export const NBD_CONNECTIONS_MAX = 64;
/** ublk export: queues (a worker thread each) by default, and at most. */
export const UBLK_QUEUES_DEFAULT = 1;
export const UBLK_QUEUES_MAX = 16;
/** ublk export: requests per queue by default, and at most. */
export const UBLK_QUEUE_DEPTH_DEFAULT = 64;
export const UBLK_QUEUE_DEPTH_MAX = 1024;
/** ublk export: the largest request the kernel sends; every tag holds a buffer this big. */
export const UBLK_IO_BYTES_MAX = 512 * 1024;
/** Kernel attach: connections to `/dev/nbdN` (the kernel spreads requests over them). */
export const ATTACH_CONNECTIONS_DEFAULT = 2;
/** Kernel attach: seconds before the kernel sends a request without a reply again (its own default). */
export const ATTACH_REQUEST_TIMEOUT_S_DEFAULT = 30;
/**
 * Kernel attach: seconds the kernel holds I/O while no server is connected
 * (a restart, an upgrade), before failing it, as multipath's queue_if_no_path
 * with a limit.
 */
export const ATTACH_DEAD_CONNECTION_TIMEOUT_S_DEFAULT = 600;
/** Kernel attach: the longest timeout accepted (a day). */
export const KERNEL_TIMEOUT_S_MAX = 86_400;

/** The largest zero buffer written at once when the kernel cannot zero a range itself. */
export const ZERO_CHUNK_BYTES = 1024 * 1024;

/** The largest bounce buffer a direct-I/O request uses at a time. */
export const BOUNCE_BYTES_MAX = 1024 * 1024;

/** Memory alignment for direct I/O: at least any logical sector size Linux uses. */
export const DIRECT_ALIGN_BYTES = 4096;

/** A call interrupted by a signal (EINTR) is retried at most this many times. */
export const EINTR_RETRIES_MAX = 8;

/** Socket reads are buffered in this much memory, so a 28-byte request header costs no syscall of its own. */
export const CONN_READ_BUFFER_BYTES = 256 * 1024;

/** Replies smaller than this are copied into a batch; larger ones are written alone. */
export const REPLY_COPY_BYTES_MAX = 64 * 1024;

/** The largest batch of small replies written at once. */
export const REPLY_BATCH_BYTES_MAX = 256 * 1024;

/** Default for {@link NbdServerOptions.handshakeTimeoutMs}. */
export const NBD_HANDSHAKE_TIMEOUT_MS_DEFAULT = 30_000;

/** Default for {@link NbdServerOptions.closeTimeoutMs}. */
export const NBD_CLOSE_TIMEOUT_MS_DEFAULT = 10_000;

/** Payload bytes (write data, read buffers) in flight per connection before the reader waits. */
export const NBD_INFLIGHT_BYTES_MAX = 2 * NBD_REQUEST_BYTES_MAX;

/** An oversized write's payload is skipped in pieces of this size, so it never needs a big buffer. */
export const SKIP_CHUNK_BYTES = 1024 * 1024;

/**
 * Older metadata backups kept per setup besides the current one (LVM keeps at
 * least 10 in /etc/lvm/archive); the oldest are removed past this.
 */
export const BACKUP_ARCHIVE_MAX = 10;

/** How long `dm-remap status` waits for the server by default. */
export const STATUS_TIMEOUT_MS_DEFAULT = 5_000;
/** The most bytes of request line and headers the status API reads from one request. */
export const API_REQUEST_HEAD_BYTES_MAX = 16 * 1024;
/** The largest request body the status API takes (its mutations take small JSON options). */
export const API_REQUEST_BODY_BYTES_MAX = 64 * 1024;
/** How long one exchange on the API's Unix socket may take: the request sent, the answer read. */
export const API_REQUEST_TIMEOUT_MS = 10_000;
/** Connections the API's Unix socket serves at once; more are closed at once. */
export const API_CONNECTIONS_MAX = 64;

/** Devices followed below one device (partitions, dm/md slaves, loop files) when comparing disks. */
export const STORAGE_STACK_NODES_MAX = 64;

/** Processes whose open files are searched to name who holds a busy device. */
export const PROCESSES_SEARCHED_MAX = 65_536;

/** How long `discover` waits for one candidate's probe before reporting it "timed out". */
export const PROBE_TIMEOUT_MS_DEFAULT = 2_000;
/** The longest probe timeout `--timeout-ms` accepts. */
export const PROBE_TIMEOUT_MS_MAX = 600_000;
/** Probe workers `discover` runs at once: candidates are probed this many at a time. */
export const PROBE_WORKERS_MAX = 4;
/** How long a probe worker may take to start (load the program) before discovery fails. */
export const PROBE_WORKER_START_MS_MAX = 30_000;
/** Candidates one discovery probes at most (block devices plus image files). */
export const DISCOVER_CANDIDATES_MAX = 4_096;
/** The confidence (0-100) `assemble` requires by default to start a setup. */
export const ASSEMBLE_THRESHOLD_DEFAULT = 90;
/** How long `assemble` waits for another `assemble` to release the lock. */
export const ASSEMBLE_LOCK_WAIT_MS_MAX = 60_000;

/** Where `serve` and `config` read the configuration file unless `--config` or `DM_REMAP_CONFIG` say otherwise. */
export const CONFIG_PATH_DEFAULT = "/etc/dm-remap/dm-remap.yaml";
/** The largest configuration file read: a file this big is a mistake, not a configuration. */
export const CONFIG_BYTES_MAX = 1024 * 1024;
/** Per-setup sections one configuration file holds at most. */
export const CONFIG_SETUPS_MAX = 256;
/** Problems one configuration check reports at most; the rest are counted. */
export const CONFIG_PROBLEMS_MAX = 50;

/** Alerts waiting per target; past this new ones are dropped and counted, so I/O never waits. */
export const ALERT_QUEUE_MAX = 256;
/** Alerts one target sends per minute at most, unless configured; the rest are counted as suppressed. */
export const ALERT_RATE_PER_MINUTE_DEFAULT = 10;
/** The most alerts per minute a target may be configured for. */
export const ALERT_RATE_PER_MINUTE_MAX = 6_000;
/** How long the same alert (kind, setup, device) is not sent again, unless configured. */
export const ALERT_REPEAT_INTERVAL_S_DEFAULT = 3_600;
/** The longest configurable repeat interval (one week). */
export const ALERT_REPEAT_INTERVAL_S_MAX = 604_800;
/** How long one webhook POST or exec hook may take, unless configured. */
export const ALERT_TIMEOUT_MS_DEFAULT = 5_000;
/** The longest configurable delivery timeout. */
export const ALERT_TIMEOUT_MS_MAX = 120_000;
/** Extra webhook attempts after a failed one, unless configured. */
export const ALERT_RETRIES_DEFAULT = 3;
/** The most configurable webhook retries. */
export const ALERT_RETRIES_MAX = 10;
/** The first retry's delay; each next one doubles, unless configured. */
export const ALERT_BACKOFF_MS_DEFAULT = 1_000;
/** The longest configurable first backoff. */
export const ALERT_BACKOFF_MS_MAX = 60_000;
/** Alert targets one configuration names at most. */
export const ALERT_TARGETS_MAX = 32;
/** How long a stopping service waits for queued alerts before it drops them. */
export const ALERT_DRAIN_MS_MAX = 5_000;
/** A spare this full (percent of its slots used) raises `spare-nearly-full`, unless configured. */
export const SPARE_NEARLY_FULL_PERCENT_DEFAULT = 90;
/** Bytes of an exec hook's output kept for the log when it fails. */
export const ALERT_OUTPUT_BYTES_MAX = 1024;

/** Policies one configuration holds at most. */
export const POLICIES_MAX = 64;
/** How often the server evaluates its policies besides on events, unless configured. */
export const POLICY_INTERVAL_S_DEFAULT = 60;
/** The longest configurable policy interval. */
export const POLICY_INTERVAL_S_MAX = 86_400;
/** How often `serve` reads the disks' SMART data (`--smart-interval`). */
export const SMART_INTERVAL_MS_DEFAULT = 30 * 60_000;
/** How long one `smartctl` run may take before it is abandoned (a disk that hangs on SMART). */
export const SMART_TIMEOUT_MS_MAX = 60_000;
/** Bytes of `smartctl --json` output read at most (a real report is under 64 KiB). */
export const SMART_OUTPUT_BYTES_MAX = 1024 * 1024;
/** SMART readings kept per setup in the history database; the oldest are dropped past this. */
export const SMART_READINGS_MAX = 10_000;
/** How often `serve` reads and repairs every metadata copy and log sector (`--scrub-interval`). */
export const SCRUB_INTERVAL_MS_DEFAULT = 60 * 60_000;
/** The first wait before a spare whose scrub failed is scrubbed again; doubled per failure. */
export const SCRUB_RETRY_BASE_MS = 60_000;
/** Failed scrubs in a row after which a spare's metadata is reported degraded and left alone. */
export const SCRUB_RETRIES_MAX = 5;
/** The shortest allowed interval of the periodic SMART reader and scrub. */
export const HEALTH_INTERVAL_MS_MIN = 1_000;
/** The longest interval the SMART and scrub flags take, in seconds (a week). */
export const HEALTH_INTERVAL_S_MAX = 7 * 86_400;
/** Days of event history the spare-pool forecast reads its rates from. */
export const FORECAST_WINDOW_DAYS = 7;
/** Events the forecast reads at most from the history. */
export const FORECAST_EVENTS_MAX = 100_000;
/** How long a forecast is reused while the pool does not change (the status is polled often). */
export const FORECAST_REFRESH_MS = 60_000;
// ---- The background scanner (mod/scan/) ----

/** The scanner's smallest read, while foreground requests run (32 KiB). */
export const SCAN_CHUNK_SECTORS_MIN = 64;
/** The scanner's largest read, when the disk is idle (1 MiB). */
export const SCAN_CHUNK_SECTORS_MAX = 2048;
/**
 * Time from the end of one complete pass (or from the setup's creation) to
 * the start of the next, by default.
 */
export const SCAN_INTERVAL_MS_DEFAULT = 24 * 60 * 60 * 1000;
/**
 * How often the waiting scanner reads the wall clock again: a timer runs on
 * the monotonic clock, which stops while the machine sleeps, so a pass due
 * after a suspend or a clock change starts within this.
 */
export const SCAN_SCHEDULE_CHECK_MS = 60_000;
/** The shortest pass interval `--scan-interval` accepts. */
export const SCAN_INTERVAL_MS_MIN = 1_000;
/** The scanner's hard rate cap by default, like md's speed_limit_max (200 MB/s there). */
export const SCAN_RATE_BYTES_PER_S_MAX_DEFAULT = 200 * 1024 * 1024;
/** The rate the scanner keeps while foreground requests run, like md's speed_limit_min. */
export const SCAN_RATE_BYTES_PER_S_BUSY = 1024 * 1024;
/** The window the scanner's reported rate is measured over. */
export const SCAN_RATE_WINDOW_MS = 5_000;
/** The lowest rate cap `--scan-rate-max` accepts. */
export const SCAN_RATE_BYTES_PER_S_MIN = 64 * 1024;
/** The scanner's first wait while foreground requests are in flight; each further wait doubles. */
export const SCAN_YIELD_POLL_MS = 2;
/** The longest the scanner waits for the foreground to drain before it reads its smallest chunk anyway. */
export const SCAN_YIELD_MS_MAX = 100;
/** Time without a new foreground request after which the disk counts as idle. */
export const SCAN_IDLE_AFTER_MS = 500;
/** How often the scan position is written to the metadata (not per chunk). */
export const SCAN_PERSIST_INTERVAL_MS = 30_000;
/**
 * The shortest time between two metadata writes of the scanner's findings:
 * the pending blocks and weak blocks of a whole run or more go in one write,
 * and the scanner writes at most once a second however many blocks fail.
 */
export const SCAN_RECORD_WRITE_INTERVAL_MS = 1_000;
/**
 * Blocks the scanner reads one at a time (around a failed or weak run) per
 * second while foreground requests run: each failed block is a pending mark
 * and an event (a log line and a history row), so a pass over a large failing
 * region must not crowd the clients out; it goes on at the rate cap when idle.
 */
export const SCAN_INSPECT_BLOCKS_PER_S_BUSY = 64;
/** A read slower than this many times the disk's baseline (plus the floor) is an outlier. */
export const SCAN_SLOW_FACTOR = 10;
/**
 * Latency every read may take beyond its expected time before it counts as
 * slow: above a disk's seek and a busy machine's scheduling delay.
 */
export const SCAN_SLOW_FLOOR_MS = 50;
/**
 * Reads of a block that looked slow, all of which must be slow too before it
 * is relocated: one late read is as often the machine as the disk.
 */
export const SCAN_SLOW_CONFIRM_READS = 2;
/**
 * Quiet clean reads the scanner learns the disk's baseline from before it
 * judges any read slow: a starting system's first reads are cold (in vm 2 a
 * healthy block read in 116 ms at startup was relocated as slow).
 */
export const SCAN_BASELINE_READS_MIN = 4;
/** Blocks on each side of a weak or failed block that the scanner re-reads first. */
export const SCAN_NEIGHBOURHOOD_BLOCKS = 8;
/** The health region size by default. */
export const REGION_BYTES_DEFAULT = 1024 * 1024 * 1024;
/** The smallest region `--region-size` accepts. */
export const REGION_BYTES_MIN = 1024 * 1024;
/** Region records (those with findings) the metadata keeps at most; the worst are kept. */
export const SCAN_REGIONS_RECORDED_MAX = 64;

assert(SCAN_CHUNK_SECTORS_MIN <= SCAN_CHUNK_SECTORS_MAX, "scan chunk bounds are ordered");
assert(SCAN_RATE_BYTES_PER_S_BUSY <= SCAN_RATE_BYTES_PER_S_MAX_DEFAULT, "busy rate under the cap");
assert(REGION_BYTES_MIN % BLOCK_BYTES_MAX === 0, "regions hold whole blocks");
assert(
  SCAN_REGIONS_RECORDED_MAX * 200 + PENDING_MAX * 24 < COPY_PAYLOAD_BYTES_MAX * 3 / 4,
  "the scan record fits in a copy beside the pending list",
);

assert(COPY_SECTORS.length === 5, "five metadata copies");
for (let i = 1; i < COPY_SECTORS.length; i++) {
  const gapBytes = (COPY_SECTORS[i]! - COPY_SECTORS[i - 1]!) * SECTOR_BYTES;
  assert(gapBytes >= COPY_BYTES, "metadata copies do not overlap");
}
assert(
  COPY_SECTORS[COPY_SECTORS.length - 1]! * SECTOR_BYTES + COPY_BYTES <= LOG_OFFSET_BYTES,
  "the log starts after the last copy",
);
assert(LOG_OFFSET_BYTES % DATA_ALIGN_BYTES === 0, "the log is aligned");
assert(LOG_BYTES % DATA_ALIGN_BYTES === 0, "the log ends aligned");
assert(BLOCK_BYTES_MAX <= DATA_ALIGN_BYTES, "data slots stay aligned for every block size");
assert(
  PENDING_MAX * 24 < COPY_PAYLOAD_BYTES_MAX / 2,
  "pending list fits in a copy with room to spare",
);
assert(NBD_REQUEST_BYTES_MAX % BLOCK_BYTES_MAX === 0, "requests split into whole blocks");
assert(PROBE_TIMEOUT_MS_DEFAULT <= PROBE_TIMEOUT_MS_MAX, "the default probe timeout is allowed");
assert(PROBE_WORKERS_MAX >= 1, "discovery probes at least one candidate at a time");
assert(ASSEMBLE_THRESHOLD_DEFAULT >= 0 && ASSEMBLE_THRESHOLD_DEFAULT <= 100, "a confidence");
assert(ALERT_RATE_PER_MINUTE_DEFAULT <= ALERT_RATE_PER_MINUTE_MAX, "the default rate is allowed");
assert(ALERT_TIMEOUT_MS_DEFAULT <= ALERT_TIMEOUT_MS_MAX, "the default alert timeout is allowed");
assert(ALERT_RETRIES_DEFAULT <= ALERT_RETRIES_MAX, "the default retries are allowed");
assert(ALERT_BACKOFF_MS_DEFAULT <= ALERT_BACKOFF_MS_MAX, "the default backoff is allowed");
assert(
  ALERT_REPEAT_INTERVAL_S_DEFAULT <= ALERT_REPEAT_INTERVAL_S_MAX,
  "the default repeat is allowed",
);
assert(
  POLICY_INTERVAL_S_DEFAULT <= POLICY_INTERVAL_S_MAX,
  "the default policy interval is allowed",
);
assert(ALERT_DRAIN_MS_MAX >= ALERT_TIMEOUT_MS_DEFAULT, "a stop waits for one default delivery");
assert(SMART_INTERVAL_MS_DEFAULT >= HEALTH_INTERVAL_MS_MIN, "the SMART interval is allowed");
assert(SCRUB_INTERVAL_MS_DEFAULT >= HEALTH_INTERVAL_MS_MIN, "the scrub interval is allowed");
assert(SCRUB_RETRY_BASE_MS * 2 ** SCRUB_RETRIES_MAX < 2 ** 31, "a scrub backoff fits a timer");
assert(FORECAST_EVENTS_MAX <= EVENTS_MAX, "the forecast reads no more than the history keeps");

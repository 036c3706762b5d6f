/**
 * The name of the data plane's ublk queue workers: main.ts starts every
 * worker from itself and tells a ublk queue worker from an NBD one by it.
 *
 * @module
 */

/** `WorkerOptions.name` of a ublk queue worker. */
export const UBLK_QUEUE_WORKER_NAME = "dm-remap-ublk-queue";

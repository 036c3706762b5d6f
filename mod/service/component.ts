/**
 * A part of a running setup with a lifecycle of its own: an export, the
 * status API, and later the scanner, alerts or a kernel attachment. The
 * {@link SetupService} starts its components in order once the engine is
 * assembled, and stops them in reverse.
 *
 * @module
 */

/** Something the service starts and stops. */
export interface ServiceComponent {
  /**
   * Takes what it needs (sockets, workers, listeners). When it throws, it
   * has released what it took itself; the service releases the rest.
   */
  start(): Promise<void>;
  /** Releases what {@link start} took. Called once, and only after start succeeded. */
  stop(): Promise<void>;
}

/**
 * The queue every change to the spares' metadata goes through: one change at
 * a time, and a client's remap first.
 *
 * Two lanes: `client` for group commits that answer client writes, and
 * `background` for what no client waits on (the scanner's records and the
 * pending marks it found, the delayed setup-state write, scrubs and repairs,
 * relocations the scanner asked for). When a change ends, the oldest client
 * change runs next; a background change runs only when no client change
 * waits. A change already running is never interrupted, so a client's remap
 * waits for at most one background change, however many are queued.
 *
 * @module
 */

/** Who waits on a metadata change. */
export type MetadataLane = "client" | "background";

interface Queued {
  start: () => void;
}

/** Serialises metadata changes, client lane first. */
export class MetadataQueue {
  readonly #waiting: Record<MetadataLane, Queued[]> = { client: [], background: [] };
  #running = false;

  /** Changes waiting in a lane now (not counting the one running). */
  waiting(lane: MetadataLane): number {
    return this.#waiting[lane].length;
  }

  /** Runs `work` once every change before it in its lane, and every waiting client change, ran. */
  run<T>(lane: MetadataLane, work: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const start = () => {
        this.#running = true;
        Promise.resolve().then(work).then(resolve, reject).finally(() => {
          this.#running = false;
          this.#startNext();
        });
      };
      this.#waiting[lane].push({ start });
      if (!this.#running) this.#startNext();
    });
  }

  #startNext(): void {
    const next = this.#waiting.client.shift() ?? this.#waiting.background.shift();
    next?.start();
  }
}

/**
 * A shared/exclusive gate for the remap engine.
 *
 * Ordinary I/O enters shared, so it runs concurrently at the cost of a
 * counter. Creating remaps enters exclusive: it waits until the I/O already
 * inside has finished, so a read-modify-write of a block sees every write that
 * completed before it, and no I/O reaches the main disk for a block while its
 * mapping changes. Waiting exclusive entries go first, so remaps never starve.
 *
 * @module
 */

import { assert } from "../assert.ts";

/** Shared/exclusive gate with writer preference. */
export class IoGate {
  #shared = 0;
  #exclusive = false;
  #waitingExclusive: (() => void)[] = [];
  #waitingShared: (() => void)[] = [];

  /** Shared entries inside now. */
  get sharedInside(): number {
    return this.#shared;
  }

  /** Runs `work` inside the gate, shared. */
  async shared<T>(work: () => Promise<T>): Promise<T> {
    if (this.#exclusive || this.#waitingExclusive.length > 0) {
      await new Promise<void>((resolve) => this.#waitingShared.push(resolve));
    } else {
      this.#shared++;
    }
    try {
      return await work();
    } finally {
      this.#leaveShared();
    }
  }

  /** Runs `work` alone, after every shared entry has left. */
  async exclusive<T>(work: () => Promise<T>): Promise<T> {
    if (this.#exclusive || this.#shared > 0) {
      await new Promise<void>((resolve) => this.#waitingExclusive.push(resolve));
    } else {
      this.#exclusive = true;
    }
    try {
      return await work();
    } finally {
      this.#leaveExclusive();
    }
  }

  #leaveShared(): void {
    assert(this.#shared > 0 && !this.#exclusive, "leaving a shared entry");
    this.#shared--;
    if (this.#shared === 0) this.#admitNext();
  }

  #leaveExclusive(): void {
    assert(this.#exclusive && this.#shared === 0, "leaving the exclusive entry");
    this.#exclusive = false;
    this.#admitNext();
  }

  /** Hands the gate over: a waiting exclusive entry first, else every waiting shared one. */
  #admitNext(): void {
    const nextExclusive = this.#waitingExclusive.shift();
    if (nextExclusive) {
      this.#exclusive = true;
      nextExclusive();
      return;
    }
    const admitted = this.#waitingShared;
    this.#waitingShared = [];
    this.#shared += admitted.length;
    for (const resolve of admitted) resolve();
  }
}

/**
 * The remap engine's state as other threads see it: the table, the pending
 * blocks and a gate, in shared memory, so the connection workers of the NBD
 * data plane route reads and writes without asking the engine's thread.
 *
 * The engine's thread is the only writer. Rules:
 * - The table changes only while the gate is closed and no worker is inside
 *   it, so a worker's lookup and the I/O it starts never overlap a remap (a
 *   read-modify-write on the engine's side then sees every write that
 *   completed before it). Closing is Dekker-style on seq-cst atomics: a
 *   worker counts itself in, then checks the gate; the engine closes the
 *   gate, then waits for the count to reach zero.
 * - The pending list changes at any time ({@link SharedBlockListWriter}).
 * - Once the engine marks the setup failed (its main disk is gone), it stays
 *   failed: a worker then touches no disk and sends every request to the
 *   engine, which answers EIO.
 * - A grown table means new arrays: the generation moves, and a worker whose
 *   arrays are older stays out until it has been handed the new ones.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { PENDING_MAX } from "../constants.ts";
import { type RemapTable, type RemapTableArrays, RemapTableReader } from "./remap_table.ts";
import {
  type SharedBlockListBuffers,
  SharedBlockListReader,
  SharedBlockListWriter,
} from "../shared_block_list.ts";

/** Words of the control array. */
const CONTROL = {
  /** 1 while the engine holds the gate closed for a commit. */
  GATE_CLOSED: 0,
  /** Requests of the workers inside the gate. */
  INSIDE: 1,
  TABLE_GENERATION: 2,
  TABLE_SIZE: 3,
  /** 1 once the setup failed: its main disk is gone. */
  FAILED: 4,
  /** Requests the workers have let in so far (wraps at 2^31): the scanner's sign of load. */
  REQUESTS: 5,
  /**
   * Spares of the setup, as many as joined while serving too: a worker that
   * holds fewer descriptors sends flushes to the engine, which flushes them all.
   */
  SPARES: 6,
  WORDS: 8,
} as const;
/** Longest wait for a worker's notification before the count is checked again. */
const GATE_WAIT_MS = 100;

/** Everything a worker needs to build an {@link EngineStateReader}; structured-cloneable. */
export interface SharedEngineBuffers {
  control: Int32Array;
  pending: SharedBlockListBuffers;
  table: RemapTableArrays;
  /** The table generation these arrays belong to (a reader compares it with the live one). */
  generation: number;
}

/** The engine's side: publishes state and closes the gate around remaps. */
export class EngineStatePublisher {
  readonly #control = new Int32Array(new SharedArrayBuffer(CONTROL.WORDS * 4));
  readonly #pending = new SharedBlockListWriter(PENDING_MAX);
  readonly #table: RemapTable;
  readonly #onOpen = new Set<() => void>();

  /** @param table The engine's table; its arrays are what readers look into. */
  constructor(table: RemapTable) {
    this.#table = table;
    this.#publishTable();
  }

  /** What to hand a new worker. */
  get buffers(): SharedEngineBuffers {
    return {
      control: this.#control,
      pending: this.#pending.buffers,
      table: this.#table.arrays,
      generation: this.#table.generation,
    };
  }

  /** Closes the gate and resolves once no worker is inside. */
  async close(): Promise<void> {
    assert(
      Atomics.load(this.#control, CONTROL.GATE_CLOSED) === 0,
      "the gate is closed by one owner",
    );
    Atomics.store(this.#control, CONTROL.GATE_CLOSED, 1);
    for (;;) {
      const inside = Atomics.load(this.#control, CONTROL.INSIDE);
      if (inside === 0) return;
      assert(inside > 0, "workers inside never go negative");
      const waiting = Atomics.waitAsync(this.#control, CONTROL.INSIDE, inside, GATE_WAIT_MS);
      if (!waiting.async) continue;
      // Deno does not count this wait as pending work: a timer keeps the event loop alive.
      const keepAlive = setTimeout(() => {}, GATE_WAIT_MS);
      await waiting.value;
      clearTimeout(keepAlive);
    }
  }

  /** Publishes the table (new arrays after a grow) and reopens the gate. */
  open(): void {
    this.#publishTable();
    Atomics.store(this.#control, CONTROL.GATE_CLOSED, 0);
    for (const listener of this.#onOpen) listener();
  }

  /** Calls `listener` each time the gate reopens, so workers that stayed out can go on. */
  onOpen(listener: () => void): () => void {
    this.#onOpen.add(listener);
    return () => this.#onOpen.delete(listener);
  }

  /** Requests of the workers inside the gate now. */
  get workersInside(): number {
    return Atomics.load(this.#control, CONTROL.INSIDE);
  }

  /** Requests the workers have let in so far; only its changes mean anything (it wraps). */
  get workerRequests(): number {
    return Atomics.load(this.#control, CONTROL.REQUESTS);
  }

  /** Publishes how many spares the setup has (one more after each `spare add`). */
  publishSpareCount(count: number): void {
    assert(count >= Atomics.load(this.#control, CONTROL.SPARES), "spares only join");
    Atomics.store(this.#control, CONTROL.SPARES, count);
  }

  /** Tells every worker that the setup failed; there is no way back. */
  markFailed(): void {
    Atomics.store(this.#control, CONTROL.FAILED, 1);
  }

  /** Replaces the published pending list (past PENDING_MAX blocks, every write counts as pending). */
  publishPending(blocks: Iterable<number>): void {
    this.#pending.publish(blocks);
  }

  #publishTable(): void {
    Atomics.store(this.#control, CONTROL.TABLE_GENERATION, this.#table.generation);
    Atomics.store(this.#control, CONTROL.TABLE_SIZE, this.#table.size);
  }
}

/** A worker's side: enters the gate, looks blocks up, checks the pending list. */
export class EngineStateReader {
  readonly #control: Int32Array;
  readonly #pending: SharedBlockListReader;
  #table: RemapTableReader;
  #generation: number;

  /** @param buffers From {@link EngineStatePublisher.buffers}, as posted to the worker. */
  constructor(buffers: SharedEngineBuffers) {
    this.#control = buffers.control;
    this.#pending = new SharedBlockListReader(buffers.pending);
    this.#table = new RemapTableReader(buffers.table);
    this.#generation = buffers.generation;
  }

  /** The table as of the last {@link adopt}; valid only between a successful enter and its leave. */
  get table(): RemapTableReader {
    return this.#table;
  }

  /** Remapped blocks, as of the last time the gate opened. */
  get remapCount(): number {
    return Atomics.load(this.#control, CONTROL.TABLE_SIZE);
  }

  /**
   * Takes table arrays handed over by the engine. They carry their own
   * generation: arrays already replaced again by the time they arrive keep
   * the reader out until the next handover.
   */
  adopt(buffers: SharedEngineBuffers): void {
    this.#table = new RemapTableReader(buffers.table);
    this.#generation = buffers.generation;
  }

  /**
   * Counts one request in. False (and nothing counted) while a remap is being
   * committed or this worker's table arrays are out of date: the request waits.
   */
  tryEnter(): boolean {
    Atomics.add(this.#control, CONTROL.INSIDE, 1);
    if (
      Atomics.load(this.#control, CONTROL.GATE_CLOSED) === 0 &&
      Atomics.load(this.#control, CONTROL.TABLE_GENERATION) === this.#generation
    ) {
      Atomics.add(this.#control, CONTROL.REQUESTS, 1);
      return true;
    }
    this.leave();
    return false;
  }

  /** Counts one request out, waking the engine if it waits to close the gate. */
  leave(): void {
    const before = Atomics.sub(this.#control, CONTROL.INSIDE, 1);
    assert(before > 0, "a request leaves the gate once");
    if (before === 1 && Atomics.load(this.#control, CONTROL.GATE_CLOSED) !== 0) {
      Atomics.notify(this.#control, CONTROL.INSIDE);
    }
  }

  /** Spares of the setup now (a worker's descriptors may be fewer: those joined later). */
  get spareCount(): number {
    return Atomics.load(this.#control, CONTROL.SPARES);
  }

  /** Whether the engine marked the setup failed: every request then goes to it. */
  get failed(): boolean {
    return Atomics.load(this.#control, CONTROL.FAILED) !== 0;
  }

  /** Whether any block from `firstBlock` to `lastBlock` (inclusive) is pending. */
  anyPending(firstBlock: number, lastBlock: number): boolean {
    return this.#pending.anyBetween(firstBlock, lastBlock);
  }
}

/**
 * The one place a byte range is split over the remap table: into runs on the
 * main disk and runs of spare slots, each a range of one disk and a place in
 * the request's memory. The engine ({@link RemapDevice}) and the data path's
 * workers plan every request here; a slot's byte offset on its spare comes
 * from `slotOffsetBytes` (metadata/spare_layout.ts), with its range check.
 *
 * Pieces that follow each other on one disk stay one run: consecutive
 * main-disk blocks, remapped neighbours whose slots are neighbours too (a bad
 * patch remapped in order), and, when the caller takes vectored runs,
 * remapped blocks in consecutive slots with main-disk blocks between them
 * (every 4th block remapped in order: 65 I/Os for 1 MiB instead of 128).
 *
 * The worker's hot path plans every request, so a plan allocates one object
 * per run, none per block, and reuses its array: a plan is valid until the
 * next one.
 *
 * @example
 * ```ts
 * import { deepStrictEqual as assertEquals } from "node:assert/strict";
 * import { computeLayout } from "../metadata/spare_layout.ts";
 * import { RequestPlanner } from "./plan.ts";
 * import { RemapTable } from "./remap_table.ts";
 * const layout = computeLayout(64 * 1024 * 1024, 4096)!;
 * const table = new RemapTable();
 * table.insert(1, { spareIndex: 0, slotIndex: 0 });
 * const planner = new RequestPlanner({ blockBytes: 4096, layoutOf: () => layout });
 * const runs = planner.plan({ offsetBytes: 0, lengthBytes: 3 * 4096 }, {
 *   remapCount: table.size,
 *   table,
 * });
 * assertEquals(runs.map((run) => run.kind), ["main", "slot", "main"]);
 * assertEquals(runs[1]!.offsetBytes, layout.dataOffsetBytes);
 * ```
 *
 * @module
 */

import { assert } from "../assert.ts";
import type { ByteRange } from "../device/device.ts";
import { slotOffsetBytes, type SpareLayout } from "../metadata/spare_layout.ts";
import { SUMMARY_EXTENT_BLOCKS } from "./remap_table.ts";

/** The lookups a plan needs: `RemapTable` on the engine's thread, `RemapTableReader` on a worker. */
export interface RemapLookup {
  /** True when no block of the extent holding `blockIndex` is remapped. */
  extentIsClear(blockIndex: number): boolean;
  /** The bucket holding `blockIndex`, or -1 when it is not remapped. */
  bucketOf(blockIndex: number): number;
  spareAt(bucket: number): number;
  slotAt(bucket: number): number;
}

/** What a plan reads: the table, and optionally the pending blocks. */
export interface PlanSource {
  /** Remapped blocks; zero plans the whole range on the main disk without lookups. */
  readonly remapCount: number;
  readonly table: RemapLookup;
  /**
   * Blocks that failed on the main disk and are not remapped yet: when given,
   * each becomes a "pending" run of its own (the engine remaps writes to
   * them). Undefined: they are planned as main-disk blocks.
   */
  readonly pending?: { has(blockIndex: number): boolean; readonly size: number };
}

/** Where one run of a request lives. */
export type RunKind = "main" | "slot" | "pending";

/**
 * A range of one disk and where its memory is in the request. For "main" and
 * "pending" runs the range is on the main disk; for "slot" runs on spare
 * `spareIndex`.
 */
export interface Run extends ByteRange {
  kind: RunKind;
  /** The spare of a "slot" run; -1 for the others. */
  spareIndex: number;
  /** Where its memory starts in the request (the first segment's, for a vectored run). */
  bufferOffset: number;
  /**
   * For a run whose memory is in pieces (remapped blocks in consecutive slots,
   * main-disk blocks between them): offset and length in the request of each
   * piece, in disk order. Undefined for one piece of memory.
   */
  segments: number[] | undefined;
}

/** Options of {@link RequestPlanner}. */
export interface RequestPlannerOptions {
  blockBytes: number;
  /** The layout of a spare the table names, by spare index. */
  layoutOf: (spareIndex: number) => SpareLayout;
  /**
   * Pieces of memory one run may gather; 1 plans no vectored runs.
   * @default 1
   */
  segmentsMax?: number;
}

/** Splits requests over the remap table (see the module doc). */
export class RequestPlanner {
  readonly #blockBytes: number;
  readonly #layoutOf: (spareIndex: number) => SpareLayout;
  readonly #segmentsMax: number;
  readonly #runs: Run[] = [];

  constructor(options: RequestPlannerOptions) {
    assert(Number.isSafeInteger(options.blockBytes) && options.blockBytes > 0, "a block size");
    this.#blockBytes = options.blockBytes;
    this.#layoutOf = options.layoutOf;
    this.#segmentsMax = options.segmentsMax ?? 1;
    assert(this.#segmentsMax >= 1, "a run takes at least one piece of memory");
  }

  /**
   * The runs of `range`, in request order of their first byte.
   *
   * @returns Runs that cover the range exactly once; valid until the next plan.
   */
  plan(range: ByteRange, source: PlanSource): Run[] {
    const { offsetBytes, lengthBytes } = range;
    assert(lengthBytes > 0, "a plan covers some bytes");
    const runs = this.#runs;
    runs.length = 0;
    const pending = source.pending !== undefined && source.pending.size > 0
      ? source.pending
      : undefined;
    if (source.remapCount === 0 && pending === undefined) {
      runs.push(newRun("main", -1, offsetBytes, 0, lengthBytes));
      return runs;
    }
    const table = source.table;
    const blockBytes = this.#blockBytes;
    const end = offsetBytes + lengthBytes;
    const firstBlock = Math.floor(offsetBytes / blockBytes);
    const lastBlock = Math.floor((end - 1) / blockBytes);
    let last: Run | undefined;
    let lastOnSpare: Run | undefined;
    for (let block = firstBlock, next; block <= lastBlock; block = next) {
      // An extent without remaps is one piece on the main disk, with no lookups.
      const clear = table.extentIsClear(block);
      let bucket = -1;
      if (clear && pending === undefined) {
        next = Math.min(
          lastBlock + 1,
          (Math.floor(block / SUMMARY_EXTENT_BLOCKS) + 1) * SUMMARY_EXTENT_BLOCKS,
        );
      } else {
        next = block + 1;
        if (!clear) bucket = table.bucketOf(block);
      }
      const start = Math.max(offsetBytes, block * blockBytes);
      const pieceBytes = Math.min(end, next * blockBytes) - start;
      const bufferOffset = start - offsetBytes;
      if (bucket < 0 && pending?.has(block)) {
        // A pending block is a run of its own: the engine remaps writes to it block by block.
        last = newRun("pending", -1, start, bufferOffset, pieceBytes);
        runs.push(last);
        continue;
      }
      const kind = bucket >= 0 ? "slot" : "main";
      const spareIndex = bucket >= 0 ? table.spareAt(bucket) : -1;
      const diskOffset = bucket >= 0
        ? this.#slotOffset(spareIndex, table.slotAt(bucket)) + (start - block * blockBytes)
        : start;
      const before = bucket >= 0 ? lastOnSpare : last;
      if (
        before !== undefined && before.kind === kind && before.spareIndex === spareIndex &&
        before.offsetBytes + before.lengthBytes === diskOffset &&
        this.#extend(before, before === last, bufferOffset, pieceBytes)
      ) {
        last = before;
        continue;
      }
      last = newRun(kind, spareIndex, diskOffset, bufferOffset, pieceBytes);
      if (bucket >= 0) lastOnSpare = last;
      runs.push(last);
    }
    return runs;
  }

  /** Where a slot starts on its spare. */
  #slotOffset(spareIndex: number, slotIndex: number): number {
    const layout = this.#layoutOf(spareIndex);
    assert(layout.blockBytes === this.#blockBytes, "spares hold blocks of the setup's size");
    return slotOffsetBytes(layout, slotIndex);
  }

  /**
   * Adds the next piece on `run`'s disk to it: at the end of its memory when
   * `adjacent` (the piece just before in the request is its last), else as
   * one more segment. False when the run has all the segments one I/O takes.
   */
  #extend(run: Run, adjacent: boolean, bufferOffset: number, pieceBytes: number): boolean {
    const segments = run.segments;
    if (adjacent) {
      if (segments) segments[segments.length - 1]! += pieceBytes;
    } else if (this.#segmentsMax < 2) return false;
    else if (segments === undefined) {
      run.segments = [run.bufferOffset, run.lengthBytes, bufferOffset, pieceBytes];
    } else if (segments.length < 2 * this.#segmentsMax) segments.push(bufferOffset, pieceBytes);
    else return false;
    run.lengthBytes += pieceBytes;
    return true;
  }
}

function newRun(
  kind: RunKind,
  spareIndex: number,
  offsetBytes: number,
  bufferOffset: number,
  lengthBytes: number,
): Run {
  return { kind, spareIndex, offsetBytes, bufferOffset, lengthBytes, segments: undefined };
}

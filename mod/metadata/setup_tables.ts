/**
 * The setup's remap tables from what its spares know (format version 2).
 *
 * Every spare logs every spare's remaps before a remap is acknowledged, and
 * slots are handed out in order and never reused, so what a spare knows of
 * spare i's table is a prefix of that table: it misses at most the remaps
 * logged after it stopped taking metadata (it failed, was missing, or a crash
 * tore the last group commit before its log write). The setup's table of
 * spare i is therefore the longest view of it, and any two views of it must
 * agree where both reach; a disagreement means a spare of another history (a
 * clone, a rolled-back disk) and is refused. A slot that gave its block up
 * (a move, `VACATED`) is newer than the block it held.
 *
 * @module
 */

import { SetupMismatchError } from "../errors.ts";
import { VACATED } from "./checkpoint.ts";

/** A spare's knowledge of the setup's tables (a `SpareStore` is one). */
export interface SpareView {
  readonly device: { readonly name: string };
  /** Spare `spareIndex`'s table as this spare knows it: slot i holds block `[i]`. */
  slotsOf(spareIndex: number): readonly number[];
}

/**
 * Merges the views of the spares present into the setup's tables.
 *
 * @param views The spares present (at least one).
 * @param spareCount The setup's spares.
 * @returns Spare i's table at index i (the longest view; shared, do not change it).
 * @throws {SetupMismatchError} When two views disagree about a slot.
 */
export function mergeViews(views: readonly SpareView[], spareCount: number): (readonly number[])[] {
  const tables: (readonly number[])[] = [];
  for (let spareIndex = 0; spareIndex < spareCount; spareIndex++) {
    let longest: { view: SpareView; table: readonly number[] } | undefined;
    for (const view of views) {
      const table = view.slotsOf(spareIndex);
      if (!longest || table.length > longest.table.length) longest = { view, table };
    }
    // A slot that gave its block up (VACATED) did so after it held it: the
    // view that knows of the move is the newer one for that slot.
    let merged: number[] | undefined;
    for (const view of views) {
      const table = view.slotsOf(spareIndex);
      if (table === longest!.table) continue;
      for (let slot = 0; slot < table.length; slot++) {
        const mine = table[slot]!;
        const theirs = (merged ?? longest!.table)[slot]!;
        if (mine === theirs || theirs === VACATED) continue;
        if (mine === VACATED) {
          merged ??= [...longest!.table];
          merged[slot] = VACATED;
          continue;
        }
        throw new SetupMismatchError(
          view.device.name,
          `it says slot ${slot} of spare ${spareIndex} holds block ${mine}, ` +
            `"${longest!.view.device.name}" says block ${theirs}: the spares ` +
            `have different histories (a cloned or rolled-back disk); give the spares of one ` +
            `history, nothing was written`,
        );
      }
    }
    tables.push(merged ?? longest?.table ?? []);
  }
  return tables;
}

/** Whether a spare's view already equals the setup's tables (views are prefixes, so lengths tell). */
export function viewIsComplete(view: SpareView, tables: readonly (readonly number[])[]): boolean {
  return tables.every((table, spareIndex) => view.slotsOf(spareIndex).length === table.length);
}

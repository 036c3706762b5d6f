/**
 * The metadata backup: a text file, outside the spares, that describes a
 * setup as its copies did at one moment, with the mappings known then. Like
 * LVM's `/etc/lvm/backup`, it is written on every change of the setup's
 * description and lets `dm-remap restore` rebuild copies that are all lost.
 *
 * The file is JSON, indented for people, with the slot lists 16 numbers to a
 * line. Its last member, `sha256`, is the SHA-256 (hex) of the compact JSON
 * (`JSON.stringify`) of the document without that member, members in file
 * order; a backup whose checksum does not match is refused.
 *
 * A backup is evidence, not authority: restore uses its description (setup
 * and spare identities, layouts) and checks its mappings against what each
 * spare's own log and checkpoints prove (`table_proof.ts`).
 *
 * @module
 */

import { assert } from "../assert.ts";
import { SPARES_MAX } from "../constants.ts";
import { RefusedError } from "../errors.ts";
import type { SpareLayout } from "./spare_layout.ts";
import {
  type MainIdentity,
  payloadProblem,
  type SpareRecord,
  type SuperblockPayload,
  type TableState,
} from "./superblock.ts";

/** The `format` member every backup carries. */
export const BACKUP_FORMAT = "dm-remap metadata backup";
/** The backup format version this program writes and reads. */
export const BACKUP_VERSION = 1;
/** Slot numbers per line in a backup's slot lists. */
const SLOTS_PER_LINE = 16;

/** One spare as the backup records it: its record in the setup, its layout, table and slots. */
export interface SpareBackup extends SpareRecord {
  /** Sequence of its copies when the backup was written. */
  sequence: number;
  layout: SpareLayout;
  table: TableState;
  /** Slot i held main block `slotBlocks[i]` when the backup was written. */
  slotBlocks: number[];
}

/** A whole backup document. */
export interface SetupBackup {
  format: typeof BACKUP_FORMAT;
  version: number;
  /** When it was written, ISO 8601 UTC (for people; `writtenMs` is the same instant). */
  written: string;
  writtenMs: number;
  /** What changed: "create", "setup state", "serve start", "restore", "salvage". */
  reason: string;
  setup: SuperblockPayload["setup"];
  main: MainIdentity;
  pending: number[];
  spares: SpareBackup[];
}

/** What a backup is made from: each open spare, in spare order. */
export interface BackupSource {
  payload: Readonly<SuperblockPayload>;
  sequence: number;
  slotBlocks: readonly number[];
}

/**
 * Builds a backup from the open spares of one setup. The description is the
 * one with the highest generation, as assembly picks it.
 */
export function setupBackupOf(
  sources: readonly BackupSource[],
  options: { reason: string; writtenMs?: number },
): SetupBackup {
  assert(sources.length > 0, "a setup has spares");
  sources.forEach((source, index) => assert(source.payload.spareIndex === index, "spare order"));
  const description = sources.reduce(
    (newest, { payload }) => payload.setup.generation > newest.setup.generation ? payload : newest,
    sources[0]!.payload,
  );
  const writtenMs = options.writtenMs ?? Date.now();
  return structuredClone({
    format: BACKUP_FORMAT,
    version: BACKUP_VERSION,
    written: new Date(writtenMs).toISOString(),
    writtenMs,
    reason: options.reason,
    setup: description.setup,
    main: description.main,
    pending: description.pending,
    spares: description.spares.map((record) => {
      const source = sources[record.index];
      assert(source !== undefined, "every spare of the description is open");
      return {
        ...record,
        sequence: source.sequence,
        layout: source.payload.layout,
        table: source.payload.table,
        // Copied by structuredClone below, so the backup never changes under the writer.
        slotBlocks: source.slotBlocks as number[],
      };
    }),
  });
}

/** The payload a spare's copies would carry according to the backup. */
export function payloadFromBackup(backup: SetupBackup, spareIndex: number): SuperblockPayload {
  const spare = backup.spares[spareIndex];
  assert(spare !== undefined, "the backup has this spare");
  return structuredClone({
    setup: backup.setup,
    main: backup.main,
    spares: backup.spares.map(({ index, uuid, path, sizeBytes, role, state }) => ({
      index,
      uuid,
      path,
      sizeBytes,
      role,
      state,
    })),
    spareIndex,
    layout: spare.layout,
    table: spare.table,
    pending: backup.pending,
    health: {},
    scan: {},
  });
}

/** The text of a backup file, checksum included. */
export async function encodeBackup(backup: SetupBackup): Promise<string> {
  const sha256 = await sha256Hex(JSON.stringify(backup));
  // Slot lists are laid out by hand, 16 to a line; everything else by JSON.stringify.
  const placeholders = backup.spares.map((_, index) => `@slots-of-spare-${index}@`);
  const text = JSON.stringify(
    {
      ...backup,
      spares: backup.spares.map((spare, index) => ({ ...spare, slotBlocks: placeholders[index] })),
      sha256,
    },
    null,
    2,
  );
  return backup.spares.reduce(
    (result, spare, index) =>
      result.replace(`"${placeholders[index]}"`, slotListText(spare.slotBlocks)),
    text,
  ) + "\n";
}

function slotListText(slotBlocks: readonly number[]): string {
  if (slotBlocks.length === 0) return "[]";
  const lines = [];
  for (let at = 0; at < slotBlocks.length; at += SLOTS_PER_LINE) {
    lines.push(`        ${slotBlocks.slice(at, at + SLOTS_PER_LINE).join(", ")}`);
  }
  return `[\n${lines.join(",\n")}\n      ]`;
}

/**
 * Reads a backup's text and checks its checksum and shape.
 *
 * @param source The file it came from, for messages.
 * @throws {RefusedError} When it is not a backup, is damaged or edited, or is from a newer version.
 */
export async function decodeBackup(text: string, source: string): Promise<SetupBackup> {
  const refuse = (problem: string) =>
    new RefusedError(source, `Cannot use backup "${source}": ${problem}; nothing was written`);
  let document: Record<string, unknown>;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw refuse(`it is not JSON (${(error as Error).message})`);
  }
  if (document === null || typeof document !== "object" || document.format !== BACKUP_FORMAT) {
    throw refuse("it is not a dm-remap metadata backup");
  }
  if (typeof document.version !== "number" || document.version > BACKUP_VERSION) {
    throw refuse(
      `it has backup format version ${document.version}, this dm-remap reads up to ` +
        `${BACKUP_VERSION}: upgrade dm-remap`,
    );
  }
  const { sha256, ...content } = document;
  if (sha256 !== await sha256Hex(JSON.stringify(content))) {
    throw refuse("its checksum does not match: the file was damaged or edited");
  }
  const problem = backupProblem(content);
  if (problem) throw refuse(problem);
  return content as unknown as SetupBackup;
}

/** Checks what a backup must hold for restore to use it; returns the first problem. */
function backupProblem(content: Record<string, unknown>): string | undefined {
  const backup = content as unknown as Partial<SetupBackup>;
  if (!Array.isArray(backup.spares) || backup.spares.length < 1) return "it lists no spares";
  if (backup.spares.length > SPARES_MAX) return `it lists more than ${SPARES_MAX} spares`;
  for (const [index, spare] of backup.spares.entries()) {
    const problem = payloadProblem(
      payloadFromBackup(backup as SetupBackup, index) as unknown as Record<string, unknown>,
    );
    if (problem) return `spare ${index}: payload ${problem}`;
    if (!Number.isSafeInteger(spare.sequence) || spare.sequence < 1) {
      return `spare ${index}: bad sequence`;
    }
    if (
      !Array.isArray(spare.slotBlocks) || spare.slotBlocks.length > spare.layout.slotCount ||
      !spare.slotBlocks.every((block) => Number.isSafeInteger(block) && block >= 0)
    ) {
      return `spare ${index}: bad slot list`;
    }
  }
  return undefined;
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

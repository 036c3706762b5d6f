/**
 * The metadata engine of one spare: five copies, the remap log and the
 * checkpoints, read and written with the ordering that makes them crash-safe.
 *
 * Write ordering (each step flushed before the next starts):
 * 1. `format`: copy 0, copy 1, … copy 4.
 * 2. `appendRemaps`: the caller has written and flushed the slots' data; then
 *    the log sectors are written and flushed. Only then may the caller
 *    acknowledge the client write.
 * 3. checkpoint (when the log region is full): entries and their seal to the
 *    region not in use, flush; then every copy with the new table state, one at a time.
 *    The log restarts at its first sector with the next sequence number, so
 *    its old sectors no longer count.
 *
 * Format version 2: the log and the checkpoints also carry the other spares'
 * tables (peer records and the peer section), so one spare tells where every
 * block of the setup lives. A spare's view of a peer is a prefix of the
 * peer's table: every remap is logged on every working spare before it is
 * acknowledged, and a spare that missed one is brought up to date by
 * {@link SpareStore.resync} before it logs again.
 *
 * A crash between any two sector writes leaves at least one copy that is
 * either the old or the new state, and a log that replays to a prefix of the
 * appended records of which every acknowledged one is included.
 *
 * Recovery on open: newest valid copy wins (sequence, timestamp, copy index);
 * stale or invalid copies are rewritten from it when repair is allowed.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { COPY_BYTES, COPY_SECTORS, SECTOR_BYTES } from "../constants.ts";
import type { Device } from "../device/device.ts";
import { MetadataScrubError, NoValidCopyError, UnsupportedVersionError } from "../errors.ts";
import {
  decodeCheckpoint,
  decodePeerSection,
  encodeCheckpoint,
  encodeCheckpointSeal,
  encodePeerSection,
  peerSectionOffsetBytes,
  sealOffsetBytes,
  VACATED,
} from "./checkpoint.ts";
import {
  encodeLogSectors,
  type LogReplay,
  packLogRecords,
  type RemapRecord,
  replayLog,
} from "./remap_log.ts";
import { checkLayout, checkpointBytesFor } from "./spare_layout.ts";
import {
  compareCopies,
  type CopyHeader,
  decodeCopy,
  encodeCopy,
  FORMAT_VERSION,
  type Migration,
  MIGRATIONS,
  type SpareRecord,
  type SuperblockPayload,
  type TableState,
  type ValidCopy,
} from "./superblock.ts";

/** What was found at one copy position. */
export interface CopyReport {
  copyIndex: number;
  sector: number;
  valid: boolean;
  reason?: string;
  sequence?: number;
  timestampMs?: number;
  formatVersion?: number;
  /** The copy that won the rule. */
  winner: boolean;
  /** Older than the winner, or invalid: rewritten on open when repair is allowed. */
  stale: boolean;
  repaired: boolean;
}

/** Options for {@link SpareStore.open}. */
export interface OpenOptions {
  /** Rewrite stale or invalid copies from the winner. @default true */
  repair?: boolean;
  /** Upgrades for older format versions. @default MIGRATIONS */
  migrations?: ReadonlyMap<number, Migration>;
}

/** The state of a spare's metadata after open. */
export interface SpareReport {
  device: string;
  copies: CopyReport[];
  validCopies: number;
  logSectorsUsed: number;
  logStopReason: string;
  checkpointEntries: number;
  slotsUsed: number;
  upgradedFrom?: number;
}

/** What one scrub of a spare found and repaired. */
export interface ScrubReport {
  device: string;
  /** Copies read (always five). */
  copiesChecked: number;
  /** Log sectors in use that were read back and replayed. */
  logSectorsChecked: number;
  /** One line per repair, e.g. "copy 2: stale (sequence 7, current 9): rewritten". */
  repairs: string[];
}

/** Reads the five copy regions of a spare and decodes each. */
export async function readCopies(
  device: Device,
  migrations: ReadonlyMap<number, Migration> = MIGRATIONS,
  copyIndexes: readonly number[] = COPY_SECTORS.map((_, copyIndex) => copyIndex),
): Promise<ReturnType<typeof decodeCopy>[]> {
  const decoded = [];
  for (const copyIndex of copyIndexes) {
    const sector = COPY_SECTORS[copyIndex]!;
    const bytes = new Uint8Array(COPY_BYTES);
    try {
      await device.read(bytes, sector * SECTOR_BYTES);
      decoded.push(decodeCopy(bytes, copyIndex, migrations));
    } catch (error) {
      decoded.push({ valid: false as const, reason: `unreadable: ${(error as Error).message}` });
    }
  }
  return decoded;
}

/**
 * The tables a spare's checkpoint and log hold (format version 2: its own
 * slots and its view of every other spare's), as an open reads them and a
 * scrub checks them.
 *
 * @returns The tables and the log's replay, or why the checkpoint is unreadable.
 */
async function readTables(
  device: Device,
  payload: SuperblockPayload,
): Promise<{ slotBlocks: number[]; peers: number[][]; replay: LogReplay } | string> {
  const { layout, table } = payload;
  const checkpointBytes = new Uint8Array(
    Math.ceil(table.checkpointEntries * 8 / SECTOR_BYTES) * SECTOR_BYTES,
  );
  await device.read(checkpointBytes, layout.checkpointOffsetBytes[table.checkpointRegion]);
  const slotBlocks = decodeCheckpoint(
    checkpointBytes,
    table.checkpointEntries,
    table.checkpointCrc32c,
  );
  if (!slotBlocks) return `checkpoint ${"AB"[table.checkpointRegion]} fails its checksum`;
  const peers = await readPeerSection(device, payload);
  const logRegion = new Uint8Array(layout.logBytes);
  await device.read(logRegion, layout.logOffsetBytes);
  const replay = replayLog(logRegion, {
    setupUuid: payload.setup.uuid,
    spareIndex: payload.spareIndex,
    startSequence: table.logStartSequence,
    firstSlot: table.checkpointEntries,
    peerNextSlots: peers.map((blocks) => blocks.length),
  });
  for (const blockIndex of replay.blockIndexes) slotBlocks.push(blockIndex);
  for (const record of replay.peerRecords) peers[record.ownerIndex]!.push(record.blockIndex);
  for (const record of replay.vacated) {
    const owner = record.ownerIndex === payload.spareIndex ? slotBlocks : peers[record.ownerIndex]!;
    owner[record.slotIndex] = VACATED;
  }
  return { slotBlocks, peers, replay };
}

/** What a copy read from disk says, for a report; `judged` is how it compares with the winner. */
function copyReportOf(
  copy: ReturnType<typeof decodeCopy>,
  copyIndex: number,
  judged: { winner: boolean; stale: boolean },
): CopyReport {
  return {
    copyIndex,
    sector: COPY_SECTORS[copyIndex]!,
    valid: copy.valid,
    reason: copy.valid ? undefined : copy.reason,
    sequence: copy.valid ? copy.header.sequence : undefined,
    timestampMs: copy.valid ? copy.header.timestampMs : undefined,
    formatVersion: copy.valid ? copy.header.formatVersion : undefined,
    ...judged,
    repaired: false,
  };
}

/** The metadata of one open spare. */
export class SpareStore {
  readonly device: Device;
  #payload: SuperblockPayload;
  #header: CopyHeader;
  /** Slot i holds main block `#slotBlocks[i]`. */
  #slotBlocks: number[];
  /** What this spare knows of the other spares' tables, by spare index (empty for itself). */
  #peers: number[][];
  #logSectorsUsed: number;

  private constructor(
    device: Device,
    winner: ValidCopy,
    tables: { slotBlocks: number[]; peers: number[][] },
    logSectorsUsed: number,
  ) {
    this.device = device;
    this.#payload = winner.payload;
    this.#header = winner.header;
    this.#slotBlocks = tables.slotBlocks;
    this.#peers = tables.peers;
    this.#logSectorsUsed = logSectorsUsed;
    assert(this.#peers.length === this.#payload.spares.length, "a view of every spare");
    assert(this.#peers[this.#payload.spareIndex]!.length === 0, "its own table is not a peer");
  }

  /** The current payload; change it only through {@link writeMetadata}. */
  get payload(): Readonly<SuperblockPayload> {
    return this.#payload;
  }

  /** The format version of the copies on disk (older until the setup upgrades it). */
  get formatVersion(): number {
    return this.#header.formatVersion;
  }

  /** Sequence number of the copies on disk. */
  get sequence(): number {
    return this.#header.sequence;
  }

  /** Slots handed out so far. */
  get slotsUsed(): number {
    return this.#slotBlocks.length;
  }

  /** Main blocks held by slots, in slot order (read-only view). */
  get slotBlocks(): readonly number[] {
    return this.#slotBlocks;
  }

  /**
   * The table of spare `spareIndex` as this spare knows it: its own, or what
   * its peer records and peer section say of another (a prefix of that
   * spare's table; empty when it knows nothing of it).
   */
  slotsOf(spareIndex: number): readonly number[] {
    if (spareIndex === this.#payload.spareIndex) return this.#slotBlocks;
    return this.#peers[spareIndex] ?? [];
  }

  /**
   * Writes fresh metadata to a spare: five copies at sequence 1, empty table.
   * The caller has checked that the device may be overwritten.
   */
  static async format(device: Device, payload: SuperblockPayload): Promise<SpareStore> {
    checkLayout(payload.layout, device.sizeBytes);
    assert(payload.table.checkpointEntries === 0, "a new spare has an empty table");
    const header: CopyHeader = {
      formatVersion: FORMAT_VERSION,
      sequence: 1,
      timestampMs: Date.now(),
      copyIndex: 0,
      setupUuid: payload.setup.uuid,
      spareIndex: payload.spareIndex,
    };
    await writeAllCopies(device, header, payload);
    return new SpareStore(
      device,
      { valid: true, header, payload },
      { slotBlocks: [], peers: payload.spares.map(() => []) },
      0,
    );
  }

  /**
   * Rebuilds the metadata of a spare whose copies were lost, from a setup
   * description and the table proven from the spare's own log and checkpoints
   * (`table_proof.ts`): the table goes to a fresh checkpoint (entries and
   * seal) in `checkpointRegion`, flushed, then the five copies point to it,
   * each flushed. The log restarts at `logStartSequence`, which must be past
   * every sequence in the log region, so no old log sector is ever replayed.
   *
   * @param payload The description to write; the table is made here.
   * @returns The reopened store, which holds exactly `slotBlocks`.
   */
  static async rebuild(
    device: Device,
    payload: Omit<SuperblockPayload, "table">,
    options: RebuildOptions,
  ): Promise<SpareStore> {
    const { layout } = payload;
    checkLayout(layout, device.sizeBytes);
    assert(options.slotBlocks.length <= layout.slotCount, "no more slots than exist");
    assert(Number.isSafeInteger(options.sequence) && options.sequence >= 1, "a copy sequence");
    const table = await writeCheckpoint(device, payload, {
      slotBlocks: options.slotBlocks,
      peers: payload.spares.map(() => []),
      region: options.checkpointRegion,
      logStartSequence: options.logStartSequence,
    });
    await writeAllCopies(device, {
      formatVersion: FORMAT_VERSION,
      sequence: options.sequence,
      timestampMs: Date.now(),
      copyIndex: 0,
      setupUuid: payload.setup.uuid,
      spareIndex: payload.spareIndex,
    }, { ...payload, table });
    const { store, report } = await SpareStore.open(device, { repair: false });
    assert(report.validCopies === COPY_SECTORS.length, "every rebuilt copy reads back valid");
    assert(
      store.slotBlocks.length === options.slotBlocks.length &&
        store.slotBlocks.every((block, slot) => block === options.slotBlocks[slot]),
      "the rebuilt spare opens to the proven table",
    );
    return store;
  }

  /**
   * Opens a spare: picks the winning copy, loads checkpoint and log, and
   * repairs stale copies unless told not to.
   *
   * @throws {NoValidCopyError} When no copy is valid; nothing is written.
   * @throws {UnsupportedVersionError} When a newer format wrote any copy; nothing is written.
   */
  static async open(
    device: Device,
    options: OpenOptions = {},
  ): Promise<{ store: SpareStore; report: SpareReport }> {
    const repair = options.repair ?? true;
    const decoded = await readCopies(device, options.migrations);
    const newer = decoded.find((copy) => !copy.valid && copy.newerVersion !== undefined);
    if (newer && !newer.valid) {
      throw new UnsupportedVersionError(device.name, newer.newerVersion!, FORMAT_VERSION);
    }
    const valid = decoded.filter((copy): copy is ValidCopy => copy.valid);
    if (valid.length === 0) {
      const reasons = decoded.map((copy, i) => `copy ${i}: ${copy.valid ? "valid" : copy.reason}`)
        .join("; ");
      throw new NoValidCopyError(device.name, reasons);
    }
    const winner = valid.reduce((best, copy) =>
      compareCopies(copy.header, best.header) < 0 ? copy : best
    );
    const upgradedFrom = winner.header.formatVersion < FORMAT_VERSION
      ? winner.header.formatVersion
      : undefined;
    const { layout, table } = winner.payload;
    checkLayout(layout, device.sizeBytes);

    const tables = await readTables(device, winner.payload);
    if (typeof tables === "string") throw new NoValidCopyError(device.name, tables);
    const { slotBlocks, peers, replay } = tables;
    assert(slotBlocks.length <= layout.slotCount, "no more slots used than exist");

    const store = new SpareStore(device, winner, { slotBlocks, peers }, replay.sectorsUsed);
    const copies = decoded.map((copy, copyIndex) =>
      copyReportOf(copy, copyIndex, {
        winner: copy === winner,
        stale: !copy.valid || copy.header.sequence !== winner.header.sequence ||
          copy.header.timestampMs !== winner.header.timestampMs,
      })
    );
    // A spare of an older format is upgraded where the whole setup is known
    // (assembly, `resync`): version 2 records every spare's table, so its
    // copies are not rewritten from this spare alone.
    if (repair && upgradedFrom === undefined) {
      for (const copy of copies.filter((report) => report.stale)) {
        await writeCopy(device, { ...store.#header, copyIndex: copy.copyIndex }, store.#payload);
        copy.repaired = true;
      }
    }
    const report: SpareReport = {
      device: device.name,
      copies,
      validCopies: valid.length,
      logSectorsUsed: replay.sectorsUsed,
      logStopReason: replay.stopReason,
      checkpointEntries: table.checkpointEntries,
      slotsUsed: slotBlocks.length,
      upgradedFrom,
    };
    return { store, report };
  }

  /**
   * Checks the five copies on disk against the state this store holds, and
   * rewrites each copy that is unreadable, invalid, or not the current state
   * (a copy that rotted, or one a failed write left behind) from that state.
   * The caller serialises this with every other metadata write of the spare,
   * so the state written is the newest one.
   *
   * @returns One report per copy: what was found, and whether it was rewritten.
   * @throws {MetadataScrubError} When a copy is newer than this store's state (another writer).
   * @throws {DeviceIoError} When a rewrite fails; copies rewritten before it stay rewritten.
   */
  async repairCopies(): Promise<CopyReport[]> {
    const decoded = await readCopies(this.device);
    const reports: CopyReport[] = [];
    let winnerSeen = false;
    for (const [copyIndex, copy] of decoded.entries()) {
      const current = this.#copyProblem(copy) === undefined;
      // The first copy that holds the current state stands for it, as the winner of an open does.
      reports.push(
        copyReportOf(copy, copyIndex, { winner: current && !winnerSeen, stale: !current }),
      );
      winnerSeen ||= current;
    }
    for (const report of reports.filter((each) => each.stale)) {
      await writeCopy(this.device, { ...this.#header, copyIndex: report.copyIndex }, this.#payload);
      report.repaired = true;
    }
    return reports;
  }

  /**
   * Reads every copy, the checkpoint and every log sector in use, and repairs
   * what does not match this store's state, which is the newest durable one
   * (every change of it was flushed before it took effect): a stale or
   * corrupt copy is rewritten from it, read back and checked; a checkpoint
   * or log that no longer replays to the table in memory is folded into a
   * fresh checkpoint (the existing checkpoint path: entries and seal in the
   * other region, then the copies). The caller serialises this with every
   * other metadata change of the spare (the engine's metadata queue).
   *
   * @throws {MetadataScrubError} When a copy is newer than this store's state
   *   (another writer), or a repair does not read back as written.
   * @throws {DeviceIoError} When a repair write or flush fails.
   */
  async scrub(): Promise<ScrubReport> {
    const repairs: string[] = [];
    const decoded = await readCopies(this.device);
    for (const [copyIndex, copy] of decoded.entries()) {
      const problem = this.#copyProblem(copy);
      if (problem === undefined) continue;
      const header = { ...this.#header, copyIndex };
      await writeCopy(this.device, header, this.#payload);
      const [check] = await readCopies(this.device, MIGRATIONS, [copyIndex]);
      const after = this.#copyProblem(check!);
      if (after !== undefined) {
        throw new MetadataScrubError(this.device.name, `copy ${copyIndex} after rewrite: ${after}`);
      }
      repairs.push(`copy ${copyIndex}: ${problem}: rewritten`);
    }
    const tableProblem = await this.#tableProblem();
    if (tableProblem !== undefined) {
      await this.#checkpoint();
      const after = await this.#tableProblem();
      if (after !== undefined) {
        throw new MetadataScrubError(this.device.name, `remap table after checkpoint: ${after}`);
      }
      repairs.push(`remap table: ${tableProblem}: folded into a fresh checkpoint`);
    }
    return {
      device: this.device.name,
      copiesChecked: decoded.length,
      logSectorsChecked: this.#logSectorsUsed,
      repairs,
    };
  }

  /** Why a copy read from disk is not this store's state, or undefined when it is. */
  #copyProblem(copy: ReturnType<typeof decodeCopy>): string | undefined {
    if (!copy.valid) return copy.reason;
    const current = this.#header;
    if (copy.header.sequence > current.sequence) {
      throw new MetadataScrubError(
        this.device.name,
        `a copy has sequence ${copy.header.sequence}, newer than this server's ` +
          `${current.sequence}: another process writes this spare`,
      );
    }
    if (
      copy.header.sequence !== current.sequence || copy.header.timestampMs !== current.timestampMs
    ) {
      return `stale (sequence ${copy.header.sequence}, current ${current.sequence})`;
    }
    return undefined;
  }

  /** Why the checkpoint and log on disk do not replay to the tables in memory, if they do not. */
  async #tableProblem(): Promise<string | undefined> {
    const tables = await readTables(this.device, this.#payload);
    if (typeof tables === "string") return tables;
    const same = (disk: readonly number[], memory: readonly number[]) =>
      disk.length === memory.length && disk.every((block, slot) => block === memory[slot]);
    if (tables.replay.sectorsUsed < this.#logSectorsUsed) {
      return `the log replays ${tables.replay.sectorsUsed} of ${this.#logSectorsUsed} sectors ` +
        `(${tables.replay.stopReason})`;
    }
    if (!same(tables.slotBlocks, this.#slotBlocks)) return "its own table differs from memory";
    const peer = tables.peers.findIndex((blocks, index) => !same(blocks, this.#peers[index] ?? []));
    if (peer >= 0) return `its view of spare ${peer}'s table differs from memory`;
    return undefined;
  }

  /**
   * Makes remaps durable: logs that the next slots of spare `ownerIndex`
   * hold `blockIndexes`, in order, and flushes. The owner's data was written
   * and flushed first (by the caller, on the owner).
   *
   * @param ownerIndex The spare whose slots they are. @default this spare
   * @returns The first slot index used.
   * @throws {DeviceIoError} When the spare cannot store the log; nothing is acknowledged then.
   */
  async appendRemaps(
    blockIndexes: readonly number[],
    ownerIndex: number = this.#payload.spareIndex,
    options: AppendOptions = {},
  ): Promise<number> {
    const { layout } = this.#payload;
    const own = ownerIndex === this.#payload.spareIndex;
    const list = own ? this.#slotBlocks : this.#peers[ownerIndex];
    assert(list !== undefined, "remaps of a spare of the setup");
    assert(blockIndexes.length > 0, "remaps to append");
    if (own) {
      assert(
        this.slotsUsed + blockIndexes.length <= layout.slotCount,
        "slots were reserved before use",
      );
    }
    const moves = options.movedFrom ?? [];
    assert(moves.length === 0 || moves.length === blockIndexes.length, "a move source per block");
    const firstSlot = list.length;
    const records: RemapRecord[] = blockIndexes.flatMap((blockIndex, i) => {
      const remap = { slotIndex: firstSlot + i, blockIndex, ownerIndex };
      const from = moves[i];
      if (from === undefined) return [remap];
      assert(
        this.slotsOf(from.spareIndex)[from.slotIndex] === blockIndex,
        "a move names its source",
      );
      return [remap, {
        slotIndex: from.slotIndex,
        blockIndex,
        ownerIndex: from.spareIndex,
        vacate: true,
      }];
    });
    const sectorsNeeded = packLogRecords(records).length;
    const logSectors = layout.logBytes / SECTOR_BYTES;
    assert(sectorsNeeded <= logSectors, "one batch fits in the log");
    if (this.#logSectorsUsed + sectorsNeeded > logSectors) await this.#checkpoint();
    const sectors = encodeLogSectors(
      {
        setupUuid: this.#payload.setup.uuid,
        spareIndex: this.#payload.spareIndex,
        blockBytes: this.#payload.setup.blockBytes,
        ownSlotsBefore: this.#slotBlocks.length,
      },
      this.#payload.table.logStartSequence + this.#logSectorsUsed,
      records,
    );
    await this.device.write(sectors, layout.logOffsetBytes + this.#logSectorsUsed * SECTOR_BYTES);
    await this.device.flush();
    this.#logSectorsUsed += sectorsNeeded;
    for (const blockIndex of blockIndexes) list.push(blockIndex);
    moves.forEach((from) => {
      if (from === undefined) return;
      const table = from.spareIndex === this.#payload.spareIndex
        ? this.#slotBlocks
        : this.#peers[from.spareIndex]!;
      table[from.slotIndex] = VACATED;
    });
    return firstSlot;
  }

  /**
   * Brings this spare's view up to the setup's: `tables[i]` is spare i's
   * table, of which this spare's own table and its views of the others must
   * be prefixes. Writes a checkpoint of them all and the copies (in the
   * current format, so this also finishes an upgrade), as any checkpoint.
   * A crash leaves the old view, which assembly merges again.
   */
  async resync(tables: readonly (readonly number[])[]): Promise<void> {
    const spareIndex = this.#payload.spareIndex;
    assert(tables.length === this.#payload.spares.length, "a table for every spare");
    tables.forEach((table, index) => {
      const known = this.slotsOf(index);
      assert(known.length <= table.length, "a view only grows");
      assert(
        known.every((block, slot) => table[slot] === block || table[slot] === VACATED),
        "a view is a prefix, up to slots given up since",
      );
    });
    this.#slotBlocks = [...tables[spareIndex]!];
    this.#peers = tables.map((table, index) => index === spareIndex ? [] : [...table]);
    assert(this.#slotBlocks.length <= this.#payload.layout.slotCount, "no more slots than exist");
    await this.#checkpoint();
  }

  /**
   * Records spares that joined the setup (`spare add`): `records` is the
   * setup's whole list, of which this spare's list is a prefix. A new spare
   * holds no slots yet, so its peer entries are 0 and the peer section and
   * its CRC stay as they are: only the copies change, with `generation`.
   */
  async joinSpares(records: readonly SpareRecord[], generation: number): Promise<void> {
    const known = this.#payload.spares.length;
    assert(records.length > known, "spares join at the end of the list");
    assert(
      this.#payload.spares.every((record, index) => record.uuid === records[index]!.uuid),
      "the list only grows",
    );
    await this.writeMetadata((payload) => {
      payload.spares = structuredClone([...records]);
      payload.table.peerEntries = records.map((_, index) => payload.table.peerEntries[index] ?? 0);
      payload.setup.generation = generation;
    });
    while (this.#peers.length < records.length) this.#peers.push([]);
  }

  /**
   * Erases what makes this device a spare (the five copies and the log's first
   * sector, where a salvage would look), after it left the setup: the disk can
   * then be used again, and no later assembly or discovery takes it for a member.
   */
  async erase(): Promise<void> {
    for (const sector of COPY_SECTORS) {
      await this.device.write(new Uint8Array(COPY_BYTES), sector * SECTOR_BYTES);
    }
    await this.device.write(new Uint8Array(SECTOR_BYTES), this.#payload.layout.logOffsetBytes);
    await this.device.flush();
  }

  /** Folds the log into a checkpoint now (also done on demand when the log is full). */
  async checkpoint(): Promise<void> {
    await this.#checkpoint();
  }

  async #checkpoint(): Promise<void> {
    const region = this.#payload.table.checkpointRegion === 0 ? 1 : 0;
    const logStartSequence = this.#payload.table.logStartSequence + this.#logSectorsUsed;
    const table = await writeCheckpoint(this.device, this.#payload, {
      slotBlocks: this.#slotBlocks,
      peers: this.#peers,
      region,
      logStartSequence,
    });
    await this.writeMetadata((payload) => {
      payload.table = table;
    });
    this.#logSectorsUsed = 0;
  }

  /**
   * Changes the payload and writes all five copies with the next sequence
   * number, one at a time, each flushed before the next.
   */
  async writeMetadata(change: (payload: SuperblockPayload) => void): Promise<void> {
    const payload = structuredClone(this.#payload);
    change(payload);
    assert(payload.spareIndex === this.#payload.spareIndex, "a spare keeps its index");
    assert(payload.setup.uuid === this.#payload.setup.uuid, "a spare keeps its setup");
    const header: CopyHeader = {
      ...this.#header,
      formatVersion: FORMAT_VERSION,
      sequence: this.#header.sequence + 1,
      timestampMs: Math.max(Date.now(), this.#header.timestampMs),
    };
    await writeAllCopies(this.device, header, payload);
    this.#payload = payload;
    this.#header = header;
  }
}

/** Options for {@link SpareStore.appendRemaps}. */
export interface AppendOptions {
  /**
   * For each block, the slot it moves from (its spare failed), or undefined
   * for a block remapped for the first time: that slot is logged as given up
   * in the same sector as the block's new slot. @default no moves
   */
  movedFrom?: readonly ({ spareIndex: number; slotIndex: number } | undefined)[];
}

/** Options for {@link SpareStore.rebuild}. */
export interface RebuildOptions {
  /** The proven table: slot i holds main block `slotBlocks[i]`. */
  slotBlocks: readonly number[];
  /** Where the fresh checkpoint goes: not the region the proof was read from. */
  checkpointRegion: 0 | 1;
  /** Where the log restarts: past every sequence in the log region. */
  logStartSequence: number;
  /** The sequence of the new copies. */
  sequence: number;
}

/**
 * Reads the peer section of the winning copy's checkpoint.
 *
 * @returns What the spare knows of every spare's table (empty for itself).
 * @throws {NoValidCopyError} When the section fails its checksum.
 */
async function readPeerSection(device: Device, payload: SuperblockPayload): Promise<number[][]> {
  const { layout, table } = payload;
  const total = table.peerEntries.reduce((sum, count) => sum + count, 0);
  if (total === 0) return payload.spares.map(() => []);
  assert(
    checkpointBytesFor(table.checkpointEntries, total) <= layout.checkpointBytes,
    "the peer section lies inside its region",
  );
  const bytes = new Uint8Array(Math.ceil(total * 8 / SECTOR_BYTES) * SECTOR_BYTES);
  await device.read(
    bytes,
    layout.checkpointOffsetBytes[table.checkpointRegion] +
      peerSectionOffsetBytes(table.checkpointEntries),
  );
  const peers = decodePeerSection(bytes, table.peerEntries, table.peerCrc32c);
  if (!peers) {
    throw new NoValidCopyError(
      device.name,
      `the peer section of checkpoint ${"AB"[table.checkpointRegion]} fails its checksum`,
    );
  }
  return peers;
}

/**
 * Writes a checkpoint of `slotBlocks` to `region`, with its seal in the same
 * write when the region has room after the entries, then the other spares'
 * tables after the seal (in the same write), and flushes.
 *
 * @returns The table state for the copies.
 */
async function writeCheckpoint(
  device: Device,
  payload: Omit<SuperblockPayload, "table">,
  options: {
    slotBlocks: readonly number[];
    peers: readonly (readonly number[])[];
    region: 0 | 1;
    logStartSequence: number;
  },
): Promise<TableState> {
  const { layout } = payload;
  const entryCount = options.slotBlocks.length;
  const encoded = encodeCheckpoint(options.slotBlocks, entryCount);
  const peers = encodePeerSection(options.peers, payload.spareIndex);
  const peerTotal = peers.peerEntries.reduce((sum, count) => sum + count, 0);
  assert(encoded.bytes.length === sealOffsetBytes(entryCount), "the seal follows the entries");
  assert(encoded.bytes.length <= layout.checkpointBytes, "checkpoint fits its region");
  assert(
    checkpointBytesFor(entryCount, peerTotal) <= layout.checkpointBytes,
    "the other spares' tables fit the region (checked when the setup was assembled)",
  );
  // The seal goes in the same write, so it never describes entries that were not written.
  const sealed = encoded.bytes.length + SECTOR_BYTES <= layout.checkpointBytes;
  const bytes = new Uint8Array(
    encoded.bytes.length + (sealed ? SECTOR_BYTES : 0) + (peerTotal > 0 ? peers.bytes.length : 0),
  );
  bytes.set(encoded.bytes, 0);
  if (peerTotal > 0) bytes.set(peers.bytes, peerSectionOffsetBytes(entryCount));
  if (sealed) {
    bytes.set(
      encodeCheckpointSeal({
        setupUuid: payload.setup.uuid,
        spareIndex: payload.spareIndex,
        entryCount,
        crc32c: encoded.crc32c,
        logStartSequence: options.logStartSequence,
      }),
      encoded.bytes.length,
    );
  }
  await device.write(bytes, layout.checkpointOffsetBytes[options.region]);
  await device.flush();
  return {
    checkpointRegion: options.region,
    checkpointEntries: entryCount,
    checkpointCrc32c: encoded.crc32c,
    logStartSequence: options.logStartSequence,
    peerEntries: peers.peerEntries,
    peerCrc32c: peers.crc32c,
  };
}

async function writeCopy(
  device: Device,
  header: CopyHeader,
  payload: SuperblockPayload,
): Promise<void> {
  await device.write(encodeCopy(header, payload), COPY_SECTORS[header.copyIndex]! * SECTOR_BYTES);
  await device.flush();
}

async function writeAllCopies(
  device: Device,
  header: CopyHeader,
  payload: SuperblockPayload,
): Promise<void> {
  for (let copyIndex = 0; copyIndex < COPY_SECTORS.length; copyIndex++) {
    await writeCopy(device, { ...header, copyIndex }, payload);
  }
}

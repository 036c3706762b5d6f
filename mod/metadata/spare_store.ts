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
  encodeCheckpoint,
  encodeCheckpointSeal,
  sealOffsetBytes,
} from "./checkpoint.ts";
import { encodeLogSectors, logSectorsFor, replayLog } from "./remap_log.ts";
import { checkLayout } from "./spare_layout.ts";
import {
  compareCopies,
  type CopyHeader,
  decodeCopy,
  encodeCopy,
  FORMAT_VERSION,
  type Migration,
  MIGRATIONS,
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

/** The metadata of one open spare. */
export class SpareStore {
  readonly device: Device;
  #payload: SuperblockPayload;
  #header: CopyHeader;
  /** Slot i holds main block `#slotBlocks[i]`. */
  #slotBlocks: number[];
  #logSectorsUsed: number;

  private constructor(
    device: Device,
    winner: ValidCopy,
    slotBlocks: number[],
    logSectorsUsed: number,
  ) {
    this.device = device;
    this.#payload = winner.payload;
    this.#header = winner.header;
    this.#slotBlocks = slotBlocks;
    this.#logSectorsUsed = logSectorsUsed;
  }

  /** The current payload; change it only through {@link writeMetadata}. */
  get payload(): Readonly<SuperblockPayload> {
    return this.#payload;
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
    return new SpareStore(device, { valid: true, header, payload }, [], 0);
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
    const table: TableState = {
      checkpointRegion: options.checkpointRegion,
      checkpointEntries: options.slotBlocks.length,
      checkpointCrc32c: await writeCheckpoint(device, payload, {
        slotBlocks: options.slotBlocks,
        region: options.checkpointRegion,
        logStartSequence: options.logStartSequence,
      }),
      logStartSequence: options.logStartSequence,
    };
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

    const checkpointBytes = new Uint8Array(
      Math.ceil(table.checkpointEntries * 8 / SECTOR_BYTES) * SECTOR_BYTES,
    );
    await device.read(checkpointBytes, layout.checkpointOffsetBytes[table.checkpointRegion]);
    const slotBlocks = decodeCheckpoint(
      checkpointBytes,
      table.checkpointEntries,
      table.checkpointCrc32c,
    );
    if (!slotBlocks) {
      throw new NoValidCopyError(
        device.name,
        `checkpoint ${"AB"[table.checkpointRegion]} fails its checksum`,
      );
    }
    const logRegion = new Uint8Array(layout.logBytes);
    await device.read(logRegion, layout.logOffsetBytes);
    const replay = replayLog(logRegion, {
      setupUuid: winner.payload.setup.uuid,
      spareIndex: winner.payload.spareIndex,
      startSequence: table.logStartSequence,
      firstSlot: table.checkpointEntries,
    });
    for (const blockIndex of replay.blockIndexes) slotBlocks.push(blockIndex);
    assert(slotBlocks.length <= layout.slotCount, "no more slots used than exist");

    const store = new SpareStore(device, winner, slotBlocks, replay.sectorsUsed);
    const copies = decoded.map((copy, copyIndex): CopyReport => ({
      copyIndex,
      sector: COPY_SECTORS[copyIndex]!,
      valid: copy.valid,
      reason: copy.valid ? undefined : copy.reason,
      sequence: copy.valid ? copy.header.sequence : undefined,
      timestampMs: copy.valid ? copy.header.timestampMs : undefined,
      formatVersion: copy.valid ? copy.header.formatVersion : undefined,
      winner: copy === winner,
      stale: !copy.valid || copy.header.sequence !== winner.header.sequence ||
        copy.header.timestampMs !== winner.header.timestampMs,
      repaired: false,
    }));
    if (repair && upgradedFrom !== undefined) {
      await store.writeMetadata(() => {});
      for (const copy of copies) copy.repaired = true;
    } else if (repair) {
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
      reports.push({
        copyIndex,
        sector: COPY_SECTORS[copyIndex]!,
        valid: copy.valid,
        reason: copy.valid ? undefined : copy.reason,
        sequence: copy.valid ? copy.header.sequence : undefined,
        timestampMs: copy.valid ? copy.header.timestampMs : undefined,
        formatVersion: copy.valid ? copy.header.formatVersion : undefined,
        // The first copy that holds the current state stands for it, as the winner of an open does.
        winner: current && !winnerSeen,
        stale: !current,
        repaired: false,
      });
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

  /** Why the checkpoint and log on disk do not replay to the table in memory, if they do not. */
  async #tableProblem(): Promise<string | undefined> {
    const { layout, table } = this.#payload;
    const checkpointBytes = new Uint8Array(
      Math.ceil(table.checkpointEntries * 8 / SECTOR_BYTES) * SECTOR_BYTES,
    );
    await this.device.read(checkpointBytes, layout.checkpointOffsetBytes[table.checkpointRegion]);
    const checkpointed = decodeCheckpoint(
      checkpointBytes,
      table.checkpointEntries,
      table.checkpointCrc32c,
    );
    const region = "AB"[table.checkpointRegion];
    if (checkpointed === undefined) return `checkpoint ${region} fails its checksum`;
    if (!checkpointed.every((block, slot) => block === this.#slotBlocks[slot])) {
      return `checkpoint ${region} differs from the table`;
    }
    const logRegion = new Uint8Array(layout.logBytes);
    await this.device.read(logRegion, layout.logOffsetBytes);
    const replay = replayLog(logRegion, {
      setupUuid: this.#payload.setup.uuid,
      spareIndex: this.#payload.spareIndex,
      startSequence: table.logStartSequence,
      firstSlot: table.checkpointEntries,
    });
    const logged = this.#slotBlocks.slice(table.checkpointEntries);
    if (
      replay.sectorsUsed < this.#logSectorsUsed ||
      replay.blockIndexes.length !== logged.length ||
      !replay.blockIndexes.every((block, i) => block === logged[i])
    ) {
      return `the log replays ${replay.sectorsUsed} of ${this.#logSectorsUsed} sectors ` +
        `(${replay.stopReason})`;
    }
    return undefined;
  }

  /**
   * Makes remaps durable: logs that the next slots hold `blockIndexes`, in
   * order, and flushes. The caller wrote and flushed the slots' data first.
   *
   * @returns The first slot index used.
   * @throws {DeviceIoError} When the spare cannot store the log; nothing is acknowledged then.
   */
  async appendRemaps(blockIndexes: readonly number[]): Promise<number> {
    const { layout } = this.#payload;
    assert(blockIndexes.length > 0, "remaps to append");
    assert(
      this.slotsUsed + blockIndexes.length <= layout.slotCount,
      "slots were reserved before use",
    );
    const sectorsNeeded = logSectorsFor(blockIndexes.length);
    const logSectors = layout.logBytes / SECTOR_BYTES;
    assert(sectorsNeeded <= logSectors, "one batch fits in the log");
    if (this.#logSectorsUsed + sectorsNeeded > logSectors) await this.#checkpoint();
    const firstSlot = this.slotsUsed;
    const sectors = encodeLogSectors(
      {
        setupUuid: this.#payload.setup.uuid,
        spareIndex: this.#payload.spareIndex,
        blockBytes: this.#payload.setup.blockBytes,
      },
      this.#payload.table.logStartSequence + this.#logSectorsUsed,
      blockIndexes.map((blockIndex, i) => ({ slotIndex: firstSlot + i, blockIndex })),
    );
    await this.device.write(sectors, layout.logOffsetBytes + this.#logSectorsUsed * SECTOR_BYTES);
    await this.device.flush();
    this.#logSectorsUsed += sectorsNeeded;
    for (const blockIndex of blockIndexes) this.#slotBlocks.push(blockIndex);
    return firstSlot;
  }

  /** Folds the log into a checkpoint now (also done on demand when the log is full). */
  async checkpoint(): Promise<void> {
    await this.#checkpoint();
  }

  async #checkpoint(): Promise<void> {
    const region = this.#payload.table.checkpointRegion === 0 ? 1 : 0;
    const logStartSequence = this.#payload.table.logStartSequence + this.#logSectorsUsed;
    const checkpointCrc32c = await writeCheckpoint(this.device, this.#payload, {
      slotBlocks: this.#slotBlocks,
      region,
      logStartSequence,
    });
    await this.writeMetadata((payload) => {
      payload.table = {
        checkpointRegion: region,
        checkpointEntries: this.slotsUsed,
        checkpointCrc32c,
        logStartSequence,
      };
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
 * Writes a checkpoint of `slotBlocks` to `region`, with its seal in the same
 * write when the region has room after the entries, and flushes.
 *
 * @returns The CRC-32C of the entries, for the copies' table.
 */
async function writeCheckpoint(
  device: Device,
  payload: Omit<SuperblockPayload, "table">,
  options: { slotBlocks: readonly number[]; region: 0 | 1; logStartSequence: number },
): Promise<number> {
  const { layout } = payload;
  const entryCount = options.slotBlocks.length;
  const encoded = encodeCheckpoint(options.slotBlocks, entryCount);
  assert(encoded.bytes.length === sealOffsetBytes(entryCount), "the seal follows the entries");
  assert(encoded.bytes.length <= layout.checkpointBytes, "checkpoint fits its region");
  // The seal goes in the same write, so it never describes entries that were not written.
  const sealed = encoded.bytes.length + SECTOR_BYTES <= layout.checkpointBytes;
  const bytes = new Uint8Array(encoded.bytes.length + (sealed ? SECTOR_BYTES : 0));
  bytes.set(encoded.bytes, 0);
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
  return encoded.crc32c;
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

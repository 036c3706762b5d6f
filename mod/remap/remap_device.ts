/**
 * The remap layer: a `Device` over a main disk and its spares that redirects
 * failed blocks to spare slots. It only translates; it never invents data.
 *
 * Rules (the product's data rules, enforced here):
 * - A main-disk read that still fails after the bounded retries is EIO for
 *   that request, and the blocks that failed are recorded as pending.
 * - A write that fails on the main disk (EIO), or that targets a pending
 *   block, is remapped: the whole block is composed (read-modify-write for
 *   partial writes; EIO if the rest of the block is unreadable), written to a
 *   spare slot, flushed, logged and flushed again before the write resolves.
 * - Remaps are committed in groups (one data flush and one log flush per spare
 *   per group) under the exclusive side of an {@link IoGate}, so a
 *   read-modify-write sees every write that completed before it.
 * - A spare whose write or flush fails takes no new slots; the remap moves to
 *   the next spare its {@link SpareSet} grants. With none left the request
 *   fails (EIO) and the setup is degraded; nothing acknowledged is lost.
 * - Zeroing or trimming a remapped block zeroes its slot, so stale data
 *   never resurfaces from the spare.
 * - A device that is gone (`"ENODEV"`, see `isDeviceGone`) is not a bad
 *   block: no request on it works, so none of its blocks is to blame. A main
 *   disk that is gone fails the setup: that request and every later one is
 *   EIO, nothing becomes pending or remapped, and the data plane's workers
 *   are told to send everything here. A spare that is gone fails as a spare
 *   whose write failed (no new slots, no metadata), on a read too; requests
 *   that touch its slots are EIO, never the main disk's stale data.
 * - Metadata changes go through a {@link MetadataQueue}: a group commit that
 *   answers client writes runs before any background change (the scanner's
 *   record and the pending blocks it found, the delayed state write, scrubs),
 *   so a client's remap waits for at most the one change already running.
 *   What only the background changed (the scanner's findings, a pending
 *   block that a remap cleared, which the log already proves) is written by
 *   the background, never added to a client's commit.
 * - Table and pending list are published to shared memory
 *   ({@link EngineStatePublisher}) for the NBD data plane's workers, and a
 *   group commit also closes the cross-thread gate, so no worker I/O is
 *   inside while a mapping changes.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { assert } from "../assert.ts";
import { bytesEqual } from "../bytes_equal.ts";
import {
  MIGRATION_CHUNK_BLOCKS,
  PENDING_MAX,
  READ_RETRIES_DEFAULT,
  READ_RETRIES_MAX,
  REMAP_BATCH_MAX,
  SECTOR_BYTES,
  SPARES_MAX,
} from "../constants.ts";
import type { ByteRange, Device, WriteOptions, WriteZeroesOptions } from "../device/device.ts";
import { isRangeInside } from "../device/device.ts";
import {
  DeviceIoError,
  isDeviceGone,
  RefusedError,
  SetupMismatchError,
  UsageError,
} from "../errors.ts";
import { mergeViews } from "../metadata/setup_tables.ts";
import { VACATED } from "../metadata/checkpoint.ts";
import { slotOffsetBytes, type SpareLayout } from "../metadata/spare_layout.ts";
import { type CopyReport, SpareStore } from "../metadata/spare_store.ts";
import type { ScrubReport } from "../metadata/spare_store.ts";
import {
  EMPTY_CRC32C,
  type ServingMarker,
  type SpareRecord,
  type SuperblockPayload,
} from "../metadata/superblock.ts";
import { IoGate } from "./io_gate.ts";
import { type MetadataLane, MetadataQueue } from "./metadata_queue.ts";
import { type PlanSource, RequestPlanner, type Run } from "./plan.ts";
import { RemapTable, type SlotLocation } from "./remap_table.ts";
import { EngineStatePublisher } from "./shared_state.ts";
import { type SpareMember, type SparePlacement, SpareSet } from "./spare_set.ts";
import { type AllocationPolicy, placementFor } from "./allocation_policy.ts";

/** What the engine reports as it works. */
export type RemapEvent =
  | { type: "remap"; blockIndex: number; spareIndex: number; slotIndex: number }
  /** `blockCount` blocks from `blockIndex` (one when absent) became pending at once. */
  | { type: "pending"; blockIndex: number; blockCount?: number }
  | { type: "read-error"; offsetBytes: number; lengthBytes: number }
  | { type: "remap-failed"; blockIndex: number; reason: string }
  | { type: "spare-failed"; spareIndex: number; reason: string }
  | { type: "spare-added"; spareIndex: number; path: string; slotCount: number }
  | { type: "spare-draining"; spareIndex: number; blocks: number }
  | { type: "spare-removed"; spareIndex: number; blocksMoved: number }
  | { type: "degraded"; reason: string }
  | { type: "main-failed"; reason: string };

/** Options for {@link RemapDevice}. */
export interface RemapDeviceOptions {
  /** Extra attempts at a failing main-disk read. @default READ_RETRIES_DEFAULT */
  readRetries?: number;
  /** Called for every event, synchronously. @default ignore */
  onEvent?: (event: RemapEvent) => void;
  /** Pending blocks known from the metadata. @default [] */
  pending?: readonly number[];
  /** Whether the metadata already says degraded. @default false */
  degraded?: boolean;
  /** Delay before pending-list changes are written to the copies. @default 1000 */
  metadataDelayMs?: number;
  /**
   * Called after the setup's description (a new generation) was written to
   * the spares, while no remap can change the stores: the moment to back it up.
   * Not called for a generation that only records or clears who serves it.
   * @default ignore
   */
  onSetupWritten?: () => void;
  /**
   * Which spare new slots are taken from: a policy by name (what the setup
   * records), or a placement of a test's own. @default "fill-first"
   */
  placement?: SparePlacement | AllocationPolicy;
}

/** Request and error counters for the status API. */
export interface RemapCounters {
  reads: number;
  writes: number;
  bytesRead: number;
  bytesWritten: number;
  flushes: number;
  readErrors: number;
  writeErrors: number;
  remapsCreated: number;
  remapBatches: number;
}

/** Part of one client write that must go to a new or existing slot. */
interface BlockWrite {
  blockIndex: number;
  startInBlock: number;
  data: Uint8Array;
}

interface RemapRequest extends BlockWrite {
  /**
   * A relocation of the scanner: no data of its own, the block is copied from
   * the main disk as it is at the commit, and the slot is read back and
   * compared before the mapping is logged.
   */
  relocation?: true;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** What {@link RemapDevice.repairMetadata} did on one spare. */
export interface SpareRepair {
  spareIndex: number;
  /** The five copies as they were found; `repaired` marks those rewritten. Empty after an error. */
  copies: CopyReport[];
  /** Why the spare could not be repaired (it is failed now). */
  error?: string;
}

/** One main-disk run that {@link RemapDevice.scanRead} read (or could not). */
export interface ScanRun extends ByteRange {
  /** Reads it took: 1 when the first succeeded; past the retries when it failed. */
  attempts: number;
  /** Time of all attempts together. */
  latencyMs: number;
  /** False when every attempt failed (a one-block run is pending then). */
  readable: boolean;
}

/** Where the removal of a spare stands (`spare remove`), for the API and the CLI. */
export interface SpareMigration {
  spareIndex: number;
  /** `running` until every block moved (`done`), or until it cannot go on (`failed`, see `error`). */
  state: "running" | "done" | "failed";
  /** Blocks on the spare when this migration (or its resumption) began. */
  blocksTotal: number;
  blocksMoved: number;
  /** Blocks whose slot could not be read or placed; they stay on the spare. */
  blocksFailed: number;
  startedMs: number;
  /** When it ended. */
  endedMs?: number;
  error?: string;
}

/** What a spare joining the setup is (`spare add`); {@link RemapDevice.addSpare} formats it. */
export interface JoiningSpare {
  device: Device;
  /** Canonical path, as the setup records it. */
  path: string;
  /** Its layout, with room in every spare's checkpoint for its slots (`assembly/add_spare.ts`). */
  layout: SpareLayout;
}

/** The remapped block device. */
export class RemapDevice implements Device {
  readonly name: string;
  readonly sizeBytes: number;
  readonly blockBytes: number;
  readonly counters: RemapCounters = {
    reads: 0,
    writes: 0,
    bytesRead: 0,
    bytesWritten: 0,
    flushes: 0,
    readErrors: 0,
    writeErrors: 0,
    remapsCreated: 0,
    remapBatches: 0,
  };
  readonly #main: Device;
  readonly #spares: SpareSet;
  readonly #table: RemapTable;
  readonly #pending: Set<number>;
  /** Slots used per spare: every spare's, a missing one's too. */
  readonly #slotsUsed: number[];
  readonly #planner: RequestPlanner;
  /** What plans read: the table alone, or with the pending blocks as runs of their own. */
  readonly #planSources: { table: PlanSource; withPending: PlanSource };
  readonly #gate = new IoGate();
  readonly #shared: EngineStatePublisher;
  #readRetries: number;
  readonly #onEvent: (event: RemapEvent) => void;
  readonly #metadataDelayMs: number;
  readonly #onSetupWritten: () => void;
  #degraded: boolean;
  /** Why the setup failed: its main disk is gone. */
  #failure: string | undefined;
  #serving: ServingMarker | undefined;
  #queue: RemapRequest[] = [];
  #draining: Promise<void> | undefined;
  readonly #metadataQueue = new MetadataQueue();
  #metadataTimer: ReturnType<typeof setTimeout> | undefined;
  /** The setup state changed in a way the next write, a client's commit too, must record. */
  #metadataDirty = false;
  /**
   * The setup state changed in a way only a background write records (the
   * scanner's record and pending marks, pending blocks a remap cleared): a
   * client's commit does not pay for it.
   */
  #backgroundDirty = false;
  /**
   * Whether the state written next differs in more than who serves the setup:
   * only then is it a change of the setup worth a backup (as LVM backs up
   * after a change of the configuration, not after an activation).
   */
  #setupStateChanged = false;
  /** The scanner's record (`payload.scan`), written with the setup state once given. */
  #scanRecord: Record<string, unknown> | undefined;
  #closed = false;
  #allocationPolicy: AllocationPolicy | "custom";
  /** Set when close starts: no evacuation begins after it. */
  #closing = false;
  /** The evacuation started by a spare's failure, if any. */
  #evacuating: Promise<void> | undefined;
  /** The removal of a spare in progress or last ended, if any. */
  #migration: SpareMigration | undefined;
  /** Its run, awaited by close. */
  #migrating: Promise<void> | undefined;

  /**
   * Builds the engine from an opened main disk and opened spares, which a
   * {@link SpareSet} takes over. The table is rebuilt from every spare's slots.
   */
  constructor(
    name: string,
    main: Device,
    spares: readonly SpareMember[],
    options: RemapDeviceOptions = {},
  ) {
    const placement = options.placement ?? "fill-first";
    this.#allocationPolicy = typeof placement === "string" ? placement : "custom";
    this.#spares = new SpareSet(spares, {
      placement: typeof placement === "string" ? placementFor(placement) : placement,
    });
    const blockBytes = this.#spares.blockBytes;
    this.name = name;
    this.sizeBytes = main.sizeBytes;
    this.blockBytes = blockBytes;
    this.#main = main;
    this.#readRetries = options.readRetries ?? READ_RETRIES_DEFAULT;
    assert(
      this.#readRetries >= 0 && this.#readRetries <= READ_RETRIES_MAX,
      "read retries in range",
    );
    this.#onEvent = options.onEvent ?? (() => {});
    this.#metadataDelayMs = options.metadataDelayMs ?? 1000;
    this.#onSetupWritten = options.onSetupWritten ?? (() => {});
    this.#degraded = options.degraded ?? false;
    // Every spare knows every spare's slots (format version 2); the setup's
    // tables are the longest views, which assembly already wrote to each.
    const tables = mergeViews(this.#spares.present.map((spare) => spare.store), spares.length);
    const entries = tables.reduce((sum, table) => sum + table.length, 0);
    this.#slotsUsed = tables.map((table) => table.length);
    this.#table = new RemapTable(entries, Math.ceil(main.sizeBytes / blockBytes));
    tables.forEach((table, spareIndex) => {
      table.forEach((blockIndex, slotIndex) => {
        // A slot that gave its block up: the block lives in a later slot.
        if (blockIndex === VACATED) return;
        assert(
          blockIndex * blockBytes < main.sizeBytes,
          `slot ${slotIndex} maps a block inside the main disk`,
        );
        if (!this.#table.tryInsert(blockIndex, { spareIndex, slotIndex })) {
          throw new SetupMismatchError(
            name,
            `block ${blockIndex} is remapped twice, the second time to slot ${slotIndex} of ` +
              `spare ${spareIndex}: the spares' tables are damaged; nothing was written`,
          );
        }
      });
    });
    // A remapped block is pending only while its slot is on a spare that is
    // not active and could not be read (it moves with its next write).
    this.#pending = new Set(
      (options.pending ?? []).filter((blockIndex) => {
        const location = this.#table.lookup(blockIndex);
        return location === undefined || spares[location.spareIndex]!.state !== "active";
      }),
    );
    for (
      const spare of spares.filter((member) =>
        member.store === undefined && member.state !== "removed"
      )
    ) {
      // Recorded as failed with the next state write: it takes no slots and no metadata.
      this.#metadataDirty = this.#setupStateChanged = true;
      this.#onEvent({
        type: "spare-failed",
        spareIndex: spare.index,
        reason: `${spare.device.name} is missing: the blocks in its slots are unreadable`,
      });
      this.#degrade(`${spare.device.name} is missing`);
    }
    this.#shared = new EngineStatePublisher(this.#table);
    this.#shared.publishSpareCount(spares.length);
    this.#shared.publishPending(this.#pending);
    this.#planner = new RequestPlanner({
      blockBytes,
      layoutOf: (spareIndex) => this.#spareAt(spareIndex).layout,
    });
    const table = this.#table;
    const pending = this.#pending;
    this.#planSources = {
      table: {
        get remapCount() {
          return table.size;
        },
        table,
      },
      withPending: {
        get remapCount() {
          return table.size;
        },
        table,
        pending,
      },
    };
    // A removal that a crash or a stop interrupted goes on (its intent is in the metadata).
    const draining = spares.find((member) => member.state === "draining");
    if (draining !== undefined) this.#startMigration(draining.index);
  }

  /** The table, pending list and gate as other threads see them. */
  get sharedState(): EngineStatePublisher {
    return this.#shared;
  }

  /** Remapped blocks. */
  get remapCount(): number {
    return this.#table.size;
  }

  /** Bytes the remap table holds in memory. */
  get tableMemoryBytes(): number {
    return this.#table.memoryBytes;
  }

  /** Extra attempts at a failing main-disk read; SIGHUP may change it while serving. */
  get readRetries(): number {
    return this.#readRetries;
  }

  set readRetries(retries: number) {
    assert(Number.isSafeInteger(retries), "read retries are a count");
    assert(retries >= 0 && retries <= READ_RETRIES_MAX, "read retries in range");
    this.#readRetries = retries;
  }

  /** Blocks whose reads failed and that were not rewritten since. */
  get pendingBlocks(): number[] {
    return [...this.#pending].sort((a, b) => a - b);
  }

  /** Whether a block is pending: unreadable on the main disk and not rewritten since. */
  isPending(blockIndex: number): boolean {
    return this.#pending.has(blockIndex);
  }

  /** Whether a remap could not be made (spares full or failed). */
  get degraded(): boolean {
    return this.#degraded;
  }

  /** Why the setup failed (its main disk is gone), or undefined while it serves. */
  get failure(): string | undefined {
    return this.#failure;
  }

  /** The spares with their state. */
  get spares(): readonly SpareMember[] {
    return this.#spares.members;
  }

  /** The allocation policy new remaps follow ("custom" for a placement a test gave). */
  get allocationPolicy(): AllocationPolicy | "custom" {
    return this.#allocationPolicy;
  }

  /** I/O errors on each spare's slots since the engine started, by spare index. */
  get spareErrors(): readonly number[] {
    return this.#spares.errors;
  }

  /**
   * Changes the allocation policy while serving: the next group commit uses
   * it, and the setup's metadata records it (with the next state write).
   */
  setAllocationPolicy(policy: AllocationPolicy): Promise<void> {
    this.#spares.setPlacement(placementFor(policy));
    this.#allocationPolicy = policy;
    this.#metadataDirty = this.#setupStateChanged = true;
    return this.persistState();
  }

  /**
   * Gives no new slots on these spares from the next group commit on (a
   * policy's `stop-allocating`), unless no other spare can take them; an
   * empty list lifts it. Not recorded in the metadata: after a restart the
   * server's policies decide again.
   */
  stopAllocating(spareIndexes: readonly number[]): void {
    this.#spares.stopAllocating(spareIndexes);
  }

  /** The spares new remaps avoid, by index. */
  get allocationStopped(): readonly number[] {
    return this.#spares.allocationStopped;
  }

  /**
   * Adds a spare while serving (`spare add`): formats it with the setup's
   * description and every spare's table as it stands, then lists it in every
   * working spare's metadata (the next generation), and only then lets it take
   * slots. All of it runs in the metadata queue, so no remap is logged while
   * the new spare's view is being made.
   *
   * Crash safety: the new spare is formatted with generation 0, below every
   * real one, so an add cut short before the others list it is never taken as
   * the setup's description (assembly leaves such a disk out); once one spare
   * lists it, assembly lists it on the others too (`openSpares`).
   *
   * The caller checked the device (identity, size, in use, contents) and
   * computed its layout so every spare's checkpoints hold its slots.
   *
   * @returns The new spare's index.
   * @throws {UsageError} When the setup has SPARES_MAX spares already.
   */
  addSpare(joining: JoiningSpare): Promise<number> {
    assert(!this.#closed, `setup "${this.name}" is open`);
    assert(joining.layout.blockBytes === this.blockBytes, "the setup's block size");
    return this.#serializeMetadata("background", async () => {
      const index = this.#spares.members.length;
      if (index >= SPARES_MAX) {
        throw new UsageError(
          `Cannot add a spare to setup "${this.name}": it has ${SPARES_MAX} spares already ` +
            `(removed ones keep their place); remove none, use another setup`,
        );
      }
      const model = this.#spares.working[0];
      if (model === undefined) {
        throw new RefusedError(
          joining.path,
          `Cannot add a spare to setup "${this.name}": no spare of it works to copy the setup ` +
            `from; nothing was written`,
        );
      }
      const records: SpareRecord[] = [
        ...this.#spareRecords(model.store.payload.spares),
        {
          index,
          uuid: crypto.randomUUID(),
          path: joining.path,
          sizeBytes: joining.device.sizeBytes,
          role: "spare",
          state: "active",
        },
      ];
      const payload = structuredClone(model.store.payload) as SuperblockPayload;
      payload.setup.generation = 0;
      delete payload.setup.serving;
      payload.spares = records;
      payload.spareIndex = index;
      payload.layout = joining.layout;
      payload.table = {
        checkpointRegion: 0,
        checkpointEntries: 0,
        checkpointCrc32c: 0,
        logStartSequence: 1,
        peerEntries: records.map(() => 0),
        peerCrc32c: EMPTY_CRC32C,
      };
      const store = await SpareStore.format(joining.device, payload);
      const tables = mergeViews(this.#spares.working.map((spare) => spare.store), index);
      await store.resync([...tables, []]);
      const generation = this.#nextGeneration();
      for (const spare of this.#spares.working) {
        try {
          await spare.store.joinSpares(records, generation);
        } catch (error) {
          if (!isIoError(error) && !isDeviceGone(error)) throw error;
          this.#failSpare(spare, error.message);
        }
      }
      this.#spares.add({
        index,
        device: joining.device,
        store,
        layout: joining.layout,
        state: "active",
      });
      this.#slotsUsed.push(0);
      // Before any slot of it is mapped: workers without its descriptor send flushes here.
      this.#shared.publishSpareCount(index + 1);
      this.#onEvent({
        type: "spare-added",
        spareIndex: index,
        path: joining.path,
        slotCount: joining.layout.slotCount,
      });
      this.#metadataDirty = this.#setupStateChanged = true;
      await this.#writeSetupState();
      return index;
    });
  }

  /**
   * Removes a spare while serving (`spare remove`): its blocks move to the
   * other spares through the evacuation's path (each read from its slot,
   * written to a new one, read back and compared, then logged as moved, under
   * the exclusive gate, so a client write racing the move wins), and only
   * when none is left is it recorded as removed on every other spare and its
   * own metadata erased. The intent (`draining`) is recorded first, so an
   * open after a crash or a stop resumes the migration.
   *
   * @returns The migration's progress; it goes on in the background ({@link migration}).
   * @throws {RefusedError} When the other spares lack free slots for its blocks
   *   (saying how many), or it is not an active spare; nothing was changed then.
   */
  removeSpare(spareIndex: number): Promise<SpareMigration> {
    assert(!this.#closed, `setup "${this.name}" is open`);
    return this.#serializeMetadata("background", async () => {
      const spare = this.#spares.members[spareIndex];
      if (spare === undefined || spare.state === "removed") {
        throw new UsageError(
          `Setup "${this.name}" has no spare ${spareIndex} to remove; see dm-remap status`,
        );
      }
      const running = this.#migration;
      if (running?.state === "running") {
        if (running.spareIndex === spareIndex) return { ...running };
        throw new RefusedError(
          spare.device.name,
          `Cannot remove spare ${spareIndex} of setup "${this.name}": spare ` +
            `${running.spareIndex} is being removed; wait for that to finish`,
        );
      }
      if (spare.state === "draining") {
        this.#startMigration(spareIndex);
        return { ...this.#migration! };
      }
      if (spare.state !== "active") {
        throw new RefusedError(
          spare.device.name,
          `Cannot remove spare ${spareIndex} ("${spare.device.name}") of setup "${this.name}": ` +
            `it is ${spare.state}; its readable blocks are evacuated by themselves`,
        );
      }
      const others = this.#spares.members.filter((member) =>
        member.index !== spareIndex && member.state === "active"
      );
      if (others.length === 0) {
        throw new RefusedError(
          spare.device.name,
          `Cannot remove spare ${spareIndex} ("${spare.device.name}") of setup "${this.name}": ` +
            `it is the last active spare, and a setup needs one to remap to. Add another first ` +
            `(dm-remap spare add), or use spare replace; nothing was changed`,
        );
      }
      const blocks = this.#blocksOn(spareIndex).length;
      const free = this.#spares.members
        .filter((member) => member.index !== spareIndex && member.state === "active")
        .reduce((sum, member) => sum + member.layout.slotCount - this.#slotsUsed[member.index]!, 0);
      if (free < blocks) {
        throw new RefusedError(
          spare.device.name,
          `Cannot remove spare ${spareIndex} ("${spare.device.name}") of setup "${this.name}": ` +
            `its ${blocks} remapped blocks need ${blocks} free slots on the other spares, which ` +
            `have ${free}: ${blocks - free} slots (${(blocks - free) * this.blockBytes} bytes) ` +
            `are missing. Add a spare first (dm-remap spare add), or use spare replace; ` +
            `nothing was changed`,
        );
      }
      this.#spares.markDraining(spareIndex);
      this.#onEvent({ type: "spare-draining", spareIndex, blocks });
      this.#metadataDirty = this.#setupStateChanged = true;
      await this.#writeSetupState();
      this.#startMigration(spareIndex);
      return { ...this.#migration! };
    });
  }

  /** The removal of a spare in progress, or the last one that ended. */
  get migration(): SpareMigration | undefined {
    return this.#migration && { ...this.#migration };
  }

  /** Starts (or resumes) moving a draining spare's blocks away, in the background. */
  #startMigration(spareIndex: number): void {
    this.#migration = {
      spareIndex,
      state: "running",
      blocksTotal: this.#blocksOn(spareIndex).length,
      blocksMoved: 0,
      blocksFailed: 0,
      startedMs: Date.now(),
    };
    const migration = this.#migration;
    const run = this.#migrate(migration).catch((error) => {
      if (!isIoError(error) && !isDeviceGone(error)) throw error;
      migration.state = "failed";
      migration.error = error.message;
      migration.endedMs = Date.now();
    });
    this.#migrating = (this.#migrating ?? Promise.resolve()).then(() => run);
  }

  async #migrate(migration: SpareMigration): Promise<void> {
    const { spareIndex } = migration;
    const unmovable = new Set<number>();
    for (;;) {
      // Blocks a client rewrote meanwhile moved with that write; a closing
      // engine leaves the rest to the next open, which resumes.
      if (this.#closing) return;
      const spare = this.#spares.get(spareIndex);
      if (spare.state !== "draining") {
        migration.state = "failed";
        migration.error = `spare ${spareIndex} is ${spare.state} now; its readable blocks are ` +
          `evacuated as a failed spare's`;
        migration.endedMs = Date.now();
        return;
      }
      const chunk = this.#blocksOn(spareIndex).filter((block) => !unmovable.has(block))
        .slice(0, MIGRATION_CHUNK_BLOCKS);
      if (chunk.length === 0) break;
      const results = await Promise.allSettled(this.#enqueue(chunk.map((blockIndex) => ({
        blockIndex,
        startInBlock: 0,
        data: new Uint8Array(0),
      }))));
      results.forEach((result, i) => {
        // A block that moved by a racing client write counts as moved too.
        if (
          result.status === "fulfilled" || this.#table.lookup(chunk[i]!)?.spareIndex !== spareIndex
        ) {
          migration.blocksMoved++;
        } else {
          migration.blocksFailed++;
          unmovable.add(chunk[i]!);
        }
      });
    }
    if (unmovable.size > 0) {
      migration.state = "failed";
      migration.error = `${unmovable.size} blocks could not be moved off spare ${spareIndex} ` +
        `(its slots are unreadable, or no other spare had room); they stay on it, and it stays ` +
        `draining: run spare remove again once the cause is fixed`;
      migration.endedMs = Date.now();
      return;
    }
    await this.#serializeMetadata("background", async () => {
      const spare = this.#spares.get(spareIndex);
      if (spare.state !== "draining" || this.#blocksOn(spareIndex).length > 0) return;
      const store = spare.store!;
      this.#spares.markRemoved(spareIndex);
      this.#metadataDirty = this.#setupStateChanged = true;
      await this.#writeSetupState();
      // Every other spare records it removed: its own metadata can go.
      await store.erase().catch(ignoreIoError);
      migration.state = "done";
      migration.endedMs = Date.now();
      this.#onEvent({ type: "spare-removed", spareIndex, blocksMoved: migration.blocksMoved });
    });
  }

  /** Blocks whose slot is on spare `spareIndex`. */
  #blocksOn(spareIndex: number): number[] {
    const blocks: number[] = [];
    this.#table.forEach((blockIndex, location) => {
      if (location.spareIndex === spareIndex) blocks.push(blockIndex);
    });
    return blocks;
  }

  /** The spare list as the metadata records it, with each spare's state now. */
  #spareRecords(recorded: readonly SpareRecord[]): SpareRecord[] {
    return this.#spares.members.map((member) => ({
      ...structuredClone(recorded[member.index]!),
      state: member.state,
    }));
  }

  #nextGeneration(): number {
    return Math.max(...this.#spares.present.map((spare) => spare.store.payload.setup.generation)) +
      1;
  }

  /** Slots of spare `spareIndex` that hold a block, as the setup's tables say. */
  slotsUsedOf(spareIndex: number): number {
    assert(spareIndex >= 0 && spareIndex < this.#slotsUsed.length, "a spare of the setup");
    return this.#slotsUsed[spareIndex]!;
  }

  /** Requests in flight now, on the engine and in the data plane's workers. */
  get foregroundInFlight(): number {
    return this.#gate.sharedInside + this.#shared.workersInside;
  }

  /**
   * Requests started so far, on the engine and in the workers; only its
   * changes mean anything (the workers' part wraps).
   */
  get foregroundRequests(): number {
    const { reads, writes, flushes } = this.counters;
    return reads + writes + flushes + this.#shared.workerRequests;
  }

  /**
   * Reads the parts of a range that live on the main disk, for the scanner:
   * remapped blocks (on spares) and pending blocks are skipped, so a block
   * the main disk no longer holds is never read there. Each run is read with
   * the bounded retries. Runs that keep failing are only reported: the
   * scanner reads them block by block (one failing read of a whole run must
   * not condemn a weak block in it that reads on a retry) and gives the
   * blocks that fail alone to {@link markPending}, many at once. Nothing is
   * written.
   *
   * @param range Sector-aligned, inside the device.
   * @param buffer Scratch space of at least `range.lengthBytes` (aligned for O_DIRECT).
   */
  scanRead(range: ByteRange, buffer: Uint8Array): Promise<ScanRun[]> {
    this.#checkRequest(range);
    assert(buffer.length >= range.lengthBytes, "the scan buffer holds the range");
    return this.#gate.shared(async () => {
      const runs: ScanRun[] = [];
      for (const run of this.#plan(range.offsetBytes, range.lengthBytes, true)) {
        if (run.kind !== "main") continue;
        const target = buffer.subarray(run.bufferOffset, run.bufferOffset + run.lengthBytes);
        const startMs = performance.now();
        let attempts = 0;
        const readable = await this.#readMain(target, run.offsetBytes, () => attempts++).then(
          () => true,
          (error) => isIoError(error) ? false : Promise.reject(error),
        );
        const scanned = {
          offsetBytes: run.offsetBytes,
          lengthBytes: run.lengthBytes,
          attempts,
          latencyMs: performance.now() - startMs,
          readable,
        };

        runs.push(scanned);
      }
      return runs;
    });
  }

  /**
   * Marks blocks the scanner found unreadable (each read alone, with the
   * bounded retries) as pending, many at once: one event per run of
   * adjacent blocks, and no metadata write of its own; they are written with
   * the scanner's next record ({@link recordScan}), in the background lane.
   * So a pass over a large failing region costs the clients neither a
   * metadata write nor a log line and history row per block. A block remapped
   * since the scanner read it (a client wrote it) is left alone.
   */
  markPending(blockIndexes: readonly number[]): void {
    assert(!this.#closed, `setup "${this.name}" is open`);
    const added = blockIndexes.filter((blockIndex) => {
      assert(blockIndex * this.blockBytes < this.sizeBytes, "pending block inside the device");
      return !this.#table.has(blockIndex) && !this.#pending.has(blockIndex);
    }).sort((a, b) => a - b);
    if (added.length === 0) return;
    for (const blockIndex of added) this.#pending.add(blockIndex);
    this.#shared.publishPending(this.#pending);
    this.#backgroundDirty = this.#setupStateChanged = true;
    for (let first = 0; first < added.length;) {
      let end = first + 1;
      while (end < added.length && added[end] === added[end - 1]! + 1) end++;
      const blockCount = end - first;
      this.#onEvent({
        type: "pending",
        blockIndex: added[first]!,
        ...(blockCount > 1 ? { blockCount } : {}),
      });
      first = end;
    }
  }

  /**
   * Reads a pending block from the main disk, for the scanner, with the
   * bounded retries: whether it reads again (a block that failed for a
   * while, as a flaky one does). Its main-disk contents are still the
   * newest: a client write to a pending block is remapped, never written
   * there. Nothing is marked or written; the scanner relocates it next.
   *
   * @param buffer Scratch space of at least one block (aligned for O_DIRECT).
   */
  probePending(blockIndex: number, buffer: Uint8Array): Promise<boolean> {
    assert(!this.#closed, `setup "${this.name}" is open`);
    const offsetBytes = blockIndex * this.blockBytes;
    assert(offsetBytes < this.sizeBytes, "probed block inside the device");
    const lengthBytes = Math.min(this.blockBytes, this.sizeBytes - offsetBytes);
    assert(buffer.length >= lengthBytes, "the scan buffer holds a block");
    return this.#gate.shared(async () => {
      if (!this.#pending.has(blockIndex)) return false;
      return await this.#readMain(buffer.subarray(0, lengthBytes), offsetBytes).then(
        () => true,
        (error) => isIoError(error) ? false : Promise.reject(error),
      );
    });
  }

  /**
   * Copies a block that still reads from the main disk to a spare, before it
   * fails: the block is read under the exclusive gate (so every write that
   * completed before is in it, and none runs during the copy), written to a
   * slot, flushed, read back and compared, and only then logged.
   *
   * A client write racing the relocation wins: one that completed first is in
   * the copy, one that arrives later goes to the slot; a block a client write
   * remapped meanwhile is left as it is.
   *
   * @returns True when the block is on a spare now (by this or an earlier
   *   remap); false when it is unreadable (it is pending then) or no spare
   *   could take it.
   */
  async relocate(blockIndex: number): Promise<boolean> {
    assert(!this.#closed, `setup "${this.name}" is open`);
    assert(blockIndex * this.blockBytes < this.sizeBytes, "relocated block inside the device");
    if (this.#table.has(blockIndex)) return true;
    const queued = {
      blockIndex,
      startInBlock: 0,
      data: new Uint8Array(0),
      relocation: true as const,
    };
    try {
      await this.#remap([queued]);
    } catch (error) {
      if (!isIoError(error)) throw error;
      return false;
    }
    return this.#table.has(blockIndex);
  }

  /**
   * Gives the scanner's record (position, settings, region health) to write
   * as the metadata's `scan` field, now (with the pending blocks the scanner
   * found) and with every later setup state. A background write: a client's
   * remap waiting meanwhile goes first.
   */
  recordScan(record: Record<string, unknown>): Promise<void> {
    this.#scanRecord = structuredClone(record);
    this.#backgroundDirty = true;
    return this.persistState();
  }

  /** Where a block is remapped to, if it is. */
  lookup(blockIndex: number): SlotLocation | undefined {
    return this.#table.lookup(blockIndex);
  }

  /** Every remap, sorted by block. */
  remaps(): { blockIndex: number; spareIndex: number; slotIndex: number }[] {
    const list: { blockIndex: number; spareIndex: number; slotIndex: number }[] = [];
    this.#table.forEach((blockIndex, location) => list.push({ blockIndex, ...location }));
    return list.sort((a, b) => a.blockIndex - b.blockIndex);
  }

  read(buffer: Uint8Array, offsetBytes: number): Promise<void> {
    const range = { offsetBytes, lengthBytes: buffer.length };
    this.#checkRequest(range);
    this.counters.reads++;
    return this.#answer("read", range, () =>
      this.#gate.shared(async () => {
        await settleAll(
          this.#plan(offsetBytes, buffer.length, false).map((run) =>
            this.#readRun(buffer, run, offsetBytes)
          ),
        );
        this.counters.bytesRead += buffer.length;
      }));
  }

  write(data: Uint8Array, offsetBytes: number, options: WriteOptions = {}): Promise<void> {
    const range = { offsetBytes, lengthBytes: data.length };
    this.#checkRequest(range);
    this.counters.writes++;
    return this.#answer("write", range, async () => {
      const touched = await this.#gate.shared(() => this.#writeRuns(data, offsetBytes));
      if (touched.failed.length > 0) await this.#remap(touched.failed);
      if (options.fua) await this.#flushTouched(touched);
      this.counters.bytesWritten += data.length;
    });
  }

  writeZeroes(range: ByteRange, options: WriteZeroesOptions = {}): Promise<void> {
    this.#checkRequest(range);
    return this.#answer("write zeroes to", range, async () => {
      const touched = await this.#gate.shared(() =>
        this.#zeroRuns(range, options.mayPunch ?? false)
      );
      if (touched.failed.length > 0) await this.#remap(touched.failed);
      if (options.fua) await this.#flushTouched(touched);
    });
  }

  /** Trims the main disk and zeroes the slots of remapped blocks in the range. */
  discard(range: ByteRange): Promise<void> {
    this.#checkRequest(range);
    return this.#answer("discard", range, () => this.#discardRuns(range));
  }

  #discardRuns(range: ByteRange): Promise<void> {
    return this.#gate.shared(async () => {
      await settleAll(
        this.#plan(range.offsetBytes, range.lengthBytes, false).map(async (run) => {
          if (run.kind === "slot") {
            const spare = this.#spareAt(run.spareIndex);
            await this.#onSpare(spare, () => spare.device.writeZeroes(run, { mayPunch: true }));
          } else {
            // Discard is a hint and promises no contents, so a failing main
            // disk may refuse it without the client having lost anything.
            await this.#onMain(() => this.#main.discard(run)).catch((error) =>
              ignoreIoError(error)
            );
          }
        }),
      );
    });
  }

  flush(): Promise<void> {
    this.counters.flushes++;
    return this.#answer("flush", { offsetBytes: 0, lengthBytes: this.sizeBytes }, async () => {
      await settleAll([
        this.#onMain(() => this.#main.flush()),
        // A failed spare takes no writes, so nothing on it waits for a flush.
        ...this.#spares.working.map((spare) => this.#onSpare(spare, () => spare.device.flush())),
      ]);
    });
  }

  /**
   * Records who serves the setup in every active spare's metadata now;
   * {@link close} removes it, so its presence afterwards means no clean stop.
   */
  markServing(marker: ServingMarker): Promise<void> {
    this.#serving = marker;
    this.#metadataDirty = true;
    return this.persistState();
  }

  /** Waits for remaps in progress, writes pending metadata, and closes every device. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closing = true;
    await this.#evacuating;
    await this.#migrating;
    while (this.#draining !== undefined) await this.#draining;
    if (this.#serving !== undefined) {
      this.#serving = undefined;
      this.#metadataDirty = true;
    }
    await this.persistState();
    this.#closed = true;
    await settleAll(
      [this.#main, ...this.#spares.members.map((spare) => spare.device)].map((device) =>
        device.close()
      ),
    );
  }

  /**
   * Rewrites every metadata copy of the working spares that is unreadable,
   * invalid or stale, from the state the engine holds; between the other
   * metadata writes, never during one. A spare that cannot be written fails,
   * as it does when the setup state cannot be written to it.
   *
   * @returns Per working spare, its copies as found and whether each was rewritten, or the error.
   */
  repairMetadata(): Promise<SpareRepair[]> {
    assert(!this.#closed, "metadata is repaired while the engine is open");
    return this.#serializeMetadata("background", async () => {
      const repairs: SpareRepair[] = [];
      for (const spare of this.#spares.working) {
        try {
          repairs.push({ spareIndex: spare.index, copies: await spare.store.repairCopies() });
        } catch (error) {
          if (!isIoError(error) && !isDeviceGone(error)) throw error;
          this.#failSpare(spare, error.message);
          repairs.push({ spareIndex: spare.index, copies: [], error: error.message });
        }
      }
      return repairs;
    });
  }

  /**
   * Writes the setup-wide state (pending list, spare states, degraded) to
   * every active spare now, as a background change: client remaps waiting
   * meanwhile go first.
   */
  persistState(): Promise<void> {
    if (this.#metadataTimer !== undefined) clearTimeout(this.#metadataTimer);
    this.#metadataTimer = undefined;
    return this.#serializeMetadata("background", () => this.#writeSetupState());
  }

  /**
   * Scrubs one working spare's metadata (`SpareStore.scrub`): every copy, the
   * checkpoint and the log sectors in use, repairing what is stale or corrupt.
   * It waits its turn in the metadata queue, so no remap, checkpoint or state
   * write of the engine runs on the spare meanwhile; slots are never touched,
   * so client I/O goes on.
   *
   * @returns What it found and repaired; undefined when the spare has failed
   *   (it is not written any more, so there is nothing to keep).
   * @throws {DeviceIoError} or {MetadataScrubError} When the spare cannot be repaired.
   */
  scrubMetadata(spareIndex: number): Promise<ScrubReport | undefined> {
    assert(!this.#closed, `setup "${this.name}" is open`);
    const spare = this.#spareAt(spareIndex);
    // Checked in the queue: a commit ahead of the scrub may fail the spare.
    return this.#serializeMetadata(
      "background",
      () =>
        (spare.state === "active" || spare.state === "draining") && spare.store !== undefined
          ? spare.store.scrub()
          : Promise.resolve(undefined),
    );
  }

  /**
   * Runs a client request, unless the setup has failed. A device that is gone
   * reaches the client as EIO, as any failed request does; inside the engine
   * it stays `"ENODEV"`, so no catch below takes it for a bad block.
   */
  async #answer(action: string, range: ByteRange, request: () => Promise<void>): Promise<void> {
    const failed = (cause: unknown) =>
      new DeviceIoError(action, { device: this.name, ...range, code: "EIO", cause });
    if (this.#failure !== undefined) throw failed(new Error(this.#failure));
    try {
      await request();
    } catch (error) {
      throw isDeviceGone(error) ? failed(error) : error;
    }
  }

  /**
   * Runs I/O on the main disk; when the disk turns out to be gone, fails the
   * setup before the error goes on.
   */
  async #onMain<T>(io: () => Promise<T>): Promise<T> {
    try {
      return await io();
    } catch (error) {
      if (isDeviceGone(error) && this.#failure === undefined) {
        this.#failure = `the main disk "${this.#main.name}" is gone: ${error.message}`;
        this.#shared.markFailed();
        this.#onEvent({ type: "main-failed", reason: this.#failure });
      }
      throw error;
    }
  }

  /** Runs I/O on a spare; a spare that turns out to be gone fails as a spare. */
  async #onSpare<T>(spare: SpareMember, io: () => Promise<T>): Promise<T> {
    try {
      return await io();
    } catch (error) {
      if (isDeviceGone(error) && (spare.state === "active" || spare.state === "draining")) {
        this.#failSpare(spare, error.message);
        // Outside a group commit nothing else writes the setup's state soon.
        this.#scheduleMetadata();
      }
      throw error;
    }
  }

  #checkRequest(range: ByteRange): void {
    assert(!this.#closed, `setup "${this.name}" is open`);
    assert(isRangeInside(this, range), "request inside the device");
    assert(
      range.offsetBytes % SECTOR_BYTES === 0 && range.lengthBytes % SECTOR_BYTES === 0,
      "sector aligned",
    );
  }

  /** Splits a request into main-disk and slot runs (and pending blocks, for writes). */
  #plan(offsetBytes: number, lengthBytes: number, splitPending: boolean): Run[] {
    const source = splitPending ? this.#planSources.withPending : this.#planSources.table;
    // A fresh array: the runs are used across awaits, while other requests plan.
    return [...this.#planner.plan({ offsetBytes, lengthBytes }, source)];
  }

  #spareAt(spareIndex: number): SpareMember {
    return this.#spares.get(spareIndex);
  }

  async #readRun(buffer: Uint8Array, run: Run, requestOffsetBytes: number): Promise<void> {
    const target = buffer.subarray(run.bufferOffset, run.bufferOffset + run.lengthBytes);
    if (run.kind === "slot") {
      const spare = this.#spareAt(run.spareIndex);
      try {
        await this.#onSpare(spare, () => spare.device.read(target, run.offsetBytes));
      } catch (error) {
        if (!isIoError(error)) throw error;
        this.#spares.noteError(spare.index);
        this.counters.readErrors++;
        if (spare.state !== "active") {
          await this.#markUnreadableSlots(spare, run, requestOffsetBytes + run.bufferOffset);
        }
        throw error;
      }
      return;
    }
    try {
      await this.#readMain(target, run.offsetBytes);
    } catch (error) {
      if (!isIoError(error)) throw error;
      this.counters.readErrors++;
      this.#onEvent({
        type: "read-error",
        offsetBytes: run.offsetBytes,
        lengthBytes: run.lengthBytes,
      });
      await this.#markUnreadableBlocks(run);
      throw error;
    }
  }

  /** Reads the main disk with the bounded retries; `onAttempt` counts them. */
  async #readMain(
    target: Uint8Array,
    offsetBytes: number,
    onAttempt: () => void = () => {},
  ): Promise<void> {
    for (let attempt = 0;; attempt++) {
      onAttempt();
      try {
        return await this.#onMain(() => this.#main.read(target, offsetBytes));
      } catch (error) {
        if (!isIoError(error) || attempt >= this.#readRetries) throw error;
      }
    }
  }

  /**
   * After a slot run on a failed or draining spare failed, finds which of its
   * blocks cannot be read there and records them as pending, as a main-disk
   * block that cannot be read is: the read was EIO, and the block's next
   * write moves it to another spare (never invented data in between).
   */
  async #markUnreadableSlots(
    spare: SpareMember,
    run: ByteRange,
    clientOffsetBytes: number,
  ): Promise<void> {
    for (let done = 0; done < run.lengthBytes;) {
      const blockIndex = Math.floor((clientOffsetBytes + done) / this.blockBytes);
      const pieceBytes = Math.min(
        run.lengthBytes - done,
        (blockIndex + 1) * this.blockBytes - (clientOffsetBytes + done),
      );
      const failed = await spare.device.read(new Uint8Array(pieceBytes), run.offsetBytes + done)
        .then(() => false, (error) => isIoError(error) ? true : Promise.reject(error));
      if (failed && !this.#pending.has(blockIndex)) {
        this.#pending.add(blockIndex);
        this.#shared.publishPending(this.#pending);
        this.#onEvent({ type: "pending", blockIndex });
        this.#scheduleMetadata();
      }
      done += pieceBytes;
    }
  }

  /** After a client's read failed, finds which of its blocks cannot be read and records them as pending. */
  async #markUnreadableBlocks(run: ByteRange): Promise<void> {
    const end = run.offsetBytes + run.lengthBytes;
    for (let position = run.offsetBytes; position < end;) {
      const blockIndex = Math.floor(position / this.blockBytes);
      const pieceEnd = Math.min(end, (blockIndex + 1) * this.blockBytes);
      const block = new Uint8Array(pieceEnd - position);
      const failed = await this.#onMain(() => this.#main.read(block, position)).then(
        () => false,
        (error) => isIoError(error) ? true : Promise.reject(error),
      );
      if (failed && !this.#pending.has(blockIndex)) {
        this.#pending.add(blockIndex);
        this.#shared.publishPending(this.#pending);
        this.#onEvent({ type: "pending", blockIndex });
        this.#scheduleMetadata();
      }
      position = pieceEnd;
    }
  }

  async #writeRuns(data: Uint8Array, offsetBytes: number): Promise<Touched> {
    const touched: Touched = { main: false, spares: new Set(), failed: [] };
    await settleAll(
      this.#plan(offsetBytes, data.length, true).map(async (run) => {
        const piece = data.subarray(run.bufferOffset, run.bufferOffset + run.lengthBytes);
        if (run.kind === "slot") {
          if (await this.#writeSlot(piece, run)) touched.spares.add(run.spareIndex);
          // Its spare failed or is missing: the block moves to another spare.
          else touched.failed.push(...this.#splitByBlock(piece, offsetBytes + run.bufferOffset));
        } else if (run.kind === "pending") {
          touched.failed.push(this.#blockWrite(run.offsetBytes, piece));
        } else {
          touched.main = true;
          touched.failed.push(...await this.#writeMain(piece, run.offsetBytes));
        }
      }),
    );
    return touched;
  }

  /**
   * Writes a run to its slot on an active spare. A spare whose write fails
   * has failed (its blocks then move to the others).
   *
   * @returns Whether the run was written; false when its spare has failed or is missing.
   */
  async #writeSlot(piece: Uint8Array, run: Run): Promise<boolean> {
    const spare = this.#spareAt(run.spareIndex);
    if (spare.state !== "active") return false;
    try {
      await this.#onSpare(spare, () => spare.device.write(piece, run.offsetBytes));
      return true;
    } catch (error) {
      if (!isIoError(error) && !isDeviceGone(error)) throw error;
      this.#spares.noteError(spare.index);
      if (spare.state === "active") {
        this.#failSpare(spare, error.message);
        this.#scheduleMetadata();
      }
      return false;
    }
  }

  /** Writes a run to the main disk; on EIO, block by block, returning the blocks that failed. */
  async #writeMain(piece: Uint8Array, offsetBytes: number): Promise<BlockWrite[]> {
    try {
      await this.#onMain(() => this.#main.write(piece, offsetBytes));
      return [];
    } catch (error) {
      if (!isIoError(error)) throw error;
    }
    this.counters.writeErrors++;
    const failed: BlockWrite[] = [];
    for (const block of this.#splitByBlock(piece, offsetBytes)) {
      const blockOffsetBytes = offsetBytes + (block.data.byteOffset - piece.byteOffset);
      await this.#onMain(() => this.#main.write(block.data, blockOffsetBytes)).catch(
        (error) => isIoError(error) ? failed.push(block) : Promise.reject(error),
      );
    }
    return failed;
  }

  async #zeroRuns(range: ByteRange, mayPunch: boolean): Promise<Touched> {
    const touched: Touched = { main: false, spares: new Set(), failed: [] };
    await settleAll(
      this.#plan(range.offsetBytes, range.lengthBytes, true).map(async (run) => {
        if (run.kind === "slot") {
          touched.spares.add(run.spareIndex);
          const spare = this.#spareAt(run.spareIndex);
          await this.#onSpare(spare, () => spare.device.writeZeroes(run, { mayPunch }));
          return;
        }
        const zeros = new Uint8Array(run.lengthBytes);
        if (run.kind === "pending") {
          touched.failed.push(this.#blockWrite(run.offsetBytes, zeros));
          return;
        }
        touched.main = true;
        try {
          await this.#onMain(() => this.#main.writeZeroes(run, { mayPunch }));
        } catch (error) {
          if (!isIoError(error)) throw error;
          touched.failed.push(...await this.#writeMain(zeros, run.offsetBytes));
        }
      }),
    );
    return touched;
  }

  #blockWrite(offsetBytes: number, data: Uint8Array): BlockWrite {
    const blockIndex = Math.floor(offsetBytes / this.blockBytes);
    const startInBlock = offsetBytes - blockIndex * this.blockBytes;
    assert(startInBlock + data.length <= this.blockBytes, "a block write stays in its block");
    return { blockIndex, startInBlock, data };
  }

  #splitByBlock(piece: Uint8Array, offsetBytes: number): BlockWrite[] {
    const blocks: BlockWrite[] = [];
    const end = offsetBytes + piece.length;
    for (let position = offsetBytes; position < end;) {
      const pieceEnd = Math.min(
        end,
        (Math.floor(position / this.blockBytes) + 1) * this.blockBytes,
      );
      blocks.push(
        this.#blockWrite(position, piece.subarray(position - offsetBytes, pieceEnd - offsetBytes)),
      );
      position = pieceEnd;
    }
    return blocks;
  }

  async #flushTouched(touched: Touched): Promise<void> {
    const flushes = [...touched.spares].map((index) => {
      const spare = this.#spares.get(index);
      return this.#onSpare(spare, () => spare.device.flush());
    });
    if (touched.main) flushes.push(this.#onMain(() => this.#main.flush()));
    await settleAll(flushes);
  }

  /**
   * Moves every block off the spares that failed but can still be read, to
   * slots on the active ones: each block read from its old slot, written to
   * a new one, read back and compared, then logged as moved on every active
   * spare (`SpareStore.appendRemaps`, `movedFrom`). It runs through the group
   * commit, under the exclusive gate, so a client write to the block either
   * lands before (and is part of the copy) or after (and goes to the new
   * slot): a client's write always wins. Blocks whose old slot cannot be read
   * stay where they are (reads EIO); a full-block write moves them.
   * Started on its own when a spare fails; safe to call again.
   *
   * @returns How many blocks moved, and how many could not.
   */
  async evacuate(): Promise<{ moved: number; failed: number }> {
    const failedSpares = new Set(
      this.#spares.members.filter((spare) =>
        (spare.state === "failed" || spare.state === "draining") && spare.store
      ).map((spare) => spare.index),
    );
    const blocks: number[] = [];
    this.#table.forEach((blockIndex, location) => {
      if (failedSpares.has(location.spareIndex)) blocks.push(blockIndex);
    });
    if (blocks.length === 0 || this.#closing) return { moved: 0, failed: 0 };
    const results = await Promise.allSettled(
      this.#enqueue(blocks.map((blockIndex) => ({
        blockIndex,
        startInBlock: 0,
        data: new Uint8Array(0),
      }))),
    );
    const failed = results.filter((result) => result.status === "rejected").length;
    return { moved: results.length - failed, failed };
  }

  /** Queues block writes for the group commit; resolves when all are durable on spares. */
  #remap(blockWrites: BlockWrite[]): Promise<void> {
    return Promise.all(this.#enqueue(blockWrites)).then(() => {});
  }

  /** Queues block writes for the group commit, one promise each. */
  #enqueue(blockWrites: BlockWrite[]): Promise<void>[] {
    const done = blockWrites.map((blockWrite) =>
      new Promise<void>((resolve, reject) => this.#queue.push({ ...blockWrite, resolve, reject }))
    );
    this.#startDraining();
    return done;
  }

  /**
   * Starts the group commits unless they run. Started after the requests
   * already read from the sockets have run, so the failures of one burst
   * share one group commit instead of one each; started again when requests
   * were queued between the last batch and the end of the run.
   */
  #startDraining(): void {
    this.#draining ??= new Promise((resolve) => setImmediate(resolve))
      .then(() => this.#drainQueue())
      .finally(() => {
        this.#draining = undefined;
        if (this.#queue.length > 0) this.#startDraining();
      });
  }

  async #drainQueue(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, REMAP_BATCH_MAX);
      // Only the scanner waits on a batch of relocations alone.
      const lane = batch.every((request) => request.relocation) ? "background" : "client";
      await this.#gate.exclusive(async () => {
        await this.#shared.close();
        try {
          await this.#serializeMetadata(lane, () => this.#commitBatch(batch));
        } catch (error) {
          // A disk that vanished mid-commit fails what is left of the batch;
          // requests already answered ignore the second answer.
          if (!isDeviceGone(error)) throw error;
          batch.forEach((request) => request.reject(error));
        } finally {
          this.#shared.open();
        }
      });
    }
  }

  /** Serialises every change to the spares' metadata, client remaps first. */
  #serializeMetadata<T>(lane: MetadataLane, work: () => Promise<T>): Promise<T> {
    return this.#metadataQueue.run(lane, work);
  }

  /** One group commit: compose blocks, write slots, flush, log, flush, then resolve. */
  async #commitBatch(batch: RemapRequest[]): Promise<void> {
    this.counters.remapBatches++;
    const byBlock = new Map<number, RemapRequest[]>();
    for (const request of batch) {
      const list = byBlock.get(request.blockIndex);
      if (list) list.push(request);
      else byBlock.set(request.blockIndex, [request]);
    }
    const images = new Map<number, Uint8Array>();
    const moves = new Map<number, SlotLocation>();
    const relocated = new Set<number>();
    for (const [blockIndex, requests] of byBlock) {
      const location = this.#table.lookup(blockIndex);
      if (location && this.#spareAt(location.spareIndex).state === "active") {
        // A relocation of a block a client write remapped meanwhile, or a move
        // (evacuation, migration) of a block that moved already, has nothing
        // left to do: only requests with data of their own are written.
        const writes = requests.filter((request) => request.data.length > 0);
        await this.#writeIntoSlot(blockIndex, writes);
        requests.filter((request) => request.data.length === 0).forEach((request) =>
          request.resolve()
        );
        byBlock.delete(blockIndex);
        continue;
      }
      // Not remapped yet, or on a spare that failed: a new slot, composed
      // over what the main disk or the old slot holds.
      const image = await this.#composeBlock(blockIndex, requests, location);
      if (!image) byBlock.delete(blockIndex);
      else {
        images.set(blockIndex, image);
        if (location) moves.set(blockIndex, location);
        if (requests.some((request) => request.relocation)) relocated.add(blockIndex);
      }
    }
    const failures = await this.#placeOnSpares(images, { moves, relocated });
    for (const [blockIndex, requests] of byBlock) {
      const failure = failures.get(blockIndex);
      for (const request of requests) failure ? request.reject(failure) : request.resolve();
    }
    if (this.#metadataDirty) await this.#writeSetupState();
  }

  /** A write that raced with the remap of its block: the slot exists now. */
  async #writeIntoSlot(blockIndex: number, requests: RemapRequest[]): Promise<void> {
    const location = this.#table.lookup(blockIndex)!;
    const spare = this.#spareAt(location.spareIndex);
    const slotStart = slotOffsetBytes(spare.layout, location.slotIndex);
    try {
      for (const request of requests) {
        const offsetBytes = slotStart + request.startInBlock;
        await this.#onSpare(spare, () => spare.device.write(request.data, offsetBytes));
      }
      await this.#onSpare(spare, () => spare.device.flush());
      requests.forEach((request) => request.resolve());
    } catch (error) {
      requests.forEach((request) => request.reject(error));
    }
  }

  /**
   * The full new contents of a block: the writes laid over what the main disk
   * holds for the bytes they do not cover, or, for a block moving off a failed
   * spare, what its old slot holds. Undefined (and the writes rejected with
   * EIO) when those bytes cannot be read: inventing them is not allowed.
   */
  async #composeBlock(
    blockIndex: number,
    requests: RemapRequest[],
    movingFrom?: SlotLocation,
  ): Promise<Uint8Array | undefined> {
    if (movingFrom) return await this.#composeMovingBlock(blockIndex, requests, movingFrom);
    const blockStart = blockIndex * this.blockBytes;
    const blockLength = Math.min(this.blockBytes, this.sizeBytes - blockStart);
    const image = new Uint8Array(this.blockBytes);
    const covered = new Uint8Array(blockLength / SECTOR_BYTES);
    for (const request of requests) {
      covered.fill(
        1,
        request.startInBlock / SECTOR_BYTES,
        (request.startInBlock + request.data.length) / SECTOR_BYTES,
      );
    }
    try {
      for (let sector = 0; sector < covered.length;) {
        if (covered[sector]) {
          sector++;
          continue;
        }
        let runEnd = sector;
        while (runEnd < covered.length && !covered[runEnd]) runEnd++;
        const target = image.subarray(sector * SECTOR_BYTES, runEnd * SECTOR_BYTES);
        await this.#readMain(target, blockStart + sector * SECTOR_BYTES);
        sector = runEnd;
      }
    } catch (error) {
      if (!isIoError(error)) throw error;
      const failure = new DeviceIoError("read the rest of a block being remapped on", {
        device: this.#main.name,
        offsetBytes: blockStart,
        lengthBytes: blockLength,
        code: "EIO",
        cause: error,
      });
      if (!this.#pending.has(blockIndex)) {
        this.#pending.add(blockIndex);
        this.#shared.publishPending(this.#pending);
        this.#onEvent({ type: "pending", blockIndex });
        this.#metadataDirty = this.#setupStateChanged = true;
      }
      this.#onEvent({ type: "remap-failed", blockIndex, reason: failure.message });
      requests.forEach((request) => request.reject(failure));
      return undefined;
    }
    for (const request of requests) image.set(request.data, request.startInBlock);
    return image;
  }

  /** {@link composeBlock} for a block whose slot is on a spare that failed or is missing. */
  async #composeMovingBlock(
    blockIndex: number,
    requests: RemapRequest[],
    from: SlotLocation,
  ): Promise<Uint8Array | undefined> {
    const image = new Uint8Array(this.blockBytes);
    const covered = new Uint8Array(this.blockBytes / SECTOR_BYTES);
    for (const request of requests) {
      covered.fill(
        1,
        request.startInBlock / SECTOR_BYTES,
        (request.startInBlock + request.data.length) / SECTOR_BYTES,
      );
    }
    if (!covered.every((sector) => sector === 1)) {
      const spare = this.#spareAt(from.spareIndex);
      const slotStart = slotOffsetBytes(spare.layout, from.slotIndex);
      try {
        await spare.device.read(image, slotStart);
      } catch (error) {
        if (!isIoError(error) && !isDeviceGone(error)) throw error;
        const failure = new DeviceIoError(
          `move block ${blockIndex} off its failed spare: the rest of the block cannot be read from`,
          {
            device: spare.device.name,
            offsetBytes: slotStart,
            lengthBytes: this.blockBytes,
            code: "EIO",
            cause: error,
          },
        );
        this.#onEvent({ type: "remap-failed", blockIndex, reason: failure.message });
        requests.forEach((request) => request.reject(failure));
        return undefined;
      }
    }
    for (const request of requests) image.set(request.data, request.startInBlock);
    return image;
  }

  /**
   * Puts block images in new slots on the spares the spare set grants, until
   * every block has a slot or no spare can take one. Returns the blocks that
   * found no place, with the error for their requests.
   */
  async #placeOnSpares(
    images: Map<number, Uint8Array>,
    copied: { moves: ReadonlyMap<number, SlotLocation>; relocated: ReadonlySet<number> },
  ): Promise<Map<number, Error>> {
    let remaining = [...images.keys()];
    while (remaining.length > 0) {
      const grant = this.#spares.chooseSlots({ blockCount: remaining.length });
      if (!grant) break;
      const { spare, firstSlotIndex: firstSlot } = grant;
      const layout = spare.layout;
      const taking = remaining.slice(0, grant.slotCount);
      try {
        await settleAll(
          taking.map((blockIndex, i) =>
            spare.device.write(images.get(blockIndex)!, slotOffsetBytes(layout, firstSlot + i))
          ),
        );
        await spare.device.flush();
        await this.#checkCopies({ spare, firstSlot, taking, images, ...copied });
      } catch (error) {
        if (!isIoError(error) && !isDeviceGone(error)) throw error;
        this.#failSpare(spare, error.message);
        continue;
      }
      const movedFrom = taking.map((blockIndex) => copied.moves.get(blockIndex));
      if (!await this.#logOnEverySpare(spare.index, taking, { firstSlot, movedFrom })) continue;
      taking.forEach((blockIndex, i) => {
        const location = { spareIndex: spare.index, slotIndex: firstSlot + i };
        if (copied.moves.has(blockIndex)) this.#table.move(blockIndex, location);
        else this.#table.insert(blockIndex, location);
        this.#slotsUsed[spare.index]!++;
        if (this.#pending.delete(blockIndex)) {
          this.#shared.publishPending(this.#pending);
          // The log proves the block remapped (an open drops it from the
          // pending list), so this waits for a background write.
          this.#scheduleMetadata({ background: true });
        }
        this.counters.remapsCreated++;
        this.#onEvent({ type: "remap", blockIndex, ...location });
      });
      remaining = remaining.slice(taking.length);
    }
    if (remaining.length === 0) return new Map();
    const reason = "no spare has a free slot that can be written";
    this.#degrade(reason);
    const failures = new Map<number, Error>();
    for (const blockIndex of remaining) {
      this.#onEvent({ type: "remap-failed", blockIndex, reason });
      failures.set(
        blockIndex,
        new DeviceIoError(
          `remap a failed block of setup "${this.name}": ${reason}; add a spare to`,
          {
            device: this.name,
            offsetBytes: blockIndex * this.blockBytes,
            lengthBytes: this.blockBytes,
            code: "EIO",
          },
        ),
      );
    }
    return failures;
  }

  /**
   * Logs that slots of spare `ownerIndex` from `firstSlot` hold `blocks` on
   * every working spare at once (their data is durable on the owner), so each
   * knows where every block lives (format version 2). A spare whose log write
   * fails has failed. The remap is made once any spare logged it: the data is
   * durable on the owner and a log says so, and a later open merges the views
   * (`setup_tables.ts`). Only when no spare logged it does it go elsewhere, so
   * a block is never logged in two places.
   *
   * @returns Whether the remap was made.
   */
  async #logOnEverySpare(
    ownerIndex: number,
    blocks: readonly number[],
    where: { firstSlot: number; movedFrom: readonly (SlotLocation | undefined)[] },
  ): Promise<boolean> {
    const { firstSlot, movedFrom } = where;
    const loggers = this.#spares.working;
    const results = await Promise.allSettled(
      loggers.map((logger) => logger.store.appendRemaps(blocks, ownerIndex, { movedFrom })),
    );
    let made = false;
    results.forEach((result, i) => {
      const logger = loggers[i]!;
      if (result.status === "fulfilled") {
        assert(result.value === firstSlot, "every spare logs the slots where the data went");
        made = true;
        return;
      }
      const error = result.reason;
      if (!isIoError(error) && !isDeviceGone(error)) throw error;
      if (logger.state === "active" || logger.state === "draining") {
        this.#failSpare(logger, (error as Error).message);
      }
    });
    return made;
  }

  /**
   * Reads back the new copies of blocks that move off a failed spare, and of
   * blocks the scanner relocates before they fail, and compares them with
   * what was written, before any log points at them: both exist to keep data
   * safe, so the copy is proven first.
   *
   * @throws {DeviceIoError} EIO when a copy differs: the spare is not to be trusted.
   */
  async #checkCopies(placed: {
    spare: SpareMember;
    firstSlot: number;
    taking: readonly number[];
    images: ReadonlyMap<number, Uint8Array>;
    moves: ReadonlyMap<number, SlotLocation>;
    relocated: ReadonlySet<number>;
  }): Promise<void> {
    const { spare, firstSlot } = placed;
    for (const [i, blockIndex] of placed.taking.entries()) {
      if (!placed.moves.has(blockIndex) && !placed.relocated.has(blockIndex)) continue;
      const offsetBytes = slotOffsetBytes(spare.layout, firstSlot + i);
      const copy = new Uint8Array(this.blockBytes);
      await spare.device.read(copy, offsetBytes);
      const image = placed.images.get(blockIndex)!;
      if (!bytesEqual(copy, image)) {
        throw new DeviceIoError("read back the new copy of a block from", {
          device: spare.device.name,
          offsetBytes,
          lengthBytes: this.blockBytes,
          code: "EIO",
          cause: `block ${blockIndex} reads back different from what was written`,
        });
      }
    }
  }

  /**
   * A failed spare degrades the setup, as a failed member degrades an md
   * array: the blocks in its slots are unreadable, and it takes no new ones.
   */
  #failSpare(spare: SpareMember, reason: string): void {
    this.#spares.markFailed(spare.index);
    this.#metadataDirty = this.#setupStateChanged = true;
    this.#onEvent({ type: "spare-failed", spareIndex: spare.index, reason });
    this.#degrade(`spare ${spare.index} failed`);
    // In the background: the commit that found the failure is still running.
    this.#evacuating = (this.#evacuating ?? Promise.resolve()).then(() =>
      this.#closing ? undefined : this.evacuate().then(() => {})
    ).catch(ignoreIoError);
  }

  #degrade(reason: string): void {
    if (this.#degraded) return;
    this.#degraded = true;
    this.#metadataDirty = this.#setupStateChanged = true;
    this.#onEvent({ type: "degraded", reason });
  }

  /**
   * Writes the setup state after the metadata delay, in the background lane.
   * With `background`, the change is left out of client commits until then.
   */
  #scheduleMetadata(options: { background: boolean } = { background: false }): void {
    if (options.background) this.#backgroundDirty = true;
    else this.#metadataDirty = true;
    this.#setupStateChanged = true;
    if (this.#metadataTimer !== undefined || this.#closed) return;
    this.#metadataTimer = setTimeout(() => {
      this.#metadataTimer = undefined;
      this.#serializeMetadata("background", () => this.#writeSetupState()).catch(ignoreIoError);
    }, this.#metadataDelayMs);
  }

  /** Writes pending list, spare states and degraded flag to every active spare. */
  async #writeSetupState(): Promise<void> {
    if (!this.#metadataDirty && !this.#backgroundDirty) return;
    this.#metadataDirty = this.#backgroundDirty = false;
    const setupStateChanged = this.#setupStateChanged;
    this.#setupStateChanged = false;
    const pending = this.pendingBlocks.slice(0, PENDING_MAX);
    const generation = this.#nextGeneration();
    for (const spare of this.#spares.working) {
      try {
        await spare.store.writeMetadata((payload) => {
          payload.setup.generation = generation;
          payload.setup.state = this.#degraded ? "degraded" : "clean";
          payload.setup.serving = this.#serving;
          if (this.#allocationPolicy !== "custom") {
            payload.setup.allocation = this.#allocationPolicy;
          }
          payload.pending = pending;
          if (this.#scanRecord !== undefined) payload.scan = structuredClone(this.#scanRecord);
          for (const member of this.#spares.members) {
            payload.spares[member.index]!.state = member.state;
          }
        });
      } catch (error) {
        if (!isIoError(error) && !isDeviceGone(error)) throw error;
        this.#failSpare(spare, error.message);
      }
    }
    if (setupStateChanged) this.#onSetupWritten();
  }
}

/** What a write touched, so FUA flushes only those devices. */
interface Touched {
  main: boolean;
  spares: Set<number>;
  failed: BlockWrite[];
}

function isIoError(error: unknown): error is DeviceIoError {
  return error instanceof DeviceIoError && error.code === "EIO";
}

function ignoreIoError(error: unknown): void {
  if (!isIoError(error)) throw error;
}

/**
 * Waits for every promise, then throws the first rejection. Unlike
 * `Promise.all`, a request never ends while a disk I/O of it is still in
 * flight: the I/O would outlive the gate it ran under, and a late read would
 * fill a buffer its caller has already reused.
 */
async function settleAll(promises: readonly Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failure = results.find((result) => result.status === "rejected");
  if (failure) throw failure.reason;
}

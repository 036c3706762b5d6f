/**
 * What the simulations in this folder share: the per-sector model of what a
 * read may return, sector contents that show torn or foreign data, which
 * failures the fault layer allows, the batches of concurrent requests and the
 * seeds to run.
 *
 * @module
 */

import { SECTOR_BYTES } from "../../mod/constants.ts";
import type { FaultyDevice } from "../../mod/fault/faulty_device.ts";
import type { RemapDevice } from "../../mod/remap/remap_device.ts";

/** What each sector may hold: now, and after a crash. */
export class Model {
  current: Set<number>[];
  afterCrash: Set<number>[];

  constructor(sectorCount: number) {
    this.current = Array.from({ length: sectorCount }, () => new Set([0]));
    this.afterCrash = Array.from({ length: sectorCount }, () => new Set([0]));
  }

  wrote(sector: number, value: number, outcome: "acked" | "fua" | "failed"): void {
    if (outcome === "failed") {
      this.current[sector]!.add(value);
      this.afterCrash[sector]!.add(value);
    } else {
      this.current[sector] = new Set([value]);
      if (outcome === "fua") this.afterCrash[sector] = new Set([value]);
      else this.afterCrash[sector]!.add(value);
    }
  }

  flushed(): void {
    this.afterCrash = this.current.map((values) => new Set(values));
  }

  crashed(): void {
    this.current = this.afterCrash.map((values) => new Set(values));
  }

  observed(sector: number, value: number): void {
    this.current[sector] = new Set([value]);
    // What is on the media after a read is what a crash keeps, unless unflushed.
    if (this.afterCrash[sector]!.size === 1) this.afterCrash[sector] = new Set([value]);
  }
}

/** A sector's contents: its value stamped in every 4 bytes, so torn or foreign data shows. */
export function sectorBytes(value: number): Uint8Array {
  const bytes = new Uint8Array(SECTOR_BYTES);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < SECTOR_BYTES; i += 4) view.setUint32(i, value, true);
  return bytes;
}

/** The value stamped in sector `sector` of `bytes`, or -1 when its words disagree. */
export function valueOf(bytes: Uint8Array, sector: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset + sector * SECTOR_BYTES, SECTOR_BYTES);
  const value = view.getUint32(0, true);
  for (let i = 4; i < SECTOR_BYTES; i += 4) {
    if (view.getUint32(i, true) !== value) return -1;
  }
  return value;
}

/** The engine and the fault layer under it: what decides which failures are allowed. */
export interface FaultView {
  engine: RemapDevice;
  faulty: FaultyDevice;
}

/**
 * Whether a read may fail: it touches a sector that fails reads and is not
 * remapped, or a block in a slot of a spare that failed or is missing.
 */
export function readFailureAllowed(
  world: FaultView,
  range: { firstSector: number; sectorCount: number },
): boolean {
  const { firstSector, sectorCount } = range;
  for (let sector = firstSector; sector < firstSector + sectorCount; sector++) {
    const blockIndex = Math.floor(sector * SECTOR_BYTES / world.engine.blockBytes);
    const location = world.engine.lookup(blockIndex);
    const remapped = location !== undefined;
    // A failed or missing spare's slots may be unreadable; a draining one's are read as before.
    const state = location && world.engine.spares[location.spareIndex]!.state;
    if (state === "failed" || state === "missing") return true;
    const failure = world.faulty.failureOf(sector);
    if (!remapped && (failure === "read" || failure === "both")) return true;
  }
  return false;
}

/**
 * Whether a write may fail: the setup is degraded, or a partial-block remap
 * cannot read the rest of its block.
 */
export function writeFailureAllowed(
  world: FaultView,
  range: { firstSector: number; sectorCount: number },
): boolean {
  if (world.engine.degraded) return true;
  const blockBytes = world.engine.blockBytes;
  const { firstSector, sectorCount } = range;
  const firstBlock = Math.floor(firstSector * SECTOR_BYTES / blockBytes);
  const lastBlock = Math.floor(((firstSector + sectorCount) * SECTOR_BYTES - 1) / blockBytes);
  const perBlock = blockBytes / SECTOR_BYTES;
  return readFailureAllowed(world, {
    firstSector: firstBlock * perBlock,
    sectorCount: (lastBlock - firstBlock + 1) * perBlock,
  });
}

/** One client request of a batch: a write or a read of whole sectors. */
export interface ClientRequest {
  kind: "write" | "read";
  firstSector: number;
  sectorCount: number;
  fua: boolean;
}

/** Options of {@link planBatch}. */
export interface PlanBatchOptions {
  /** Sectors of the disk. */
  sectorCount: number;
  /** Most requests in the batch. */
  batchMax: number;
}

/** Most sectors of one planned request. */
const REQUEST_SECTORS_MAX = 16;

/**
 * Up to `batchMax` reads and writes (some FUA) on distinct sectors, so their
 * effects do not depend on the order the disks complete them in. Requests of
 * one batch may share a block: a remap's read-modify-write of a block must not
 * bring back an older copy of a sector that another request writes.
 */
export function planBatch(random: () => number, options: PlanBatchOptions): ClientRequest[] {
  const pick = (limit: number) => Math.floor(random() * limit);
  const usedSectors = new Set<number>();
  const batch: ClientRequest[] = [];
  const size = 1 + pick(options.batchMax);
  while (batch.length < size) {
    const firstSector = pick(options.sectorCount - REQUEST_SECTORS_MAX);
    const sectors = Array.from(
      { length: 1 + pick(REQUEST_SECTORS_MAX) },
      (_, i) => firstSector + i,
    );
    if (sectors.some((sector) => usedSectors.has(sector))) continue;
    sectors.forEach((sector) => usedSectors.add(sector));
    const kind = random() < 0.55 ? "write" : "read";
    const fua = kind === "write" && random() < 0.3;
    batch.push({ kind, firstSector, sectorCount: sectors.length, fua });
  }
  return batch;
}

/** The seeds to run: `DMREMAP_SEED` alone when set, else 1..`count`. */
export function seedsToRun(count: number): number[] {
  const chosen = Deno.env.get("DMREMAP_SEED");
  if (chosen === undefined) return Array.from({ length: count }, (_, i) => i + 1);
  const seed = Number(chosen);
  if (!Number.isSafeInteger(seed)) throw new Error(`DMREMAP_SEED="${chosen}" is not an integer`);
  return [seed];
}

/**
 * Deterministic simulation of the remap engine under storage faults and
 * simulated time.
 *
 * Goal: no acknowledged write is ever lost and no read ever returns data that
 * was never written, through failing sectors, full spares, power cuts and
 * disks that complete requests out of order.
 * Method (after TigerBeetle's VOPR): a seeded PRNG drives batches of up to
 * {@link BATCH_MAX} concurrent writes (some FUA) and reads on distinct sectors,
 * flushes, new bad sectors on the main disk, a spare that vanishes at a
 * random point (its blocks then read EIO, a write moves them, and after a
 * power cut the setup is served without it), spares added while serving
 * (`spare add`) and removed (`spare remove`: its blocks migrate in the
 * background while the requests go on, across power cuts, and a restart
 * resumes it), and crashes that drop every
 * unflushed write (`MemoryDevice.crash()`), against a model that keeps, per
 * sector, the values a read may return now and the values a crash may leave.
 * Every disk is a {@link TimedDisk}: requests complete after random virtual
 * delays, in random order, and no request may overlap a write in flight.
 * A failure prints the seed; `DMREMAP_SEED=N` runs that seed alone, and the
 * seed and commit replay it exactly.
 */

import assert from "node:assert/strict";
import { MemoryDevice } from "../../mod/device/memory_device.ts";
import { FaultyDevice } from "../../mod/fault/faulty_device.ts";
import { seededRandom } from "../../mod/fault/fault_model.ts";
import { createSetup } from "../../mod/assembly/create.ts";
import { assembleSetup, openSpares } from "../../mod/assembly/assemble.ts";
import type { RemapDevice } from "../../mod/remap/remap_device.ts";
import { DeviceIoError, RefusedError, UsageError } from "../../mod/errors.ts";
import { checkJoiningSpare } from "../../mod/assembly/add_spare.ts";
import { SpareStore } from "../../mod/metadata/spare_store.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import { SECTOR_BYTES } from "../../mod/constants.ts";
import { memoryIdentity } from "../remap/harness.ts";
import { DiskClock, TimedDisk } from "./timed_disk.ts";
import {
  type ClientRequest,
  Model,
  planBatch,
  readFailureAllowed,
  sectorBytes,
  seedsToRun,
  valueOf,
  writeFailureAllowed,
} from "./_model.ts";

const BLOCK_BYTES = 4096;
const MAIN_BYTES = 512 * 1024;
const SECTORS = MAIN_BYTES / SECTOR_BYTES;
const SPARE_SLOTS = 40;
const OPERATIONS = 400;
const SEEDS = 12;
/** Most client requests in flight at once. */
const BATCH_MAX = 8;
/** Spares a setup grows to at most by the simulation's adds. */
const SPARES_GROWN_MAX = 4;

interface World {
  clock: DiskClock;
  main: MemoryDevice;
  spares: MemoryDevice[];
  /** Spares that vanished: they stay gone across power cuts. */
  removed: Set<number>;
  /** The engine's view of each spare, to remove it. */
  faultySpares: FaultyDevice[];
  faulty: FaultyDevice;
  engine: RemapDevice;
}

/** Starts the engine over timed disks: the fault layer sits above the main disk's timing. */
async function assemble(
  clock: DiskClock,
  main: MemoryDevice,
  spares: { devices: MemoryDevice[]; removed: Set<number> },
  faulty: FaultyDevice,
): Promise<{ engine: RemapDevice; faultySpares: FaultyDevice[] }> {
  const faultySpares = spares.devices.map((spare) =>
    new FaultyDevice(new TimedDisk(spare, clock), { blockBytes: SECTOR_BYTES })
  );
  // A spare that left the setup (its metadata erased) is not given, as discovery would not find it.
  const present = [];
  for (const [index, spare] of faultySpares.entries()) {
    if (spares.removed.has(index)) continue;
    const opens = SpareStore.open(spare, { repair: false }).then(() => true, () => false);
    if (await clock.settle(opens)) present.push(spare);
  }
  const engine = await clock.settle((async () =>
    await assembleSetup(
      { device: faulty, identity: memoryIdentity(main) },
      await openSpares(present, { allowMissing: true }),
      { readRetries: 0, metadataDelayMs: 0 },
    ))());
  return { engine, faultySpares };
}

/** Power cut: unflushed writes vanish, bad sectors stay bad, the engine restarts from the disks. */
async function crash(world: World): Promise<World> {
  world.clock.powerCut();
  const main = world.main.crash();
  const spares = world.spares.map((spare) => spare.crash());
  const faulty = new FaultyDevice(new TimedDisk(main, world.clock), { blockBytes: SECTOR_BYTES });
  for (const block of world.faulty.listBadBlocks()) {
    faulty.addBadBlocks([block], world.faulty.failureOf(block)!);
  }
  const assembled = await assemble(
    world.clock,
    main,
    { devices: spares, removed: world.removed },
    faulty,
  );
  return { ...world, main, spares, faulty, ...assembled };
}

/** Runs one request and checks it against the model; returns how to update the model. */
async function serveRequest(
  world: World,
  model: Model,
  request: ClientRequest,
  context: { where: string; nextValue: () => number },
): Promise<() => void> {
  const { firstSector, sectorCount, fua } = request;
  const where = `${context.where} ${request.kind} sectors ${firstSector}+${sectorCount}`;
  if (request.kind === "write") {
    const values = Array.from({ length: sectorCount }, context.nextValue);
    const data = new Uint8Array(sectorCount * SECTOR_BYTES);
    values.forEach((value, i) => data.set(sectorBytes(value), i * SECTOR_BYTES));
    const outcome = await world.engine.write(data, firstSector * SECTOR_BYTES, { fua }).then(
      (): "fua" | "acked" => fua ? "fua" : "acked",
      (error) => {
        if (!(error instanceof DeviceIoError)) throw error;
        assert.ok(
          writeFailureAllowed(world, { firstSector, sectorCount }),
          `${where}: write failed: ${error.message}`,
        );
        return "failed" as const;
      },
    );
    return () => values.forEach((value, i) => model.wrote(firstSector + i, value, outcome));
  }
  const buffer = new Uint8Array(sectorCount * SECTOR_BYTES);
  const ok = await world.engine.read(buffer, firstSector * SECTOR_BYTES).then(
    () => true,
    (error) => {
      if (!(error instanceof DeviceIoError)) throw error;
      assert.ok(
        readFailureAllowed(world, { firstSector, sectorCount }),
        `${where}: read failed: ${error.message}`,
      );
      return false;
    },
  );
  const values = ok ? Array.from({ length: sectorCount }, (_, i) => valueOf(buffer, i)) : [];
  values.forEach((value, i) => {
    const allowed = model.current[firstSector + i]!;
    assert.ok(
      allowed.has(value),
      `${where}: sector ${firstSector + i} read ${value}, may be ${[...allowed]}`,
    );
  });
  return () => values.forEach((value, i) => model.observed(firstSector + i, value));
}

interface SimulationResult {
  remaps: number;
  crashes: number;
  /** Spares that vanished. */
  removals: number;
  /** Spares added while serving. */
  additions: number;
  /** Spare removals asked for, and those seen completed. */
  drains: number;
  drained: number;
  inFlightMax: number;
  reordered: number;
}

async function simulate(seed: number): Promise<SimulationResult> {
  const random = seededRandom(seed);
  const pick = (limit: number) => Math.floor(random() * limit);
  // Timing draws from a stream of its own, so a change of workload keeps the same delays.
  const clock = new DiskClock(seededRandom(seed ^ 0x5eed));
  const main = new MemoryDevice("main", MAIN_BYTES);
  const spareBytes = minimumSpareBytes(BLOCK_BYTES) + (SPARE_SLOTS - 16) * BLOCK_BYTES;
  const spares = [new MemoryDevice("spare0", spareBytes), new MemoryDevice("spare1", spareBytes)];
  await createSetup({
    name: "sim",
    main: { device: main, identity: memoryIdentity(main) },
    spares: spares.map((device) => ({ device, path: device.name })),
    blockBytes: BLOCK_BYTES,
  });
  await Promise.all(spares.map((spare) => spare.flush()));
  const faulty = new FaultyDevice(new TimedDisk(main, clock), { blockBytes: SECTOR_BYTES });
  const removed = new Set<number>();
  let world: World = {
    clock,
    main,
    spares,
    removed,
    faulty,
    ...await assemble(clock, main, { devices: spares, removed }, faulty),
  };
  const model = new Model(SECTORS);
  let nextValue = 1;
  let crashes = 0;
  let removals = 0;
  let additions = 0;
  let drains = 0;
  let drained = 0;
  /** The completed migration counted last (spare and start). */
  let drainSeen: string | undefined;

  for (let step = 0; step < OPERATIONS; step++) {
    const roll = random();
    const where = `seed ${seed} step ${step}`;
    if (roll < 0.8) {
      const batch = planBatch(random, { sectorCount: SECTORS, batchMax: BATCH_MAX });
      const context = { where, nextValue: () => nextValue++ };
      const updates = await clock.settle(
        Promise.all(batch.map((request) => serveRequest(world, model, request, context))),
      );
      updates.forEach((update) => update());
    } else if (roll < 0.88) {
      // A flush that meets a vanished spare fails (what was unflushed on it is
      // lost; its blocks read EIO from then on): only then may a flush fail.
      const flushed = await clock.settle(world.engine.flush()).then(() => true, (error) => {
        assert.ok(world.removed.size > 0, `${where}: flush failed: ${error.message}`);
        return false;
      });
      if (flushed) model.flushed();
    } else if (roll < 0.93) {
      const failOn = (["write", "write", "both", "read"] as const)[pick(4)]!;
      world.faulty.setBad({
        offsetBytes: pick(SECTORS - 16) * SECTOR_BYTES,
        lengthBytes: SECTOR_BYTES * (1 + pick(3)),
      }, failOn);
    } else if (roll < 0.935) {
      // A spare vanishes (one at most, and never the last one left): the setup goes on without it.
      const spareIndex = pick(world.spares.length);
      const working = world.engine.spares.filter((spare) =>
        spare.state === "active" || spare.state === "draining"
      );
      if (
        removed.size === 0 && working.length >= 2 &&
        working.some((spare) => spare.index === spareIndex)
      ) {
        world.faultySpares[spareIndex]!.remove();
        removed.add(spareIndex);
        removals++;
      }
    } else if (roll < 0.95) {
      // A spare is added while serving (`spare add`).
      if (world.spares.length < SPARES_GROWN_MAX) {
        const memory = new MemoryDevice(`spare${world.spares.length}`, spareBytes);
        const device = new FaultyDevice(new TimedDisk(memory, clock), {
          blockBytes: SECTOR_BYTES,
        });
        // Given to every later assembly: one whose add was cut short is left out there.
        world.spares.push(memory);
        world.faultySpares.push(device);
        if (await clock.settle(addSpare(world.engine, device))) additions++;
      }
    } else if (roll < 0.965) {
      // A spare is removed while serving (`spare remove`): its blocks migrate in the background.
      const candidates = world.engine.spares.filter((spare) =>
        spare.state === "active" && !removed.has(spare.index)
      );
      if (candidates.length > 1) {
        const spareIndex = candidates[pick(candidates.length)]!.index;
        const started = await clock.settle(world.engine.removeSpare(spareIndex)).then(
          () => true,
          (error) => {
            if (error instanceof RefusedError) return false;
            throw error;
          },
        );
        if (started) drains++;
      }
    } else {
      world = await crash(world);
      model.crashed();
      crashes++;
    }
    const migration = world.engine.migration;
    if (migration?.state === "done") {
      const seen = `${migration.spareIndex}@${migration.startedMs}`;
      if (seen !== drainSeen) drained++;
      drainSeen = seen;
    }
  }
  // Final check of every readable sector against what a crash may leave.
  world = await crash(world);
  model.crashed();
  for (let sector = 0; sector < SECTORS; sector++) {
    const buffer = new Uint8Array(SECTOR_BYTES);
    const readable = await clock.settle(world.engine.read(buffer, sector * SECTOR_BYTES)).then(
      () => true,
      () => false,
    );
    if (!readable) {
      assert.ok(
        readFailureAllowed(world, { firstSector: sector, sectorCount: 1 }),
        `seed ${seed}: final read of sector ${sector} failed`,
      );
      continue;
    }
    const allowed = model.current[sector]!;
    assert.ok(
      allowed.has(valueOf(buffer, 0)),
      `seed ${seed}: sector ${sector} holds ${valueOf(buffer, 0)}, may be ${[...allowed]}`,
    );
  }
  assert.deepEqual(clock.overlaps, [], `seed ${seed}: requests overlapped a write in flight`);
  const remaps = world.engine.remapCount;
  await clock.settle(world.engine.close());
  return {
    remaps,
    crashes,
    removals,
    additions,
    drains,
    drained,
    inFlightMax: clock.inFlightMax,
    reordered: clock.reordered,
  };
}

/**
 * `spare add` as the service makes it, after its checks.
 *
 * @returns Whether the spare joined; false when the setup refused it (no room, full).
 */
async function addSpare(engine: RemapDevice, device: FaultyDevice): Promise<boolean> {
  try {
    const layout = await checkJoiningSpare({
      setupName: engine.name,
      blockBytes: BLOCK_BYTES,
      device,
      path: device.name,
      members: engine.spares.map((spare) => ({
        index: spare.index,
        state: spare.state,
        layout: spare.layout,
        slotsUsed: engine.slotsUsedOf(spare.index),
      })),
    });
    await engine.addSpare({ device, path: device.name, layout });
    return true;
  } catch (error) {
    if (error instanceof RefusedError || error instanceof UsageError) return false;
    // A spare that vanished fails the writes of the add: it is cut short.
    if (error instanceof DeviceIoError) return false;
    throw error;
  }
}

Deno.test("simulation: concurrent writes and reads, bad sectors, power cuts and out-of-order disks never lose an acknowledged write", async () => {
  const seeds = seedsToRun(SEEDS);
  const total: SimulationResult = {
    remaps: 0,
    crashes: 0,
    removals: 0,
    additions: 0,
    drains: 0,
    drained: 0,
    inFlightMax: 0,
    reordered: 0,
  };
  for (const seed of seeds) {
    const result = await simulate(seed).catch((error) => {
      console.error(`simulation failed with seed ${seed}: replay with DMREMAP_SEED=${seed}`);
      throw error;
    });
    total.remaps += result.remaps;
    total.crashes += result.crashes;
    total.removals += result.removals;
    total.additions += result.additions;
    total.drains += result.drains;
    total.drained += result.drained;
    total.inFlightMax = Math.max(total.inFlightMax, result.inFlightMax);
    total.reordered += result.reordered;
  }
  // The simulation must actually exercise remapping, recovery and concurrency to prove anything.
  assert.ok(
    total.remaps > seeds.length * 5,
    `only ${total.remaps} remaps over ${seeds.length} seeds`,
  );
  if (seeds.length === SEEDS) {
    assert.ok(total.crashes > SEEDS, `only ${total.crashes} crashes over ${SEEDS} seeds`);
  }
  assert.ok(total.inFlightMax >= BATCH_MAX, `at most ${total.inFlightMax} disk requests in flight`);
  assert.ok(total.reordered > 0, "no disk request ever completed before an earlier one");
  if (seeds.length === SEEDS) {
    assert.ok(total.removals > 0, "no spare ever vanished");
    assert.ok(total.additions > 0, "no spare was ever added");
    assert.ok(total.drained > 0, `no removal of a spare completed (${total.drains} asked for)`);
  }
  console.log(
    `${seeds.length} seeds × ${OPERATIONS} steps: ${total.remaps} remaps, ${
      total.crashes + seeds.length
    } crashes, ${total.removals} spares vanished, ${total.additions} added, ${total.drains} ` +
      `removals asked (${total.drained} seen complete), up to ${total.inFlightMax} disk requests in flight, ${total.reordered} ` +
      `completions out of order, all consistent`,
  );
});

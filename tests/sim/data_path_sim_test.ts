/**
 * Seeded simulation of a worker's data path over the remap engine,
 * under storage faults and simulated time.
 *
 * Goal: the data path a connection worker runs (`DataPath`) never answers a
 * request before its I/O completed, never returns stale or invented data,
 * never lets its disk I/O overlap a write in flight (its own or the
 * engine's), and leaves to the engine what it cannot serve, while blocks go
 * bad and get remapped under it.
 * Method (after TigerBeetle's VOPR and `src/testing/storage.zig`): one
 * thread plays both sides. A setup on files in /dev/shm runs the engine over
 * {@link TimedDisk}s, the main disk behind a `FaultyDevice` whose bad blocks
 * grow during the run; the data path gets the descriptors and the fault
 * layer's blocks to leave to it, as the service hands them to workers, and a
 * {@link SimulatedIoQueue} on the same virtual clock, whose I/O completes in
 * random order after random delays, runs on the descriptor only at
 * completion, and sometimes fails transiently on the main disk. The test
 * plays the engine's thread (forwards → `DataExecutor` → result messages; the
 * gate reopening → "gate-open") and drives the worker's turns. A seeded PRNG
 * plans batches of up to {@link BATCH_MAX} concurrent reads and writes (some
 * FUA) on distinct sectors and flushes, started over several turns, checked
 * against a per-sector model of the values a read may return; at the end
 * every sector is read through the engine and checked.
 * A failure prints the seed; `DMREMAP_SEED=N` runs that seed alone, with the
 * same workload, faults and delays (the engine's own timers may still shift
 * an interleaving, as in `remap_sim_test.ts`).
 */

import assert from "node:assert/strict";
import { alignedBytes } from "../../mod/aligned_bytes.ts";
import { assembleSetup, openSpares } from "../../mod/assembly/assemble.ts";
import { createSetup } from "../../mod/assembly/create.ts";
import { SECTOR_BYTES } from "../../mod/constants.ts";
import { DataExecutor } from "../../mod/datapath/data_executor.ts";
import { DataPath, MessageQueue, type PathRequest } from "../../mod/datapath/data_path.ts";
import { type DataError, NO_FLAGS } from "../../mod/datapath/data_request.ts";
import {
  COUNTERS,
  type FromWorker,
  MAILBOX,
  type SpareHandle,
  type ToWorker,
  type WorkerSetup,
} from "../../mod/datapath/messages.ts";
import type { ByteRange } from "../../mod/device/device.ts";
import { type FileDevice, openFileDevice } from "../../mod/device/file_device.ts";
import { FaultyDevice } from "../../mod/fault/faulty_device.ts";
import { seededRandom } from "../../mod/fault/fault_model.ts";
import { minimumSpareBytes } from "../../mod/metadata/spare_layout.ts";
import type { RemapDevice } from "../../mod/remap/remap_device.ts";
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
import { SimulatedIoQueue } from "./simulated_io_queue.ts";
import { DiskClock, TimedDisk } from "./timed_disk.ts";

const BLOCK_BYTES = 4096;
const MAIN_BYTES = 512 * 1024;
const SECTORS = MAIN_BYTES / SECTOR_BYTES;
/** Slots per spare: few, so the first spare fills and remaps move on to the second. */
const SPARE_SLOTS = 40;
const SPARE_COUNT = 2;
const STEPS = 500;
const SEEDS = 32;
/** Most client requests of one batch. */
const BATCH_MAX = 8;
/** Probability that a main-disk read or write of the data path fails once with EIO. */
const TRANSIENT_EIO_RATE = 0.05;
/** Disk completions a request of a batch may wait for before it starts. */
const START_DELAY_COMPLETIONS_MAX = 4;
/** Real time without a turn after which a batch counts as stalled (a lost request). */
const STALL_MS = 10_000;
/** A read buffer's contents before the read: a value no write stamps. */
const POISON = 0xffffffff;

/** A request as the simulated export hands it to the data path. */
interface SimRequest extends PathRequest {
  client: ClientRequest | undefined;
  /** A write's values, by sector. */
  values: number[];
  /** Disk completions of the batch before it starts. */
  startAfter: number;
  done: boolean;
  error: DataError | undefined;
  /** Whether the fault layer allowed it to fail, as of its answer. */
  failureAllowed: boolean;
}

/** The engine side of one simulated world. */
interface World {
  clock: DiskClock;
  engine: RemapDevice;
  faulty: FaultyDevice;
  dir: string;
}

/** A setup on files in /dev/shm; the engine runs over timed disks, the main one behind the fault layer. */
async function buildWorld(clock: DiskClock): Promise<World> {
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "dm-remap-sim-" });
  const spareBytes = minimumSpareBytes(BLOCK_BYTES) + SPARE_SLOTS * BLOCK_BYTES;
  const paths = [
    `${dir}/main.img`,
    ...Array.from({ length: SPARE_COUNT }, (_, i) => `${dir}/spare${i}.img`),
  ];
  for (const [i, path] of paths.entries()) {
    await Deno.writeFile(path, new Uint8Array(0));
    await Deno.truncate(path, i === 0 ? MAIN_BYTES : spareBytes);
  }
  const devices = await Promise.all(paths.map((path) => openFileDevice(path, { direct: false })));
  const [main, ...spares] = devices as [FileDevice, ...FileDevice[]];
  const identity = { path: main.name, kind: "file" as const, sizeBytes: main.sizeBytes };
  await createSetup({
    name: "sim",
    main: { device: main, identity },
    spares: spares.map((device) => ({ device, path: device.name })),
    blockBytes: BLOCK_BYTES,
  });
  const faulty = new FaultyDevice(new TimedDisk(main, clock), { blockBytes: SECTOR_BYTES });
  const timedSpares = spares.map((spare) => new TimedDisk(spare, clock));
  const engine = await clock.settle(
    (async () =>
      await assembleSetup({ device: faulty, identity }, await openSpares(timedSpares), {
        readRetries: 0,
        metadataDelayMs: 0,
      }))(),
  );
  return { clock, engine, faulty, dir };
}

/** What a worker gets, built as the service builds it (`dataPlaneFor`): descriptors, layouts, blocks left to the device. */
function workerSetupOf(world: World): { setup: WorkerSetup; diskNames: Map<number, string> } {
  const main = world.faulty.directAccess();
  assert.ok(main?.leftToDevice !== undefined, "the fault layer leaves its bad blocks to itself");
  const diskNames = new Map([[main.fd, world.faulty.name]]);
  const spares: SpareHandle[] = [];
  for (const spare of world.engine.spares) {
    const access = spare.device.directAccess?.();
    assert.ok(access !== undefined && access.leftToDevice === undefined, "spares offer access");
    spares[spare.index] = {
      index: spare.index,
      fd: access.fd,
      direct: access.direct,
      layout: spare.layout,
    };
    diskNames.set(access.fd, spare.device.name);
  }
  const setup: WorkerSetup = {
    connectionFd: -1,
    wakeFd: -1,
    mailbox: new Int32Array(new SharedArrayBuffer(MAILBOX.WORDS * 4)),
    counters: new Float64Array(new SharedArrayBuffer(COUNTERS.WORDS * 8)),
    transport: undefined,
    blockBytes: world.engine.blockBytes,
    main: { fd: main.fd, direct: main.direct },
    spares,
    state: world.engine.sharedState.buffers,
    leftToDevice: main.leftToDevice,
  };
  return { setup, diskNames };
}

/**
 * The engine's thread, played on this one: answers forwarded requests with
 * the executor over the engine and says when the gate reopens, posting to
 * the worker's mailbox as `DataPlane` does. Messages are copied, as
 * postMessage copies them between threads.
 */
class EngineThread {
  readonly #executor: DataExecutor;
  readonly #messages: MessageQueue;
  readonly #mailbox: Int32Array;
  readonly #stopListening: () => void;
  /** Requests forwarded so far. */
  forwarded = 0;
  /** Set when a message arrived since the last {@link takeNews}. */
  #news = false;
  /** A programmer error of the executor: the test fails with it. */
  failure: unknown = undefined;

  constructor(engine: RemapDevice, worker: { messages: MessageQueue; mailbox: Int32Array }) {
    this.#executor = new DataExecutor(engine);
    this.#messages = worker.messages;
    this.#mailbox = worker.mailbox;
    this.#stopListening = engine.sharedState.onOpen(() =>
      this.#deliver({ type: "gate-open", state: engine.sharedState.buffers })
    );
  }

  /** The worker's `post`. */
  post = (message: FromWorker): void => {
    if (message.type !== "forward") assert.fail(`a data path only forwards, not "${message.type}"`);
    for (const { id, request } of message.requests) {
      this.forwarded++;
      void this.#executor.execute({ ...request, data: request.data?.slice() }).then(
        (result) =>
          this.#deliver({
            type: "result",
            id,
            result: { error: result.error, data: result.data?.slice() },
          }),
        (error) => this.failure ??= error,
      );
    }
  };

  /** Whether messages arrived since the last call: the worker's wake eventfd. */
  takeNews(): boolean {
    const news = this.#news;
    this.#news = false;
    return news;
  }

  close(): void {
    this.#stopListening();
  }

  #deliver(message: ToWorker): void {
    this.#messages.push(message);
    Atomics.add(this.#mailbox, MAILBOX.POSTED, 1);
    this.#news = true;
  }
}

/** The data path's side of a world: the path, its queue, their clock and the engine's thread it talks to. */
interface SimWorker {
  clock: DiskClock;
  path: DataPath<SimRequest>;
  queue: SimulatedIoQueue<unknown>;
  engineThread: EngineThread;
}

function startWorker(world: World, seed: number): SimWorker {
  const { setup, diskNames } = workerSetupOf(world);
  const messages = new MessageQueue();
  const engineThread = new EngineThread(world.engine, { messages, mailbox: setup.mailbox });
  const queue = new SimulatedIoQueue<unknown>({
    clock: world.clock,
    diskNames,
    mainFd: setup.main.fd,
    transientEioRate: TRANSIENT_EIO_RATE,
    random: seededRandom(seed ^ 0xe10),
    mustForward: (kind, range) => mustForward(world, kind, range),
  });
  const path = new DataPath<SimRequest>({
    setup,
    messages,
    post: engineThread.post,
    onDone: (request, error) => {
      assert.ok(!request.done, "a request is answered once");
      request.done = true;
      request.error = error;
      if (error !== undefined && request.client !== undefined) {
        const range = request.client;
        request.failureAllowed = request.client.kind === "read"
          ? readFailureAllowed(world, range)
          : writeFailureAllowed(world, range);
      }
    },
    // Its completions carry the data path's own type; the queue never looks at them.
    openIoQueue: <T>() => queue as SimulatedIoQueue<T>,
  });
  return { clock: world.clock, path, queue, engineThread };
}

/**
 * Whether a main-disk request must go through the engine: the fault layer
 * fails it (the device must see it), or it writes a pending block (the
 * engine remaps it). The queue asks as the worker prepares the I/O, right
 * after its lookups, so the answer is what the worker saw.
 */
function mustForward(world: World, kind: "read" | "write", range: ByteRange): boolean {
  const firstSector = range.offsetBytes / SECTOR_BYTES;
  const endSector = firstSector + range.lengthBytes / SECTOR_BYTES;
  for (let sector = firstSector; sector < endSector; sector++) {
    const failure = world.faulty.failureOf(sector);
    if (failure === "both" || failure === kind) return true;
  }
  if (kind === "read") return false;
  const blockBytes = world.engine.blockBytes;
  const firstBlock = Math.floor(range.offsetBytes / blockBytes);
  const lastBlock = Math.floor((range.offsetBytes + range.lengthBytes - 1) / blockBytes);
  return world.engine.pendingBlocks.some((block) => block >= firstBlock && block <= lastBlock);
}

/** Turns the requests of a batch into the data path's form; flushes ride along. */
function pathRequestsOf(
  batch: ClientRequest[],
  options: { random: () => number; nextValue: () => number },
): SimRequest[] {
  const pick = (limit: number) => Math.floor(options.random() * limit);
  const requests = batch.map((client): SimRequest => {
    const lengthBytes = client.sectorCount * SECTOR_BYTES;
    const data = alignedBytes(lengthBytes);
    const values = client.kind === "write"
      ? Array.from({ length: client.sectorCount }, options.nextValue)
      : [];
    for (let i = 0; i < client.sectorCount; i++) {
      data.set(sectorBytes(client.kind === "write" ? values[i]! : POISON), i * SECTOR_BYTES);
    }
    return newSimRequest({
      op: client.kind,
      offsetBytes: client.firstSector * SECTOR_BYTES,
      lengthBytes,
      flags: { ...NO_FLAGS, fua: client.fua },
      data,
    }, { client, values, startAfter: pick(START_DELAY_COMPLETIONS_MAX + 1) });
  });
  if (options.random() < 0.2) {
    requests.push(newSimRequest(
      { op: "flush", offsetBytes: 0, lengthBytes: 0, flags: NO_FLAGS, data: undefined },
      { client: undefined, values: [], startAfter: pick(START_DELAY_COMPLETIONS_MAX + 1) },
    ));
  }
  // The first request starts at once; the others while the earlier ones' I/O completes.
  requests[0]!.startAfter = 0;
  return requests.sort((a, b) => a.startAfter - b.startAfter);
}

function newSimRequest(
  fields: Pick<PathRequest, "op" | "offsetBytes" | "lengthBytes" | "flags" | "data">,
  sim: Pick<SimRequest, "client" | "values" | "startAfter">,
): SimRequest {
  return {
    ...fields,
    ...sim,
    arriving: false,
    piecesLeft: 0,
    toEngine: false,
    gateEntries: 0,
    startedBytes: 0,
    done: false,
    error: undefined,
    failureAllowed: false,
  };
}

/**
 * Runs the worker's turns for one batch, as {@link DiskClock.settle}'s
 * worker: a turn runs when a worker would wake (disk I/O completed, the
 * engine posted, a retry is due) or when the next request's start is due.
 */
class BatchDriver {
  readonly #worker: SimWorker;
  readonly #requests: SimRequest[];
  readonly #unstarted: SimRequest[];
  /** Disk completions the worker reaped in this batch. */
  #completions = 0;
  #answered = 0;
  #lastProgressMs = Date.now();

  constructor(worker: SimWorker, requests: SimRequest[]) {
    this.#worker = worker;
    this.#requests = requests;
    this.#unstarted = [...requests];
  }

  get done(): boolean {
    return this.#requests.every((request) => request.done);
  }

  /** One turn of the worker if it would wake; false when it would sleep. */
  turn = async (): Promise<boolean> => {
    const { path, queue, engineThread } = this.#worker;
    if (engineThread.failure !== undefined) throw engineThread.failure;
    this.#checkProgress();
    const news = queue.completed > 0 || engineThread.takeNews() || path.retriesNow;
    if (!news && !this.#startDue()) return false;
    this.#completions += queue.completed;
    await path.beginTurn();
    while (this.#startDue()) path.start(this.#unstarted.shift()!);
    path.endTurn();
    return true;
  };

  /** The next request starts once enough I/O completed, or at once when the worker would sleep. */
  #startDue(): boolean {
    const { path } = this.#worker;
    const next = this.#unstarted[0];
    if (next === undefined) return false;
    return next.startAfter <= this.#completions || (path.diskInflight === 0 && !path.awaitsEngine);
  }

  /** Fails the batch when neither an answer nor a completion came for a long (real) time. */
  #checkProgress(): void {
    const answered = this.#requests.filter((request) => request.done).length;
    const progress = answered + this.#completions;
    if (progress !== this.#answered) {
      this.#answered = progress;
      this.#lastProgressMs = Date.now();
    } else if (Date.now() - this.#lastProgressMs > STALL_MS) {
      const waiting = this.#requests.filter((request) => !request.done).map(describe);
      assert.fail(`requests never answered: ${waiting.join(", ")}`);
    }
  }
}

/** Runs a batch to its last answer, the disks completing I/O whenever the worker would sleep. */
async function driveBatch(worker: SimWorker, requests: SimRequest[]): Promise<void> {
  const driver = new BatchDriver(worker, requests);
  let answered!: () => void;
  const allAnswered = new Promise<void>((resolve) => answered = resolve);
  await worker.clock.settle(allAnswered, {
    worker: async () => {
      const turned = await driver.turn();
      if (driver.done) answered();
      return turned;
    },
  });
}

function describe(request: SimRequest): string {
  return `${request.op} ${request.offsetBytes}+${request.lengthBytes}`;
}

/** Checks a batch's answers against the model; returns how to update the model. */
function checkBatch(model: Model, requests: SimRequest[], where: string): (() => void)[] {
  const updates: (() => void)[] = [];
  for (const request of requests) {
    const client = request.client;
    const what = `${where} ${describe(request)}`;
    if (client === undefined) {
      assert.equal(request.error, undefined, `${what}: flush failed`);
      continue;
    }
    if (request.error !== undefined) {
      assert.ok(request.failureAllowed, `${what}: failed: ${request.error.message}`);
    }
    const { firstSector, sectorCount } = client;
    if (client.kind === "write") {
      const outcome = request.error ? "failed" : client.fua ? "fua" : "acked";
      updates.push(() =>
        request.values.forEach((value, i) => model.wrote(firstSector + i, value, outcome))
      );
      continue;
    }
    if (request.error !== undefined) continue;
    const values = Array.from({ length: sectorCount }, (_, i) => valueOf(request.data!, i));
    values.forEach((value, i) => {
      const allowed = model.current[firstSector + i]!;
      assert.ok(
        allowed.has(value),
        `${what}: sector ${firstSector + i} read ${value}, may be ${[...allowed]}`,
      );
    });
    updates.push(() => values.forEach((value, i) => model.observed(firstSector + i, value)));
  }
  return updates;
}

interface SimulationResult {
  remaps: number;
  forwarded: number;
  transientFaults: number;
  inFlightMax: number;
  reordered: number;
}

async function simulate(seed: number): Promise<SimulationResult> {
  const random = seededRandom(seed);
  const pick = (limit: number) => Math.floor(random() * limit);
  // Timing draws from a stream of its own, so a change of workload keeps the same delays.
  const clock = new DiskClock(seededRandom(seed ^ 0x5eed));
  const world = await buildWorld(clock);
  try {
    const worker = startWorker(world, seed);
    const model = new Model(SECTORS);
    let nextValue = 1;
    for (let step = 0; step < STEPS; step++) {
      if (random() < 0.85) {
        const batch = planBatch(random, { sectorCount: SECTORS, batchMax: BATCH_MAX });
        const requests = pathRequestsOf(batch, { random, nextValue: () => nextValue++ });
        await driveBatch(worker, requests);
        checkBatch(model, requests, `seed ${seed} step ${step}`).forEach((update) => update());
      } else {
        const failOn = (["write", "write", "both", "read"] as const)[pick(4)]!;
        world.faulty.setBad({
          offsetBytes: pick(SECTORS - 16) * SECTOR_BYTES,
          lengthBytes: SECTOR_BYTES * (1 + pick(3)),
        }, failOn);
      }
    }
    worker.path.close();
    worker.engineThread.close();
    await checkEverySector(world, model, seed);
    assert.deepEqual(clock.overlaps, [], `seed ${seed}: I/O overlapped a write in flight`);
    assert.deepEqual(
      worker.queue.bypasses,
      [],
      `seed ${seed}: the data path did I/O only the engine may do`,
    );
    return {
      remaps: world.engine.remapCount,
      forwarded: worker.engineThread.forwarded,
      transientFaults: worker.queue.transientFaults,
      inFlightMax: worker.queue.inFlightMax,
      reordered: worker.queue.reordered,
    };
  } finally {
    await clock.settle(world.engine.close());
    await Deno.remove(world.dir, { recursive: true });
  }
}

/** Reads every sector through the engine: each holds a value the model allows, or is unreadable where allowed. */
async function checkEverySector(world: World, model: Model, seed: number): Promise<void> {
  for (let sector = 0; sector < SECTORS; sector++) {
    const buffer = new Uint8Array(SECTOR_BYTES);
    const range = { firstSector: sector, sectorCount: 1 };
    const readable = await world.clock.settle(world.engine.read(buffer, sector * SECTOR_BYTES))
      .then(() => true, () => false);
    if (!readable) {
      assert.ok(readFailureAllowed(world, range), `seed ${seed}: final read of ${sector} failed`);
      continue;
    }
    const allowed = model.current[sector]!;
    assert.ok(
      allowed.has(valueOf(buffer, 0)),
      `seed ${seed}: sector ${sector} holds ${valueOf(buffer, 0)}, may be ${[...allowed]}`,
    );
  }
}

Deno.test("simulation: a worker's data path over the engine, with out-of-order disks, transient errors and remaps, never answers early or returns stale data", async () => {
  const seeds = seedsToRun(SEEDS);
  const total: SimulationResult = {
    remaps: 0,
    forwarded: 0,
    transientFaults: 0,
    inFlightMax: 0,
    reordered: 0,
  };
  for (const seed of seeds) {
    const result = await simulate(seed).catch((error) => {
      console.error(
        `data path simulation failed with seed ${seed}: replay with DMREMAP_SEED=${seed}`,
      );
      throw error;
    });
    total.remaps += result.remaps;
    total.forwarded += result.forwarded;
    total.transientFaults += result.transientFaults;
    total.inFlightMax = Math.max(total.inFlightMax, result.inFlightMax);
    total.reordered += result.reordered;
  }
  // The run must exercise concurrency, reordering, forwarding and remaps to prove anything.
  assert.ok(total.inFlightMax > 1, `at most ${total.inFlightMax} data path I/Os in flight`);
  assert.ok(total.reordered > 0, "no data path I/O ever completed before an earlier one");
  assert.ok(total.forwarded > 0, "no request was forwarded to the engine");
  assert.ok(total.transientFaults > 0, "no transient fault was injected");
  assert.ok(total.remaps > 0, "no block was remapped");
  console.log(
    `${seeds.length} seeds × ${STEPS} steps: ${total.remaps} remaps, ${total.forwarded} ` +
      `requests forwarded, ${total.transientFaults} transient faults, up to ` +
      `${total.inFlightMax} data path I/Os in flight, ${total.reordered} completions out of ` +
      `order, all consistent`,
  );
});

/**
 * Test harness for the NBD layer: in-memory byte pipes, a minimal wire-level
 * NBD client, scriptable devices and a seeded PRNG.
 *
 * Goal: drive the handshake and transmission code exactly as a socket would,
 * but deterministically and without one. Method: two {@link BytePipe}s make a
 * duplex stream; the client helpers encode requests and decode replies with
 * their own code (not the server's encoders), so a shared encoding bug cannot
 * hide itself.
 *
 * @module
 */

import assert from "node:assert/strict";
import type {
  ByteRange,
  Device,
  WriteOptions,
  WriteZeroesOptions,
} from "../../../mod/device/device.ts";
import { MemoryDevice } from "../../../mod/device/memory_device.ts";
import {
  type ByteStream,
  ConnByteStream,
  StreamEndedError,
} from "../../../mod/export/nbd/byte_stream.ts";
import { concatBytes } from "../../../mod/export/nbd/protocol.ts";

// ---------------------------------------------------------------------------
// Byte pipes.

/** A one-way in-memory byte channel: `push` on one side, `readExact` on the other. */
export class BytePipe {
  #chunks: Uint8Array[] = [];
  #bufferedBytes = 0;
  #ended = false;
  #waiter: (() => void) | undefined;

  /** Appends a copy of `bytes`. Pushing after `end` is ignored (the reader is gone). */
  push(bytes: Uint8Array): void {
    if (this.#ended || bytes.length === 0) return;
    this.#chunks.push(bytes.slice());
    this.#bufferedBytes += bytes.length;
    this.#wake();
  }

  /** Marks the end of the stream: reads that cannot be satisfied fail with StreamEndedError. */
  end(): void {
    this.#ended = true;
    this.#wake();
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Bytes pushed and not yet read. */
  get bufferedBytes(): number {
    return this.#bufferedBytes;
  }

  async readExact(lengthBytes: number): Promise<Uint8Array> {
    while (this.#bufferedBytes < lengthBytes) {
      if (this.#ended) {
        const received = this.#bufferedBytes;
        this.#take(received);
        throw new StreamEndedError(lengthBytes, received);
      }
      await new Promise<void>((resolve) => this.#waiter = resolve);
    }
    return this.#take(lengthBytes);
  }

  #take(lengthBytes: number): Uint8Array {
    const out = new Uint8Array(lengthBytes);
    let filled = 0;
    while (filled < lengthBytes) {
      const chunk = this.#chunks[0]!;
      const count = Math.min(chunk.length, lengthBytes - filled);
      out.set(chunk.subarray(0, count), filled);
      filled += count;
      if (count === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(count);
    }
    this.#bufferedBytes -= lengthBytes;
    return out;
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }
}

/** What the wire helpers need from a client connection. */
export interface WireClient {
  /** Queues bytes to the server (in order). */
  write(bytes: Uint8Array): void;
  readExact(lengthBytes: number): Promise<Uint8Array>;
  /** Ends the client-to-server direction (the client hangs up). */
  end(): void;
}

/** The client's end of a duplex pipe. */
export interface PipeClient extends WireClient {
  /** The server-to-client pipe, to see what is left unread. */
  readonly toClient: BytePipe;
}

/** A duplex in-memory connection. */
export interface Duplex {
  /** Give this to the server code. */
  server: ByteStream;
  client: PipeClient;
  /** Every buffer the server wrote, in order (to check batching). */
  serverWrites: Uint8Array[];
  /** Ends the server-to-client direction, as closing the socket would. */
  closeServer(): void;
}

/** Makes a duplex in-memory connection. */
export function duplex(): Duplex {
  const toServer = new BytePipe();
  const toClient = new BytePipe();
  const serverWrites: Uint8Array[] = [];
  return {
    server: {
      readExact: (lengthBytes) => toServer.readExact(lengthBytes),
      write: (data) => {
        if (toClient.ended) return Promise.reject(new Deno.errors.BrokenPipe("client is gone"));
        serverWrites.push(data.slice());
        toClient.push(data);
        return Promise.resolve();
      },
    },
    client: {
      write: (bytes) => toServer.push(bytes),
      readExact: (lengthBytes) => toClient.readExact(lengthBytes),
      end: () => toServer.end(),
      toClient,
    },
    serverWrites,
    closeServer: () => toClient.end(),
  };
}

/**
 * A {@link WireClient} over a real socket. Writes are chained so they stay in
 * order; a failed write surfaces on the next read.
 */
export function socketClient(conn: Deno.Conn): WireClient & { closed: Promise<void> } {
  const stream = new ConnByteStream(conn);
  let writes = Promise.resolve();
  let writeError: unknown;
  return {
    write(bytes) {
      const copy = bytes.slice();
      writes = writes.then(() => stream.write(copy)).catch((error) => {
        writeError ??= error;
      });
    },
    async readExact(lengthBytes) {
      if (writeError !== undefined) throw writeError;
      return await stream.readExact(lengthBytes);
    },
    end() {
      void writes.then(() => conn.closeWrite().catch(() => {}));
    },
    get closed() {
      return writes;
    },
  };
}

// ---------------------------------------------------------------------------
// Wire-level client encoding (independent of mod/export/nbd/protocol.ts on purpose).

/** The greeting: NBDMAGIC, IHAVEOPT, handshake flags. */
export const GREETING_BYTES = 18;
/** NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES. */
export const CLIENT_FLAGS = 3;
export const NBD_OPT_GO = 7;
export const MAGIC_NBDMAGIC = 0x4e42444d41474943n;
export const MAGIC_IHAVEOPT = 0x49484156454f5054n;
export const MAGIC_OPTION_REPLY = 0x3e889045565a9n;
export const MAGIC_REQUEST = 0x25609513;
export const MAGIC_SIMPLE_REPLY = 0x67446698;
export const MAGIC_STRUCTURED_REPLY = 0x668e33ef;

export const encoder = new TextEncoder();
export const decoder = new TextDecoder();

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Concatenates byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  return concatBytes(parts);
}

/** Big-endian u16. */
export function u16(value: number): Uint8Array {
  const out = new Uint8Array(2);
  view(out).setUint16(0, value);
  return out;
}

/** Big-endian u32. */
export function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  view(out).setUint32(0, value >>> 0);
  return out;
}

/** Big-endian u64. */
export function u64(value: bigint | number): Uint8Array {
  const out = new Uint8Array(8);
  view(out).setBigUint64(0, BigInt(value));
  return out;
}

/** A u32 length then the UTF-8 bytes of `text`. */
export function lengthPrefixed(text: string | Uint8Array): Uint8Array {
  const bytes = typeof text === "string" ? encoder.encode(text) : text;
  return concat(u32(bytes.length), bytes);
}

/** An option: IHAVEOPT, code, length, data. */
export function encodeOption(code: number, data: Uint8Array = new Uint8Array()): Uint8Array {
  return concat(u64(MAGIC_IHAVEOPT), u32(code), u32(data.length), data);
}

/** Data of NBD_OPT_INFO / NBD_OPT_GO. */
export function infoData(name: string, infoRequests: number[] = []): Uint8Array {
  return concat(lengthPrefixed(name), u16(infoRequests.length), ...infoRequests.map(u16));
}

/** Data of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT. */
export function metaContextData(name: string, queries: string[]): Uint8Array {
  return concat(
    lengthPrefixed(name),
    u32(queries.length),
    ...queries.map((query) => lengthPrefixed(query)),
  );
}

/** Reads the 18-byte greeting, checks it, and sends client flags. */
export async function greet(client: WireClient, clientFlags = 0b11): Promise<number> {
  const greeting = view(await client.readExact(18));
  assert.equal(greeting.getBigUint64(0), MAGIC_NBDMAGIC, "NBDMAGIC");
  assert.equal(greeting.getBigUint64(8), MAGIC_IHAVEOPT, "IHAVEOPT");
  client.write(u32(clientFlags));
  return greeting.getUint16(16);
}

/** One option reply. */
export interface OptionReply {
  option: number;
  type: number;
  data: Uint8Array;
}

/** Reads one option reply and checks its magic. */
export async function readOptionReply(client: WireClient): Promise<OptionReply> {
  const header = view(await client.readExact(20));
  assert.equal(header.getBigUint64(0), MAGIC_OPTION_REPLY, "option reply magic");
  const data = await client.readExact(header.getUint32(16));
  return { option: header.getUint32(8), type: header.getUint32(12), data };
}

/** Reads option replies up to and including the first that is not NBD_REP_INFO/SERVER/META_CONTEXT. */
export async function readOptionReplies(client: WireClient): Promise<OptionReply[]> {
  const replies: OptionReply[] = [];
  while (true) {
    const reply = await readOptionReply(client);
    replies.push(reply);
    if (reply.type !== 2 && reply.type !== 3 && reply.type !== 4) return replies;
  }
}

/** A request. */
export interface TestRequest {
  type: number;
  flags?: number;
  cookie: bigint | number;
  offset?: bigint | number;
  length?: number;
  payload?: Uint8Array;
  /** Overrides the magic, to send a bad one. */
  magic?: number;
}

/** Encodes a request header plus payload. */
export function encodeRequest(request: TestRequest): Uint8Array {
  const length = request.length ?? request.payload?.length ?? 0;
  return concat(
    u32(request.magic ?? MAGIC_REQUEST),
    u16(request.flags ?? 0),
    u16(request.type),
    u64(request.cookie),
    u64(request.offset ?? 0),
    u32(length),
    request.payload ?? new Uint8Array(),
  );
}

/** A simple reply. */
export interface SimpleReply {
  error: number;
  cookie: bigint;
}

/** Reads a simple reply header. */
export async function readSimpleReply(client: WireClient): Promise<SimpleReply> {
  const header = view(await client.readExact(16));
  assert.equal(header.getUint32(0), MAGIC_SIMPLE_REPLY, "simple reply magic");
  return { error: header.getUint32(4), cookie: header.getBigUint64(8) };
}

/** A structured reply chunk. */
export interface Chunk {
  flags: number;
  type: number;
  cookie: bigint;
  payload: Uint8Array;
}

/** Reads one structured reply chunk. */
export async function readChunk(client: WireClient): Promise<Chunk> {
  const header = view(await client.readExact(20));
  assert.equal(header.getUint32(0), MAGIC_STRUCTURED_REPLY, "structured reply magic");
  const payload = await client.readExact(header.getUint32(16));
  return {
    flags: header.getUint16(4),
    type: header.getUint16(6),
    cookie: header.getBigUint64(8),
    payload,
  };
}

/** The error value of an NBD_REPLY_TYPE_ERROR chunk and its message. */
export function errorOfChunk(chunk: Chunk): { error: number; message: string } {
  const payload = view(chunk.payload);
  const messageBytes = payload.getUint16(4);
  return {
    error: payload.getUint32(0),
    message: decoder.decode(chunk.payload.subarray(6, 6 + messageBytes)),
  };
}

/** Reads the big-endian u32 at `at`. */
export function readU32(bytes: Uint8Array, at: number): number {
  return view(bytes).getUint32(at);
}

/** Reads the big-endian u64 at `at`. */
export function readU64(bytes: Uint8Array, at: number): bigint {
  return view(bytes).getBigUint64(at);
}

/** Reads the big-endian u16 at `at`. */
export function readU16(bytes: Uint8Array, at: number): number {
  return view(bytes).getUint16(at);
}

// ---------------------------------------------------------------------------
// Devices.

/** One call a {@link ScriptedDevice} received. */
export interface DeviceCall {
  op: "read" | "write" | "flush" | "discard" | "writeZeroes";
  range: ByteRange;
  options?: WriteOptions | WriteZeroesOptions;
}

/** Runs before each call: may delay it (return a promise) or fail it (throw). */
export type DeviceHook = (call: DeviceCall) => void | Promise<void>;

/**
 * A memory device that records every call and runs a hook first, so tests can
 * slow down, gate or fail chosen operations.
 */
export class ScriptedDevice implements Device {
  readonly memory: MemoryDevice;
  readonly calls: DeviceCall[] = [];
  hook: DeviceHook | undefined;
  /** Calls started and not yet finished. */
  active = 0;
  /** The most calls ever active at once. */
  activeMax = 0;

  constructor(sizeBytes: number, hook?: DeviceHook) {
    this.memory = new MemoryDevice("scripted", sizeBytes);
    this.hook = hook;
  }

  get name(): string {
    return this.memory.name;
  }

  get sizeBytes(): number {
    return this.memory.sizeBytes;
  }

  read(buffer: Uint8Array, offsetBytes: number): Promise<void> {
    return this.#run(
      { op: "read", range: { offsetBytes, lengthBytes: buffer.length } },
      () => this.memory.read(buffer, offsetBytes),
    );
  }

  write(data: Uint8Array, offsetBytes: number, options?: WriteOptions): Promise<void> {
    return this.#run(
      { op: "write", range: { offsetBytes, lengthBytes: data.length }, options },
      () => this.memory.write(data, offsetBytes, options),
    );
  }

  flush(): Promise<void> {
    return this.#run(
      { op: "flush", range: { offsetBytes: 0, lengthBytes: 0 } },
      () => this.memory.flush(),
    );
  }

  discard(range: ByteRange): Promise<void> {
    return this.#run({ op: "discard", range }, () => this.memory.discard(range));
  }

  writeZeroes(range: ByteRange, options?: WriteZeroesOptions): Promise<void> {
    return this.#run(
      { op: "writeZeroes", range, options },
      () => this.memory.writeZeroes(range, options),
    );
  }

  close(): Promise<void> {
    return this.memory.close();
  }

  /** Calls of one kind. */
  callsOf(op: DeviceCall["op"]): DeviceCall[] {
    return this.calls.filter((call) => call.op === op);
  }

  async #run(call: DeviceCall, action: () => Promise<void>): Promise<void> {
    this.calls.push(call);
    this.active++;
    this.activeMax = Math.max(this.activeMax, this.active);
    try {
      await this.hook?.(call);
      await action();
    } finally {
      this.active--;
    }
  }
}

/** A promise with its resolver, for gating device calls. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => open = resolve);
  return { promise, open };
}

/** Resolves after pending microtasks and one macrotask turn. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

// ---------------------------------------------------------------------------
// Seeded randomness.

export { seededRandom } from "../../../mod/fault/fault_model.ts";

/** Random bytes from a seeded PRNG. */
export function randomBytes(random: () => number, lengthBytes: number): Uint8Array {
  const out = new Uint8Array(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) out[i] = Math.floor(random() * 256);
  return out;
}

/** The seed for a randomized test: `NBD_TEST_SEED` to replay, otherwise a fresh one. */
export function testSeed(): number {
  const fromEnv = Deno.env.get("NBD_TEST_SEED");
  return fromEnv !== undefined ? Number(fromEnv) : Math.floor(Math.random() * 0xffffffff);
}

// ---------------------------------------------------------------------------
// Whole handshakes.

/** Options of {@link negotiate}. */
export interface NegotiateOptions {
  exportName?: string;
  structured?: boolean;
  /** Select base:allocation (implies structured). */
  context?: boolean;
}

/** Greets, negotiates, sends NBD_OPT_GO and checks the ACK; returns the export size and flags. */
export async function negotiate(
  client: WireClient,
  options: NegotiateOptions = {},
): Promise<{ sizeBytes: bigint; flags: number }> {
  await greet(client);
  const exportName = options.exportName ?? "";
  if (options.structured || options.context) {
    client.write(encodeOption(8));
    assert.equal((await readOptionReply(client)).type, 1, "structured replies acknowledged");
  }
  if (options.context) {
    client.write(encodeOption(10, metaContextData(exportName, ["base:allocation"])));
    const replies = await readOptionReplies(client);
    assert.deepEqual(replies.map((reply) => reply.type), [4, 1], "base:allocation selected");
  }
  client.write(encodeOption(7, infoData(exportName, [3])));
  const replies = await readOptionReplies(client);
  assert.equal(replies.at(-1)!.type, 1, "NBD_OPT_GO acknowledged");
  const exportInfo = replies.find((reply) => reply.type === 3 && readU16(reply.data, 0) === 0)!;
  return { sizeBytes: readU64(exportInfo.data, 2), flags: readU16(exportInfo.data, 10) };
}

/**
 * The byte stream the NBD protocol code speaks instead of a socket.
 *
 * Handshake and transmission only need "read exactly n bytes" and "write all
 * of these bytes", so tests and fuzzers drive them with in-memory streams and
 * the server adapts a `Deno.Conn` with {@link ConnByteStream} (as nbdkit keeps
 * its protocol code off sockets and can serve stdin for fuzzing).
 *
 * @module
 */

import { assert } from "../../assert.ts";
import { CONN_READ_BUFFER_BYTES } from "../../constants.ts";
import { alignedBytes } from "../../aligned_bytes.ts";
export { CONN_READ_BUFFER_BYTES };

/** Reads exact amounts from a byte stream. */
export interface ByteReader {
  /**
   * Reads exactly `lengthBytes` bytes into a new array owned by the caller.
   * With `aligned`, the array starts on an O_DIRECT boundary, so write
   * payloads reach the disk without a bounce copy.
   *
   * @throws {StreamEndedError} When the stream ends first.
   */
  readExact(lengthBytes: number, options?: { aligned?: boolean }): Promise<Uint8Array>;
}

/** Writes whole buffers to a byte stream. */
export interface ByteWriter {
  /** Writes all of `data`; rejects when the peer is gone. */
  write(data: Uint8Array): Promise<void>;
}

/** Both halves of a connection. */
export interface ByteStream extends ByteReader, ByteWriter {}

/** The stream ended before a read was satisfied. */
export class StreamEndedError extends Error {
  /** Always "StreamEndedError". */
  override name = "StreamEndedError";
  /** Bytes of the failed read that did arrive: 0 means the stream ended between messages. */
  readonly receivedBytes: number;
  /**
   * Describes a read cut short.
   *
   * @param wantedBytes The length of the read that failed.
   * @param receivedBytes How much of it arrived.
   */
  constructor(wantedBytes: number, receivedBytes: number) {
    super(`Cannot read ${wantedBytes} bytes: the stream ended after ${receivedBytes}`);
    this.receivedBytes = receivedBytes;
  }
}

/** The part of `Deno.Conn` the adapter uses, so tests can hand in anything that reads and writes. */
export interface ConnLike {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
}

/**
 * A {@link ByteStream} over a `Deno.Conn`, with a read buffer.
 *
 * @example
 * ```ts ignore
 * import { ConnByteStream } from "./byte_stream.ts";
 * const conn = await Deno.connect({ transport: "unix", path: "/run/dm-remap/nbd.sock" });
 * const stream = new ConnByteStream(conn);
 * const greeting = await stream.readExact(18);
 * ```
 */
export class ConnByteStream implements ByteStream {
  #conn: ConnLike;
  #buffer = new Uint8Array(CONN_READ_BUFFER_BYTES);
  #start = 0;
  #end = 0;

  /**
   * Wraps a connection.
   *
   * @param conn The connection; the caller keeps ownership and closes it.
   */
  constructor(conn: ConnLike) {
    this.#conn = conn;
  }

  /**
   * Reads exactly `lengthBytes` bytes.
   *
   * @param lengthBytes How many bytes to read.
   * @returns A new array of that length.
   * @throws {StreamEndedError} When the peer closes first.
   */
  async readExact(lengthBytes: number, options: { aligned?: boolean } = {}): Promise<Uint8Array> {
    assert(Number.isSafeInteger(lengthBytes) && lengthBytes >= 0, "read length is a whole number");
    const out = options.aligned ? alignedBytes(lengthBytes) : new Uint8Array(lengthBytes);
    let filled = this.#take(out, 0);
    while (filled < lengthBytes) {
      const missing = lengthBytes - filled;
      // Large payloads go straight into their own buffer instead of through ours.
      if (missing >= this.#buffer.length) {
        const count = await this.#conn.read(out.subarray(filled));
        if (count === null || count === 0) throw new StreamEndedError(lengthBytes, filled);
        filled += count;
        continue;
      }
      this.#start = 0;
      this.#end = 0;
      const count = await this.#conn.read(this.#buffer);
      if (count === null || count === 0) throw new StreamEndedError(lengthBytes, filled);
      this.#end = count;
      filled = this.#take(out, filled);
    }
    assert(filled === lengthBytes, "read exactly what was asked");
    return out;
  }

  /**
   * Writes all of `data`, looping over partial writes.
   *
   * @param data Bytes to send.
   * @throws {Deno.errors.BrokenPipe} (or another I/O error) when the peer is gone.
   */
  async write(data: Uint8Array): Promise<void> {
    let written = 0;
    while (written < data.length) {
      const count = await this.#conn.write(data.subarray(written));
      assert(count > 0, "a socket write makes progress");
      written += count;
    }
  }

  /** Hands over the bytes read ahead and not yet taken (a new owner of the connection goes on from them). */
  takeBuffered(): Uint8Array {
    const rest = this.#buffer.slice(this.#start, this.#end);
    this.#start = this.#end = 0;
    return rest;
  }

  /** Copies buffered bytes into `out` from `at`; returns the new fill level. */
  #take(out: Uint8Array, at: number): number {
    const count = Math.min(out.length - at, this.#end - this.#start);
    out.set(this.#buffer.subarray(this.#start, this.#start + count), at);
    this.#start += count;
    return at + count;
  }
}

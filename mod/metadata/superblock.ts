/**
 * One metadata copy: a checksummed header sector and a JSON payload that
 * describes the whole setup.
 *
 * The payload is text, as LVM2 keeps its metadata, because it changes rarely,
 * must be readable by a person in a rescue shell (`dm-remap check --json`) and
 * must grow fields across versions; the hot structure, the remap table, is
 * binary and lives outside the copies (see `remap_log.ts`, `checkpoint.ts`).
 *
 * Header sector, little-endian (see docs/FORMAT.md):
 *
 * | offset | width | field |
 * |---|---|---|
 * | 0 | 8 | magic `DM-REMAP` |
 * | 8 | 4 | format version |
 * | 12 | 4 | header bytes (512) |
 * | 16 | 8 | sequence |
 * | 24 | 8 | timestamp, ms since the epoch |
 * | 32 | 4 | copy index 0–4 |
 * | 36 | 4 | payload bytes |
 * | 40 | 4 | payload CRC-32C |
 * | 44 | 16 | setup UUID |
 * | 60 | 4 | spare index |
 * | 508 | 4 | header CRC-32C of bytes 0–507 |
 *
 * @module
 */

import { assert } from "../assert.ts";
import { COPY_PAYLOAD_BYTES_MAX, PENDING_MAX, SECTOR_BYTES, SPARES_MAX } from "../constants.ts";
import { crc32c } from "./crc32c.ts";
import type { SpareLayout } from "./spare_layout.ts";
import type { DeviceIdentity } from "../device/probe_device_identity.ts";
import { uuidFromBytes, uuidToBytes } from "./uuid.ts";

/** ASCII `DM-REMAP`. */
export const SUPERBLOCK_MAGIC = new TextEncoder().encode("DM-REMAP");
/** The format version this program writes. */
export const FORMAT_VERSION = 2;
const HEADER_CRC_OFFSET = SECTOR_BYTES - 4;
/** CRC-32C of no bytes: the checksum of an empty peer section. */
export const EMPTY_CRC32C = crc32c(new Uint8Array(0));

/** How the main disk is recognised when a setup is assembled. */
export interface MainIdentity extends DeviceIdentity {
  /** Path at the time of the last metadata write; a hint, not proof. */
  path: string;
  /** SHA-256 (hex) of the stable identity material: kind, size, serial, WWN, model. */
  fingerprint: string;
}

/** The process serving a setup, identified across PID reuse by its boot and start time. */
export interface ServingMarker {
  pid: number;
  host: string;
  /** `/proc/sys/kernel/random/boot_id` when it started. */
  bootId: string;
  /** The process's start time in clock ticks since boot (`/proc/PID/stat`, field 22). */
  processStartTicks: number;
  startedMs: number;
}

/** The states of a spare's record (see {@link SpareRecord}). */
export type SpareRecordState = "active" | "failed" | "missing" | "draining" | "removed";

/** One spare as the setup knows it. */
export interface SpareRecord {
  index: number;
  uuid: string;
  path: string;
  sizeBytes: number;
  role: "spare";
  /**
   * `failed`: no new slots are taken from it; its existing slots stay mapped.
   * `missing` (version 2): the setup was served without it; like `failed`
   * while away, and active again once it is back and brought up to date.
   * `draining` (version 2, `spare remove`): its blocks are being moved to the
   * other spares; it takes no new slots but keeps its metadata, and an open
   * finds the removal to resume.
   * `removed` (version 2): its blocks all moved away and it left the setup;
   * its index stays taken, so log records and peer sections keep their owners.
   */
  state: SpareRecordState;
}

/** Where this spare's remap table stands. */
export interface TableState {
  /** Current checkpoint region (0 = A, 1 = B). */
  checkpointRegion: 0 | 1;
  /** Entries (used slots) in the current checkpoint. */
  checkpointEntries: number;
  /** CRC-32C of those entries' bytes. */
  checkpointCrc32c: number;
  /** Log sequence of the first log sector after the checkpoint. */
  logStartSequence: number;
  /**
   * Entries of each spare's table (by spare index) in the checkpoint's peer
   * section; 0 for this spare, whose own entries are `checkpointEntries`.
   * Version 2: what this spare knows of the others' slots.
   */
  peerEntries: number[];
  /** CRC-32C of the peer section's entries. */
  peerCrc32c: number;
}

/** Everything one copy says; identical across copies of one spare at one sequence. */
export interface SuperblockPayload {
  setup: {
    uuid: string;
    name: string;
    blockBytes: number;
    createdMs: number;
    /** Bumped when setup-wide fields change, so assembly picks the newest description. */
    generation: number;
    /** "degraded" once a failed block could not be remapped. */
    state: "clean" | "degraded";
    /**
     * Who serves the setup: written when `serve` starts, removed when it stops
     * cleanly. Present with the server gone means it did not stop cleanly.
     */
    serving?: ServingMarker;
    /**
     * Which spare new remaps go to (format 2; `remap/allocation_policy.ts`).
     * Absent: "fill-first", what setups did before policies existed.
     */
    allocation?: string;
  };
  main: MainIdentity;
  spares: SpareRecord[];
  /** This device's place in `spares`. */
  spareIndex: number;
  layout: SpareLayout;
  table: TableState;
  /** Main-disk blocks whose reads failed and that have not been rewritten since. */
  pending: number[];
  /** Reserved for health scoring and background scan progress. */
  health: Record<string, unknown>;
  scan: Record<string, unknown>;
}

/** The header fields of one copy. */
export interface CopyHeader {
  formatVersion: number;
  sequence: number;
  timestampMs: number;
  copyIndex: number;
  setupUuid: string;
  spareIndex: number;
}

/** A copy that passed every check. */
export interface ValidCopy {
  valid: true;
  header: CopyHeader;
  payload: SuperblockPayload;
}

/** A copy that failed a check, with the first reason. */
export interface InvalidCopy {
  valid: false;
  reason: string;
  /** Set when the header was readable but a newer format wrote it. */
  newerVersion?: number;
}

/** The outcome of decoding one copy. */
export type DecodedCopy = ValidCopy | InvalidCopy;

/**
 * Upgrades a payload written by an older format version, one step at a time.
 * Index `n` turns a version `n` payload into version `n + 1`. Version 1 is the
 * first, so the chain is empty; {@link decodeCopy} takes it as a parameter so
 * the mechanism is tested before the first real migration exists.
 */
export type Migration = (payload: Record<string, unknown>) => Record<string, unknown>;
export const MIGRATIONS: ReadonlyMap<number, Migration> = new Map([[1, upgradeFrom1]]);

/**
 * Version 1 → 2: a version-1 spare knows only its own slots, so its peer
 * section is empty. That is a true, partial view; assembly merges the views
 * of all spares and writes the whole table to each (`SpareStore.resync`).
 */
function upgradeFrom1(raw: Record<string, unknown>): Record<string, unknown> {
  const spares = Array.isArray(raw.spares) ? raw.spares : [];
  const table = (raw.table ?? {}) as Record<string, unknown>;
  return {
    ...raw,
    table: { ...table, peerEntries: spares.map(() => 0), peerCrc32c: EMPTY_CRC32C },
  };
}

/**
 * Encodes one copy: header sector followed by the payload, padded to whole sectors.
 *
 * @throws {AssertionError} When the payload is larger than a copy can hold.
 */
export function encodeCopy(header: CopyHeader, payload: SuperblockPayload): Uint8Array {
  assert(header.formatVersion === FORMAT_VERSION, "only the current format is written");
  assert(header.copyIndex >= 0 && header.copyIndex < 5, "copy index 0-4");
  assert(header.setupUuid === payload.setup.uuid, "header and payload name one setup");
  assert(header.spareIndex === payload.spareIndex, "header and payload name one spare");
  const payloadBytes = new TextEncoder().encode(JSON.stringify(payload));
  assert(payloadBytes.length <= COPY_PAYLOAD_BYTES_MAX, "payload fits in a copy");
  const total = SECTOR_BYTES + Math.ceil(payloadBytes.length / SECTOR_BYTES) * SECTOR_BYTES;
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  bytes.set(SUPERBLOCK_MAGIC, 0);
  view.setUint32(8, header.formatVersion, true);
  view.setUint32(12, SECTOR_BYTES, true);
  view.setBigUint64(16, BigInt(header.sequence), true);
  view.setBigUint64(24, BigInt(header.timestampMs), true);
  view.setUint32(32, header.copyIndex, true);
  view.setUint32(36, payloadBytes.length, true);
  view.setUint32(40, crc32c(payloadBytes), true);
  bytes.set(uuidToBytes(header.setupUuid), 44);
  view.setUint32(60, header.spareIndex, true);
  view.setUint32(HEADER_CRC_OFFSET, crc32c(bytes.subarray(0, HEADER_CRC_OFFSET)), true);
  bytes.set(payloadBytes, SECTOR_BYTES);
  return bytes;
}

interface DecodedHeader extends CopyHeader {
  payloadBytes: number;
  payloadCrc: number;
}

function decodeHeader(bytes: Uint8Array): DecodedHeader | { reason: string } {
  if (bytes.length < SECTOR_BYTES) return { reason: "short read" };
  for (let i = 0; i < SUPERBLOCK_MAGIC.length; i++) {
    if (bytes[i] !== SUPERBLOCK_MAGIC[i]) return { reason: "no dm-remap magic" };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, SECTOR_BYTES);
  if (view.getUint32(HEADER_CRC_OFFSET, true) !== crc32c(bytes.subarray(0, HEADER_CRC_OFFSET))) {
    return { reason: "header checksum mismatch" };
  }
  const sequence = view.getBigUint64(16, true);
  const timestampMs = view.getBigUint64(24, true);
  if (sequence > BigInt(Number.MAX_SAFE_INTEGER) || timestampMs > BigInt(Number.MAX_SAFE_INTEGER)) {
    return { reason: "sequence or timestamp out of range" };
  }
  return {
    formatVersion: view.getUint32(8, true),
    sequence: Number(sequence),
    timestampMs: Number(timestampMs),
    copyIndex: view.getUint32(32, true),
    payloadBytes: view.getUint32(36, true),
    payloadCrc: view.getUint32(40, true),
    setupUuid: uuidFromBytes(bytes.subarray(44, 60)),
    spareIndex: view.getUint32(60, true),
  };
}

/**
 * Decodes and checks one copy read from the spare.
 *
 * @param bytes The copy's bytes (header sector, then at least the payload).
 * @param expectedCopyIndex The index of the position it was read from: a copy
 *   found at the wrong place was misdirected and is invalid.
 * @param migrations Upgrades for older versions. @default MIGRATIONS
 */
export function decodeCopy(
  bytes: Uint8Array,
  expectedCopyIndex: number,
  migrations: ReadonlyMap<number, Migration> = MIGRATIONS,
): DecodedCopy {
  const header = decodeHeader(bytes);
  if ("reason" in header) return { valid: false, reason: header.reason };
  if (header.formatVersion > FORMAT_VERSION) {
    return {
      valid: false,
      reason: `format version ${header.formatVersion} is newer than ${FORMAT_VERSION}`,
      newerVersion: header.formatVersion,
    };
  }
  if (header.copyIndex !== expectedCopyIndex) {
    return {
      valid: false,
      reason: `copy index ${header.copyIndex} found at position ${expectedCopyIndex}`,
    };
  }
  if (
    header.payloadBytes > COPY_PAYLOAD_BYTES_MAX ||
    SECTOR_BYTES + header.payloadBytes > bytes.length
  ) {
    return { valid: false, reason: "payload length out of range" };
  }
  const payloadBytes = bytes.subarray(SECTOR_BYTES, SECTOR_BYTES + header.payloadBytes);
  if (crc32c(payloadBytes) !== header.payloadCrc) {
    return { valid: false, reason: "payload checksum mismatch" };
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payloadBytes));
  } catch {
    return { valid: false, reason: "payload is not JSON" };
  }
  for (let version = header.formatVersion; version < FORMAT_VERSION; version++) {
    const migration = migrations.get(version);
    if (!migration) return { valid: false, reason: `no upgrade from format version ${version}` };
    raw = migration(raw);
  }
  const problem = payloadProblem(raw);
  if (problem) return { valid: false, reason: `payload ${problem}` };
  const payload = raw as unknown as SuperblockPayload;
  if (payload.setup.uuid !== header.setupUuid) {
    return { valid: false, reason: "payload names another setup" };
  }
  if (payload.spareIndex !== header.spareIndex) {
    return { valid: false, reason: "payload names another spare" };
  }
  const { payloadBytes: _length, payloadCrc: _crc, ...copyHeader } = header;
  return { valid: true, header: copyHeader, payload };
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** Checks the shape and ranges of a decoded payload; returns the first problem. */
export function payloadProblem(raw: Record<string, unknown>): string | undefined {
  const payload = raw as unknown as Partial<SuperblockPayload>;
  const setup = payload.setup;
  if (!setup || typeof setup.uuid !== "string" || typeof setup.name !== "string") {
    return "lacks setup identity";
  }
  if (!isCount(setup.blockBytes) || setup.blockBytes % SECTOR_BYTES !== 0) {
    return "has a bad block size";
  }
  if (!isCount(setup.generation)) return "has a bad generation";
  const main = payload.main;
  if (!main || !isCount(main.sizeBytes) || typeof main.fingerprint !== "string") {
    return "lacks main identity";
  }
  const spares = payload.spares;
  if (!Array.isArray(spares) || spares.length < 1 || spares.length > SPARES_MAX) {
    return "has a bad spare list";
  }
  if (spares.some((spare, index) => spare.index !== index || typeof spare.uuid !== "string")) {
    return "has a bad spare record";
  }
  if (!isCount(payload.spareIndex) || payload.spareIndex >= spares.length) {
    return "has a bad spare index";
  }
  const layout = payload.layout;
  if (!layout || !isCount(layout.slotCount) || !isCount(layout.dataOffsetBytes)) {
    return "lacks a layout";
  }
  if (layout.blockBytes !== setup.blockBytes) return "has a layout for another block size";
  const table = payload.table;
  if (!table || !isCount(table.checkpointEntries) || !isCount(table.logStartSequence)) {
    return "lacks table state";
  }
  if (table.checkpointRegion !== 0 && table.checkpointRegion !== 1) {
    return "has a bad checkpoint region";
  }
  if (table.checkpointEntries > layout.slotCount) return "has more entries than slots";
  if (
    !Array.isArray(table.peerEntries) || table.peerEntries.length !== spares.length ||
    !table.peerEntries.every(isCount) || table.peerEntries[payload.spareIndex] !== 0 ||
    !isCount(table.peerCrc32c)
  ) {
    return "has bad peer entries";
  }
  if (!Array.isArray(payload.pending) || payload.pending.length > PENDING_MAX) {
    return "has a bad pending list";
  }
  if (!payload.pending.every(isCount)) return "has a bad pending entry";
  return undefined;
}

/**
 * The winner rule: highest sequence, then newest timestamp, then highest copy index.
 *
 * @returns A negative number when `a` wins, positive when `b` wins.
 */
export function compareCopies(a: CopyHeader, b: CopyHeader): number {
  return (b.sequence - a.sequence) || (b.timestampMs - a.timestampMs) ||
    (b.copyIndex - a.copyIndex);
}

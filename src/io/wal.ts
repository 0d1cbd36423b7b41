/**
 * Append-only write-ahead log: a directory of segment files named `wal-<first seq, 20 digits>.log`.
 *
 * Segment header (20 bytes, little-endian):
 *
 * | Offset | Size | Field       | Meaning                                              |
 * | ------ | ---- | ----------- | ---------------------------------------------------- |
 * | 0      | 4    | magic       | `0x4C415756` (the bytes `VWAL`)                      |
 * | 4      | 4    | version     | `1`                                                  |
 * | 8      | 8    | first_seq   | sequence number of the segment's first record (u64)  |
 * | 16     | 4    | header_crc  | CRC-32 of bytes 0..15                                |
 *
 * Records follow the header back to back:
 *
 * | Offset | Size   | Field   | Meaning                                              |
 * | ------ | ------ | ------- | ---------------------------------------------------- |
 * | 0      | 4      | length  | payload length in bytes (u32)                        |
 * | 4      | 4      | crc     | CRC-32 of bytes 8..(17 + length), i.e. seq+type+payload |
 * | 8      | 8      | seq     | sequence number (u64), contiguous across segments    |
 * | 16     | 1      | type    | record type (opaque to the log, see `records.ts`)    |
 * | 17     | length | payload | record payload                                       |
 *
 * Durability: `append` resolves only after the record's bytes were written and the segment was
 * fdatasynced. Appends made while a sync is in flight are grouped into the next write + sync
 * (group commit); `appendMany` always goes out in a single sync. New segments are written under a
 * temporary name, fsynced, renamed and the directory fsynced; truncations and deletions fsync the
 * directory too. After a write or sync error the log refuses all further appends (the state of the
 * file is unknown after a failed fsync).
 *
 * Recovery on `open`: segments are scanned in order. A bad record (short, checksum mismatch,
 * wrong sequence number) in the last segment with no valid record anywhere after it is a torn
 * tail from a crash: the file is truncated to the last good record and fsynced. A bad record
 * followed by a valid one, a bad record in any earlier segment, a bad segment header or a gap in
 * sequence numbers is corruption: `open` throws {@link WalCorruptionError} naming the file and
 * byte offset, unless `recovery: "truncate"` is set, in which case the log is cut there (later
 * segments deleted) and what was dropped is logged. Records before the failure point may already
 * have been passed to `onRecord` when `open` throws; the caller must discard that state.
 *
 * One process owns a log directory at a time; this module does not lock it.
 * @module
 */
import * as fs from "node:fs";
import type { FileHandle } from "node:fs/promises";
import * as fsp from "node:fs/promises";
import { dirname, join } from "node:path";
import { BinaryReader, BinaryWriter, BufferSink } from "./binary.ts";
import { crc32 } from "./crc32.ts";
import { fsyncDir, writeFileAtomic, writeFully } from "./fs_util.ts";

export const SEGMENT_MAGIC = 0x4C415756;
export const SEGMENT_VERSION = 1;
export const SEGMENT_HEADER_BYTES = 20;
export const RECORD_HEADER_BYTES = 17;

const SEGMENT_NAME = /^wal-(\d{20})\.log$/;
const SEGMENT_TEMP_NAME = /^wal-\d{20}\.log\.tmp$/;
const TWO_32 = 0x100000000;

/** One record as replayed from the log. `payload` is a view into the segment read buffer. */
export interface WalEntry {
  seq: number;
  type: number;
  payload: Uint8Array;
}

export interface WalOptions {
  /** Replay only records with a greater sequence number; a new log starts at `afterSeq + 1`. */
  afterSeq?: number;
  /** Called, in order and awaited, for every record with `seq > afterSeq`. */
  onRecord?: (entry: WalEntry) => void | Promise<void>;
  /** Receives recovery messages (torn tails truncated, temp files removed…). */
  logger?: (message: string) => void;
  /** `"strict"` (default): corruption throws. `"truncate"`: cut the log at the corruption. */
  recovery?: "strict" | "truncate";
  /** Rotate to a new segment once the active one reaches this size. Default 64 MiB. */
  segment_bytes_max?: number;
  /** Largest payload `append` accepts. Default 64 MiB. */
  record_bytes_max?: number;
  /** Most bytes that may wait for (or be in) a write + sync. Default 256 MiB. */
  queue_bytes_max?: number;
}

export interface WalStats {
  /** Records made durable since open. */
  records: number;
  /** Bytes written to segments since open (record framing included). */
  bytes: number;
  /** fdatasync calls made for appends (one per group commit). */
  syncs: number;
  /** Directory fsyncs (segment creation, deletion, truncation). */
  dir_syncs: number;
  /** Segment files currently in the log. */
  segments: number;
  /** Bytes appended but not yet durable. */
  queued_bytes: number;
}

/** A segment file of the log. */
export interface WalSegment {
  path: string;
  first_seq: number;
}

/** The log on disk is damaged somewhere other than a torn tail. */
export class WalCorruptionError extends Error {
  constructor(readonly file: string, readonly offset: number, readonly reason: string) {
    super(`WAL segment ${file} is corrupt at byte offset ${offset}: ${reason}`);
    this.name = "WalCorruptionError";
  }
}

/** The log does not hold the records the caller needs (gap after a snapshot). */
export class WalSequenceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WalSequenceError";
  }
}

/** A payload is larger than `record_bytes_max`. */
export class WalRecordTooLargeError extends Error {
  constructor(readonly bytes: number, readonly bytes_max: number) {
    super(`WAL record payload of ${bytes} bytes exceeds the limit of ${bytes_max} bytes`);
    this.name = "WalRecordTooLargeError";
  }
}

/** Accepting the append would exceed `queue_bytes_max`. */
export class WalQueueFullError extends Error {
  constructor(readonly bytes: number, readonly queued_bytes: number, readonly bytes_max: number) {
    super(
      `WAL append of ${bytes} bytes refused: ${queued_bytes} bytes are already queued ` +
        `and the limit is ${bytes_max} bytes`,
    );
    this.name = "WalQueueFullError";
  }
}

/** The log was closed. */
export class WalClosedError extends Error {
  constructor(dir: string) {
    super(`WAL ${dir} is closed`);
    this.name = "WalClosedError";
  }
}

/** A write or sync failed; the log accepts no more appends. */
export class WalWriteFailedError extends Error {
  constructor(dir: string, cause: unknown) {
    super(`WAL ${dir} failed and accepts no more appends: ${(cause as Error)?.message}`, {
      cause,
    });
    this.name = "WalWriteFailedError";
  }
}

/** The file name of the segment starting at `firstSeq`. */
export function segmentName(firstSeq: number): string {
  return `wal-${String(firstSeq).padStart(20, "0")}.log`;
}

function defaultLogger(message: string): void {
  console.warn(`wal: ${message}`);
}

function checkSeq(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what} ${value} is not a non-negative safe integer`);
  }
}

function checkLimit(value: number, what: string, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`${what} ${value} must be an integer of at least ${min}`);
  }
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}

function encodeSegmentHeader(firstSeq: number): Uint8Array {
  const sink = new BufferSink({ initial_bytes: SEGMENT_HEADER_BYTES });
  const w = new BinaryWriter(sink, { buffer_bytes: 32 });
  w.u32(SEGMENT_MAGIC);
  w.u32(SEGMENT_VERSION);
  w.u64(firstSeq);
  w.u32(w.crc32());
  w.flush();
  return sink.view();
}

/** Parses a segment header; returns its first seq or a reason it is bad. */
function parseSegmentHeader(buf: Uint8Array): { first_seq: number } | { reason: string } {
  if (buf.length < SEGMENT_HEADER_BYTES) {
    return { reason: `file of ${buf.length} bytes is shorter than the segment header` };
  }
  const r = new BinaryReader(buf.subarray(0, SEGMENT_HEADER_BYTES));
  const magic = r.u32();
  if (magic !== SEGMENT_MAGIC) return { reason: `bad magic ${hex(magic)}` };
  const version = r.u32();
  if (version !== SEGMENT_VERSION) return { reason: `unsupported segment version ${version}` };
  const lo = r.u32();
  const hi = r.u32();
  const stored = r.u32();
  const computed = crc32(buf.subarray(0, 16));
  if (stored !== computed) {
    return {
      reason: `header checksum mismatch (stored ${hex(stored)}, computed ${hex(computed)})`,
    };
  }
  const first = hi * TWO_32 + lo;
  if (!Number.isSafeInteger(first)) return { reason: `first seq ${first} is not a safe integer` };
  return { first_seq: first };
}

interface ScanResult {
  entries: WalEntry[];
  /** End of the last good record. */
  good_end: number;
  /** Sequence number the next record must have. */
  next_seq: number;
  bad: { offset: number; reason: string } | null;
}

/** Checks the record framed at `off`; returns its total size or a reason it is bad. */
function checkRecord(
  r: BinaryReader,
  buf: Uint8Array,
  off: number,
  expectedSeq: number | null,
): number | string {
  const left = buf.length - off;
  if (left < RECORD_HEADER_BYTES) return `incomplete record header (${left} bytes)`;
  r.seek(off);
  const length = r.u32();
  const stored = r.u32();
  const lo = r.u32();
  const hi = r.u32();
  const seq = hi * TWO_32 + lo;
  if (expectedSeq !== null && seq !== expectedSeq) {
    return `sequence number ${seq} where ${expectedSeq} was expected`;
  }
  if (RECORD_HEADER_BYTES + length > left) {
    return `record length ${length} runs past the end of the file (${buf.length} bytes)`;
  }
  const computed = crc32(buf.subarray(off + 8, off + RECORD_HEADER_BYTES + length));
  if (computed !== stored) {
    return `checksum mismatch (stored ${hex(stored)}, computed ${hex(computed)})`;
  }
  return RECORD_HEADER_BYTES + length;
}

function scanSegment(buf: Uint8Array, firstSeq: number): ScanResult {
  const r = new BinaryReader(buf);
  const entries: WalEntry[] = [];
  let off = SEGMENT_HEADER_BYTES;
  let seq = firstSeq;
  while (off < buf.length) {
    const size = checkRecord(r, buf, off, seq);
    if (typeof size === "string") {
      return { entries, good_end: off, next_seq: seq, bad: { offset: off, reason: size } };
    }
    const type = buf[off + 16];
    entries.push({ seq, type, payload: buf.subarray(off + RECORD_HEADER_BYTES, off + size) });
    off += size;
    seq++;
  }
  return { entries, good_end: off, next_seq: seq, bad: null };
}

/**
 * Looks for any valid record starting after `from` whose seq is at least `minSeq` (and small
 * enough to fit the remaining bytes). Returns its offset or -1.
 */
function findValidRecordAfter(buf: Uint8Array, from: number, minSeq: number): number {
  const r = new BinaryReader(buf);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const maxSeq = minSeq + Math.ceil((buf.length - from) / RECORD_HEADER_BYTES) + 1;
  for (let off = from; off + RECORD_HEADER_BYTES <= buf.length; off++) {
    const seq = view.getUint32(off + 12, true) * TWO_32 + view.getUint32(off + 8, true);
    if (seq < minSeq || seq > maxSeq) continue;
    if (typeof checkRecord(r, buf, off, null) === "number") return off;
  }
  return -1;
}

async function readSegment(path: string): Promise<Uint8Array> {
  const b = await fsp.readFile(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

interface Waiter {
  resolve: (value: number | number[]) => void;
  reject: (error: Error) => void;
  value: number | number[];
}

interface Batch {
  sink: BufferSink;
  writer: BinaryWriter;
  waiters: Waiter[];
  bytes: number;
  records: number;
  first_seq: number;
  last_seq: number;
}

/** An open write-ahead log. Create with {@link Wal.open}. */
export class Wal {
  readonly dir: string;
  readonly segment_bytes_max: number;
  readonly record_bytes_max: number;
  readonly queue_bytes_max: number;
  readonly #logger: (message: string) => void;
  #segments: WalSegment[];
  #handle: FileHandle;
  #segmentBytes: number;
  #nextSeq: number;
  #lastSeq: number;
  #pending: Batch;
  #queuedBytes = 0;
  #flushing: Promise<void> | null = null;
  #maintenance: Promise<unknown> = Promise.resolve();
  #closed = false;
  #failed: Error | null = null;
  #scratch = new DataView(new ArrayBuffer(9));
  #stats = { records: 0, bytes: 0, syncs: 0, dir_syncs: 0 };

  private constructor(
    dir: string,
    options: Required<
      Pick<WalOptions, "segment_bytes_max" | "record_bytes_max" | "queue_bytes_max">
    >,
    logger: (message: string) => void,
    segments: WalSegment[],
    handle: FileHandle,
    segmentBytes: number,
    nextSeq: number,
    dirSyncs: number,
  ) {
    this.dir = dir;
    this.segment_bytes_max = options.segment_bytes_max;
    this.record_bytes_max = options.record_bytes_max;
    this.queue_bytes_max = options.queue_bytes_max;
    this.#logger = logger;
    this.#segments = segments;
    this.#handle = handle;
    this.#segmentBytes = segmentBytes;
    this.#nextSeq = nextSeq;
    this.#lastSeq = nextSeq - 1;
    this.#stats.dir_syncs = dirSyncs;
    this.#pending = this.#newBatch();
  }

  /** Opens (creating if needed) the log in `dir`, recovering and replaying it. */
  static async open(dir: string, options: WalOptions = {}): Promise<Wal> {
    const afterSeq = options.afterSeq ?? 0;
    checkSeq(afterSeq, "afterSeq");
    const limits = {
      segment_bytes_max: options.segment_bytes_max ?? 64 * 2 ** 20,
      record_bytes_max: options.record_bytes_max ?? 64 * 2 ** 20,
      queue_bytes_max: options.queue_bytes_max ?? 256 * 2 ** 20,
    };
    checkLimit(limits.segment_bytes_max, "segment_bytes_max", SEGMENT_HEADER_BYTES + 1);
    checkLimit(limits.record_bytes_max, "record_bytes_max", 0);
    checkLimit(
      limits.queue_bytes_max,
      "queue_bytes_max",
      limits.record_bytes_max + RECORD_HEADER_BYTES,
    );
    if (limits.queue_bytes_max > 2 ** 30) {
      throw new RangeError(`queue_bytes_max ${limits.queue_bytes_max} exceeds 1 GiB`);
    }
    const recovery = options.recovery ?? "strict";
    if (recovery !== "strict" && recovery !== "truncate") {
      throw new RangeError(`Recovery mode ${JSON.stringify(recovery)} is not strict or truncate`);
    }
    const log = options.logger ?? defaultLogger;
    let dirSyncs = 0;
    const syncDir = async () => {
      await fsyncDir(dir);
      dirSyncs++;
    };

    const created = await fsp.mkdir(dir, { recursive: true });
    if (created !== undefined) await fsyncDir(dirname(created));

    const names = await fsp.readdir(dir);
    let dirty = false;
    for (const name of names) {
      if (SEGMENT_TEMP_NAME.test(name)) {
        await fsp.unlink(join(dir, name));
        log(`Removed leftover temporary segment ${join(dir, name)}`);
        dirty = true;
      }
    }
    const found: WalSegment[] = [];
    for (const name of names) {
      const m = SEGMENT_NAME.exec(name);
      if (m === null) continue;
      const first = Number(m[1]);
      if (!Number.isSafeInteger(first)) {
        throw new WalCorruptionError(join(dir, name), 0, `file name seq ${m[1]} is too large`);
      }
      found.push({ path: join(dir, name), first_seq: first });
    }
    found.sort((a, b) => a.first_seq - b.first_seq);

    const kept: WalSegment[] = [];
    let nextSeq = afterSeq + 1;
    let activeBytes = SEGMENT_HEADER_BYTES;

    /** Truncate-mode cut: deletes `found[from..]`, newest first. */
    const dropFrom = async (from: number) => {
      for (let j = found.length - 1; j >= from; j--) {
        const size = (await fsp.stat(found[j].path)).size;
        await fsp.unlink(found[j].path);
        log(`Recovery dropped segment ${found[j].path} (${size} bytes)`);
      }
      dirty = true;
    };

    for (let i = 0; i < found.length; i++) {
      const seg = found[i];
      const isLast = i === found.length - 1;
      const buf = await readSegment(seg.path);
      const header = parseSegmentHeader(buf);
      let reason: string | null = null;
      if ("reason" in header) reason = header.reason;
      else if (header.first_seq !== seg.first_seq) {
        reason = `header first seq ${header.first_seq} does not match the file name`;
      } else if (i > 0 && seg.first_seq !== nextSeq) {
        reason = `segment starts at seq ${seg.first_seq} but the previous one ends at seq ` +
          `${nextSeq - 1}`;
      }
      if (reason !== null) {
        if (recovery === "strict") throw new WalCorruptionError(seg.path, 0, reason);
        log(`Recovery: ${seg.path} is corrupt at byte offset 0: ${reason}`);
        await dropFrom(i);
        if (i === 0) nextSeq = Math.max(seg.first_seq, afterSeq + 1);
        break;
      }
      if (i === 0 && seg.first_seq > afterSeq + 1) {
        throw new WalSequenceError(
          `WAL ${dir} starts at seq ${seg.first_seq} but records after seq ${afterSeq} are needed`,
        );
      }

      const scan = scanSegment(buf, seg.first_seq);
      let stop = false;
      if (scan.bad !== null) {
        const { offset, reason } = scan.bad;
        const validAt = findValidRecordAfter(buf, offset + 1, scan.next_seq);
        if (isLast && validAt < 0) {
          await truncateFile(seg.path, scan.good_end);
          log(
            `Truncated torn tail of ${seg.path}: ${buf.length - scan.good_end} bytes from byte ` +
              `offset ${offset} (${reason})`,
          );
          dirty = true;
        } else {
          const why = validAt >= 0
            ? `${reason}, followed by a valid record at byte offset ${validAt}`
            : `${reason}, in a segment followed by ${found.length - 1 - i} more`;
          if (recovery === "strict") throw new WalCorruptionError(seg.path, offset, why);
          log(`Recovery: ${seg.path} is corrupt at byte offset ${offset}: ${why}`);
          await dropFrom(i + 1);
          await truncateFile(seg.path, scan.good_end);
          log(`Recovery dropped ${buf.length - scan.good_end} bytes of ${seg.path} from ${offset}`);
          stop = true;
        }
      }
      for (const entry of scan.entries) {
        if (entry.seq > afterSeq && options.onRecord) await options.onRecord(entry);
      }
      kept.push(seg);
      nextSeq = scan.next_seq;
      activeBytes = scan.good_end;
      if (stop) break;
    }
    if (dirty) await syncDir();

    if (kept.length === 0) {
      kept.push(await createSegment(dir, nextSeq));
      dirSyncs++;
      activeBytes = SEGMENT_HEADER_BYTES;
    }
    if (afterSeq > nextSeq - 1) {
      throw new WalSequenceError(
        `WAL ${dir} ends at seq ${nextSeq - 1} but the caller already has records up to seq ` +
          `${afterSeq}`,
      );
    }
    const active = kept[kept.length - 1];
    const handle = await fsp.open(active.path, "r+");
    return new Wal(dir, limits, log, kept, handle, activeBytes, nextSeq, dirSyncs);
  }

  /** Sequence number the next append will get. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  /** Highest sequence number known durable (every record up to it is durable). */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  stats(): WalStats {
    return {
      ...this.#stats,
      segments: this.#segments.length,
      queued_bytes: this.#queuedBytes,
    };
  }

  /** The log's segment files, oldest first. */
  segments(): WalSegment[] {
    return this.#segments.map((s) => ({ ...s }));
  }

  /** Appends one record; resolves with its sequence number once it is durable. */
  append(type: number, payload: Uint8Array): Promise<number> {
    try {
      this.#admit([{ type, payload }]);
    } catch (e) {
      return Promise.reject(e);
    }
    const seq = this.#encode(type, payload);
    return this.#wait(seq) as Promise<number>;
  }

  /** Appends records together (one write, one sync); resolves with their sequence numbers. */
  appendMany(records: readonly { type: number; payload: Uint8Array }[]): Promise<number[]> {
    try {
      this.#admit(records);
    } catch (e) {
      return Promise.reject(e);
    }
    if (records.length === 0) return Promise.resolve([]);
    const seqs = records.map((r) => this.#encode(r.type, r.payload));
    return this.#wait(seqs) as Promise<number[]>;
  }

  /**
   * Deletes the segments whose records all have `seq <= seq` (covered by a snapshot). The active
   * segment is never deleted. Resolves with the number of segments deleted.
   */
  truncateBefore(seq: number): Promise<number> {
    checkSeq(seq, "Sequence number");
    if (this.#closed) return Promise.reject(new WalClosedError(this.dir));
    const run = this.#maintenance.then(async () => {
      let deleted = 0;
      while (this.#segments.length > 1 && this.#segments[1].first_seq - 1 <= seq) {
        await fsp.unlink(this.#segments[0].path);
        this.#segments.shift();
        deleted++;
      }
      if (deleted > 0) {
        await fsyncDir(this.dir);
        this.#stats.dir_syncs++;
      }
      return deleted;
    });
    this.#maintenance = run.catch(() => {});
    return run;
  }

  /** Waits for queued appends, then closes the active segment. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#flushing !== null) await this.#flushing;
    await this.#maintenance;
    await this.#handle.close();
  }

  #newBatch(): Batch {
    const sink = new BufferSink({ initial_bytes: 4096, bytes_max: this.queue_bytes_max });
    return {
      sink,
      writer: new BinaryWriter(sink, { buffer_bytes: 16 * 1024 }),
      waiters: [],
      bytes: 0,
      records: 0,
      first_seq: 0,
      last_seq: 0,
    };
  }

  /** Throws unless every record may be queued now. */
  #admit(records: readonly { type: number; payload: Uint8Array }[]): void {
    if (this.#failed !== null) throw this.#failed;
    if (this.#closed) throw new WalClosedError(this.dir);
    let total = 0;
    for (const { type, payload } of records) {
      if (!Number.isInteger(type) || type < 0 || type > 255) {
        throw new RangeError(`WAL record type ${type} is not an unsigned 8-bit integer`);
      }
      if (!(payload instanceof Uint8Array)) {
        throw new TypeError(`WAL record payload ${String(payload)} is not a Uint8Array`);
      }
      if (payload.length > this.record_bytes_max) {
        throw new WalRecordTooLargeError(payload.length, this.record_bytes_max);
      }
      total += RECORD_HEADER_BYTES + payload.length;
    }
    if (this.#queuedBytes + total > this.queue_bytes_max) {
      throw new WalQueueFullError(total, this.#queuedBytes, this.queue_bytes_max);
    }
  }

  /** Frames one record into the pending batch and returns its sequence number. */
  #encode(type: number, payload: Uint8Array): number {
    const seq = this.#nextSeq++;
    const s = this.#scratch;
    s.setUint32(0, seq % TWO_32, true);
    s.setUint32(4, Math.floor(seq / TWO_32), true);
    s.setUint8(8, type);
    const crc = crc32(payload, crc32(new Uint8Array(s.buffer)));
    const b = this.#pending;
    const w = b.writer;
    w.u32(payload.length);
    w.u32(crc);
    w.u64(seq);
    w.u8(type);
    w.raw(payload);
    const size = RECORD_HEADER_BYTES + payload.length;
    b.bytes += size;
    if (b.records === 0) b.first_seq = seq;
    b.records++;
    b.last_seq = seq;
    this.#queuedBytes += size;
    return seq;
  }

  #wait(value: number | number[]): Promise<number | number[]> {
    const promise = new Promise<number | number[]>((resolve, reject) => {
      this.#pending.waiters.push({ resolve, reject, value });
    });
    if (this.#flushing === null) this.#flushing = this.#flushLoop();
    return promise;
  }

  async #flushLoop(): Promise<void> {
    try {
      // Let appends issued in the same turn join the first batch.
      await Promise.resolve();
      while (this.#pending.records > 0 && this.#failed === null) {
        const batch = this.#pending;
        this.#pending = this.#newBatch();
        try {
          batch.writer.flush();
          const bytes = batch.sink.view();
          if (bytes.length !== batch.bytes) {
            throw new Error(`Batch framed ${bytes.length} bytes but accounted ${batch.bytes}`);
          }
          if (batch.first_seq !== this.#lastSeq + 1) {
            throw new Error(`Batch starts at seq ${batch.first_seq} after seq ${this.#lastSeq}`);
          }
          const path = this.#segments[this.#segments.length - 1].path;
          await writeFully(this.#handle, path, bytes, this.#segmentBytes);
          await this.#handle.datasync();
          this.#stats.syncs++;
          this.#segmentBytes += bytes.length;
        } catch (e) {
          this.#fail(e, batch);
          return;
        }
        this.#stats.records += batch.records;
        this.#stats.bytes += batch.bytes;
        this.#queuedBytes -= batch.bytes;
        this.#lastSeq = batch.last_seq;
        for (const w of batch.waiters) w.resolve(w.value);
        if (this.#segmentBytes >= this.segment_bytes_max) {
          try {
            await this.#rotate();
          } catch (e) {
            this.#fail(e, null);
            return;
          }
        }
      }
    } finally {
      this.#flushing = null;
    }
  }

  async #rotate(): Promise<void> {
    const first = this.#lastSeq + 1;
    const segment = await createSegment(this.dir, first);
    this.#stats.dir_syncs++;
    const handle = await fsp.open(segment.path, "r+");
    const old = this.#handle;
    this.#handle = handle;
    this.#segments.push(segment);
    this.#segmentBytes = SEGMENT_HEADER_BYTES;
    await old.close();
  }

  #fail(cause: unknown, batch: Batch | null): void {
    const error = new WalWriteFailedError(this.dir, cause);
    this.#failed = error;
    this.#logger(error.message);
    for (const b of [batch, this.#pending]) {
      if (b === null) continue;
      for (const w of b.waiters) w.reject(error);
      this.#queuedBytes -= b.bytes;
    }
    this.#pending = this.#newBatch();
  }
}

async function truncateFile(path: string, size: number): Promise<void> {
  const handle = await fsp.open(path, "r+");
  try {
    await handle.truncate(size);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Creates an empty segment durably: temp file, header, fsync, rename, directory fsync. */
async function createSegment(dir: string, firstSeq: number): Promise<WalSegment> {
  const path = join(dir, segmentName(firstSeq));
  if (fs.existsSync(path)) {
    throw new WalSequenceError(`WAL segment ${path} already exists; refusing to overwrite it`);
  }
  await writeFileAtomic(
    path,
    (handle, temp) => writeFully(handle, temp, encodeSegmentHeader(firstSeq), 0),
  );
  return { path, first_seq: firstSeq };
}

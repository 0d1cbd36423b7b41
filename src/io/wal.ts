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
 * file is unknown after a failed fsync), except when the error says the disk is full:
 *
 * **Full disk** (ENOSPC, EDQUOT; `disk_full.ts`). The batch that hit it, and every append queued
 * behind it, is rejected with `DiskFullError` naming the data directory: none of it was
 * acknowledged, and their sequence numbers are given out again. The active segment is then cut
 * back to the end of its last durable record (ftruncate + fsync), so no byte of a refused record
 * stays in the file: a refused write never appears later, not even after a restart. When that
 * cut fails too, the log stays "disk full": every later batch first retries the cut and is
 * refused while it fails, so the log takes writes again by itself, without a restart, as soon as
 * space is freed. The same holds for a rotation (new segment, then CONTROL) that fails for lack
 * of space: batches are refused until a retry completes it, and the log never grows past a
 * segment it could not rotate from. A sync that fails with ENOSPC is handled the same way: every
 * byte before the cut was made durable by an earlier sync that succeeded, and the failed one only
 * concerned the bytes that are cut. Residual window: if the cut itself cannot be made durable and
 * the machine (not just the process) loses power before a later cut succeeds, records of a refused
 * batch that had reached the disk whole could be replayed; a process crash cannot do this, the
 * kernel already holds the cut file.
 *
 * Control file `CONTROL` (36 bytes, little-endian), replaced atomically (`writeFileAtomic`):
 *
 * | Offset | Size | Field        | Meaning                                                  |
 * | ------ | ---- | ------------ | -------------------------------------------------------- |
 * | 0      | 4    | magic        | `0x4C435756` (the bytes `VWCL`)                          |
 * | 4      | 4    | version      | `1`                                                      |
 * | 8      | 8    | first_seq    | first seq of the oldest segment (u64)                    |
 * | 16     | 8    | last_seq     | first seq of the newest segment (u64)                    |
 * | 24     | 8    | snapshot_seq | seq the owner's newest snapshot covers, 0 if none (u64)  |
 * | 32     | 4    | crc          | CRC-32 of bytes 0..31                                    |
 *
 * Crash-safe order: a segment is created, then CONTROL names it (so at most one segment beyond
 * CONTROL's last can exist, and is accepted); CONTROL drops a segment before it is deleted (so
 * segments older than CONTROL's first are accepted). A segment named by CONTROL that is missing
 * is never accepted silently: the newest missing is corruption naming the file (strict refuses;
 * truncate logs that its records are lost and starts without them); the oldest missing is an
 * error only if records after `afterSeq` were in it. A directory without CONTROL (older data)
 * opens as before and gets one.
 *
 * Recovery on `open`: segments are scanned in order. Records the caller does not need
 * (`seq <= afterSeq`, covered by its snapshot) are only walked, header to header, without
 * reading or checksumming their payloads (a restart reads the part of the log it replays); a
 * walk that finds a header out of place scans that segment whole instead. Damage found in
 * covered records is logged and skipped in both modes: the scan
 * resumes at the next valid record, and a gap between segments is accepted when it lies wholly
 * at or below `afterSeq`. A bad record (short, checksum mismatch, wrong sequence number) in the
 * last segment with no valid record anywhere after it is a torn tail from a crash: the file is
 * truncated to the last good record and fsynced. A bad record followed by a valid one, a bad
 * record in any earlier segment, a bad segment header or a gap in sequence numbers is corruption:
 * `open` throws {@link WalCorruptionError} naming the file and byte offset, unless
 * `recovery: "truncate"` is set, in which case the log is cut there: the cut bytes (the rest of
 * the damaged segment, as `<segment>.from-<offset>`) and later segments are first moved into
 * `cut-<timestamp>/` inside the log directory, fsynced, and the place is logged; nothing is
 * deleted. Records before the failure point may already have been passed to `onRecord` when
 * `open` throws; the caller must discard that state.
 *
 * One process owns a log directory at a time; this module does not lock it (dir_lock.ts does,
 * for the node's and the router's data directories).
 *
 * Size: ~1,070 lines. Recovery (scan, covered damage, CONTROL, cuts set aside) and the append
 * path (group commit, rotation, truncation) must agree on one segment and CONTROL order, so
 * they stay in one file; the pure codecs (segment header, CONTROL, record scan) are the
 * candidates to move to a `wal_format.ts` when it grows again.
 * @module
 */
import * as fs from "node:fs";
import type { FileHandle } from "node:fs/promises";
import * as fsp from "node:fs/promises";
import { dirname, join } from "node:path";
import { BinaryReader, BinaryWriter, BufferSink } from "./binary.ts";
import { crc32 } from "./crc32.ts";
import { diskFullCode, DiskFullError, WRITE_REFUSED } from "./disk_full.ts";
import { fsyncDir, syncFile, truncateOpen, writeFileAtomic, writeFully } from "./fs_util.ts";

export const SEGMENT_MAGIC = 0x4C415756;
export const SEGMENT_VERSION = 1;
export const SEGMENT_HEADER_BYTES = 20;
export const RECORD_HEADER_BYTES = 17;

export const CONTROL_MAGIC = 0x4C435756;
export const CONTROL_VERSION = 1;
export const CONTROL_BYTES = 36;
/** Name of the control file inside the log directory. */
export const CONTROL_NAME = "CONTROL";

const SEGMENT_NAME = /^wal-(\d{20})\.log$/;
const SEGMENT_TEMP_NAME = /^(wal-\d{20}\.log|CONTROL)\.tmp$/;
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
  /** The data directory a {@link DiskFullError} names. Default: the log's own directory. */
  data_dir?: string;
  /** Segment reads started earlier ({@link prefetchSegments}), taken instead of reading again. */
  prefetched?: SegmentPrefetch;
}

/** Segment reads started ahead of {@link Wal.open}: segment path → its bytes (null: failed). */
export type SegmentPrefetch = Map<string, Promise<Uint8Array | null>>;

/** Most segment bytes {@link prefetchSegments} reads ahead (the rest is read as open goes). */
const PREFETCH_BYTES_MAX = 128 * 2 ** 20;

/**
 * Starts reading the log's segments in `dir` that begin after the snapshot seq its CONTROL file
 * records, oldest first, up to 128 MiB in all, and returns
 * at once: the reads run on libuv's thread pool while the caller does other work (a collection
 * loads its snapshot meanwhile), and {@link Wal.open} given the result (`prefetched`) takes the
 * bytes from there instead of waiting for a read then. Nothing else writes the log before open
 * (the data directory is locked), so the bytes are the file's. A read that failed yields null
 * and open reads the file itself (reporting a failure as it would have).
 */
export function prefetchSegments(dir: string): SegmentPrefetch {
  const out: SegmentPrefetch = new Map();
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return out; // open reports what is wrong
  }
  const segments = names.filter((n) => SEGMENT_NAME.test(n)).sort();
  // Segments that begin at or before the snapshot CONTROL records are left to open, which
  // reads only their records after the snapshot the caller loads (readAfterCovered).
  let coveredSeq = 0;
  try {
    const control = parseControl(fs.readFileSync(join(dir, CONTROL_NAME)));
    if (!("reason" in control)) coveredSeq = control.snapshot_seq;
  } catch {
    // No CONTROL (older data, a new log): every segment is read ahead.
  }
  let bytes = 0;
  for (const name of segments) {
    if (Number(SEGMENT_NAME.exec(name)![1]) <= coveredSeq) continue;
    const path = join(dir, name);
    let size: number;
    try {
      size = fs.statSync(path).size;
    } catch {
      break;
    }
    if (bytes + size > PREFETCH_BYTES_MAX) break;
    bytes += size;
    out.set(path, readSegment(path).catch(() => null));
  }
  return out;
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
  /** Records refused since open because the disk was full. */
  disk_full_refused: number;
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

/** Contents of the log's CONTROL file. */
export interface WalControl {
  /** First seq of the oldest segment. */
  first_seq: number;
  /** First seq of the newest segment. */
  last_seq: number;
  /** Seq the owner's newest snapshot covers (0: none recorded). */
  snapshot_seq: number;
}

function encodeControl(c: WalControl): Uint8Array {
  const sink = new BufferSink({ initial_bytes: CONTROL_BYTES });
  const w = new BinaryWriter(sink, { buffer_bytes: 64 });
  w.u32(CONTROL_MAGIC);
  w.u32(CONTROL_VERSION);
  w.u64(c.first_seq);
  w.u64(c.last_seq);
  w.u64(c.snapshot_seq);
  w.u32(w.crc32());
  w.flush();
  const bytes = sink.view();
  if (bytes.length !== CONTROL_BYTES) {
    throw new Error(`CONTROL encoded to ${bytes.length} bytes, expected ${CONTROL_BYTES}`);
  }
  return bytes;
}

/** Parses a CONTROL file; returns its fields or a reason it is bad. */
export function parseControl(buf: Uint8Array): WalControl | { reason: string } {
  if (buf.length !== CONTROL_BYTES) {
    return { reason: `file of ${buf.length} bytes where ${CONTROL_BYTES} were expected` };
  }
  const r = new BinaryReader(buf);
  const magic = r.u32();
  if (magic !== CONTROL_MAGIC) return { reason: `bad magic ${hex(magic)}` };
  const version = r.u32();
  if (version !== CONTROL_VERSION) return { reason: `unsupported control version ${version}` };
  const fields: number[] = [];
  for (let i = 0; i < 3; i++) {
    const lo = r.u32();
    fields.push(r.u32() * TWO_32 + lo);
  }
  const stored = r.u32();
  const computed = crc32(buf.subarray(0, CONTROL_BYTES - 4));
  if (stored !== computed) {
    return { reason: `checksum mismatch (stored ${hex(stored)}, computed ${hex(computed)})` };
  }
  if (!fields.every((f) => Number.isSafeInteger(f))) {
    return { reason: `field ${fields.join("/")} is not a safe integer` };
  }
  const [first_seq, last_seq, snapshot_seq] = fields;
  if (first_seq > last_seq) return { reason: `first seq ${first_seq} after last seq ${last_seq}` };
  return { first_seq, last_seq, snapshot_seq };
}

/** Replaces the CONTROL file of `dir` atomically. */
async function writeControl(dir: string, c: WalControl): Promise<void> {
  const bytes = encodeControl(c);
  await writeFileAtomic(
    join(dir, CONTROL_NAME),
    (handle, temp) => writeFully(handle, temp, bytes, 0),
  );
}

function sameControl(a: WalControl | null, b: WalControl): boolean {
  return a !== null && a.first_seq === b.first_seq && a.last_seq === b.last_seq &&
    a.snapshot_seq === b.snapshot_seq;
}

/** A stretch of damaged records the caller does not need, skipped by the scan. */
interface SkippedDamage {
  offset: number;
  /** Seq the damaged record should have had. */
  seq: number;
  reason: string;
  /** Offset of the next valid record, or -1 when the rest of the segment is unusable. */
  resumed_at: number;
  /** First seq after the skip (the valid record's), or the seq the damage began at. */
  resumed_seq: number;
}

interface ScanResult {
  entries: WalEntry[];
  /** End of the last good record. */
  good_end: number;
  /** Sequence number the next record must have. */
  next_seq: number;
  bad: { offset: number; reason: string } | null;
  /** Damage at or below `afterSeq`, skipped. */
  skipped: SkippedDamage[];
  /** True when the segment's tail after the last good record is covered damage, left alone. */
  tail_skipped: boolean;
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

/**
 * Scans a segment's records from byte `from` (the record with seq `firstSeq`; by default the
 * first record after the header). A bad record whose seq is at most `afterSeq` is skipped when the
 * next valid record's seq is at most `afterSeq + 1` (every skipped record is covered); when no
 * valid record follows, the tail is left alone and `tail_skipped` set.
 */
function scanSegment(
  buf: Uint8Array,
  firstSeq: number,
  afterSeq: number,
  from = SEGMENT_HEADER_BYTES,
): ScanResult {
  const r = new BinaryReader(buf);
  const entries: WalEntry[] = [];
  const skipped: SkippedDamage[] = [];
  let off = from;
  let seq = firstSeq;
  let goodEnd = off;
  while (off < buf.length) {
    const size = checkRecord(r, buf, off, seq);
    if (typeof size === "string") {
      if (seq <= afterSeq) {
        const at = findValidRecordAfter(buf, off + 1, seq + 1);
        const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
        const atSeq = at < 0 ? -1 : view.getUint32(at + 12, true) * TWO_32 +
          view.getUint32(at + 8, true);
        if (at < 0) {
          skipped.push({ offset: off, seq, reason: size, resumed_at: -1, resumed_seq: seq });
          return {
            entries,
            good_end: goodEnd,
            next_seq: seq,
            bad: null,
            skipped,
            tail_skipped: true,
          };
        }
        if (atSeq - 1 <= afterSeq) {
          skipped.push({ offset: off, seq, reason: size, resumed_at: at, resumed_seq: atSeq });
          off = at;
          seq = atSeq;
          continue;
        }
      }
      return {
        entries,
        good_end: off,
        next_seq: seq,
        bad: { offset: off, reason: size },
        skipped,
        tail_skipped: false,
      };
    }
    const type = buf[off + 16];
    entries.push({ seq, type, payload: buf.subarray(off + RECORD_HEADER_BYTES, off + size) });
    off += size;
    seq++;
    goodEnd = off;
  }
  return { entries, good_end: off, next_seq: seq, bad: null, skipped, tail_skipped: false };
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

/** Bytes read per step of {@link readAfterCovered}'s walk over record headers. */
const WALK_WINDOW_BYTES = 1 << 16;
/** The same after a record longer than that window (the next header is alone in its window). */
const WALK_SPARSE_BYTES = 1 << 12;

/**
 * The bytes of segment `path` a caller whose snapshot covers every record up to `afterSeq`
 * needs: the segment header and the records after `afterSeq`, in a buffer of the file's size
 * (the covered records' bytes are left zero: they are never read, and the pages of an
 * untouched allocation cost no memory), with the offset and seq of the first record after
 * `afterSeq` (the file's size when there is none). The covered records are only walked: their
 * 17-byte headers are read (in windows of 64 KiB, 4 KiB after a record longer than that, so
 * a segment of large records is mostly skipped) and must carry the seqs `firstSeq`, `firstSeq + 1`, … in order with lengths inside
 * the file; their payloads are neither read nor checksummed (the snapshot holds their effect).
 * Null when the walk finds anything else (a seq out of order, a length past the end, a header
 * cut short): the caller then reads and scans the whole segment, which handles damage as
 * before. A restart whose snapshot covers most of the log so reads only the part it replays.
 */
function readAfterCovered(
  path: string,
  firstSeq: number,
  afterSeq: number,
): { buf: Uint8Array; offset: number; seq: number } | null {
  const fd = fs.openSync(path, "r");
  try {
    const size = fs.fstatSync(fd).size;
    if (size < SEGMENT_HEADER_BYTES) return null;
    const win = new Uint8Array(Math.min(WALK_WINDOW_BYTES, size));
    const view = new DataView(win.buffer);
    let winStart = 0;
    let winLength = 0;
    let off = SEGMENT_HEADER_BYTES;
    let seq = firstSeq;
    let lastLength = 0;
    while (seq <= afterSeq && off < size) {
      if (off + RECORD_HEADER_BYTES > size) return null;
      if (off < winStart || off + RECORD_HEADER_BYTES > winStart + winLength) {
        // After a record longer than a window, the next header is alone in its window: a
        // small read does (a log of 400 KB batches reads 4 KiB per record, not 64).
        const want = lastLength > win.length ? WALK_SPARSE_BYTES : win.length;
        winLength = fs.readSync(fd, win, 0, Math.min(want, size - off), off);
        winStart = off;
        if (winLength < RECORD_HEADER_BYTES) return null;
      }
      const p = off - winStart;
      const length = view.getUint32(p, true);
      const recordSeq = view.getUint32(p + 12, true) * TWO_32 + view.getUint32(p + 8, true);
      if (recordSeq !== seq || RECORD_HEADER_BYTES + length > size - off) return null;
      lastLength = length;
      off += RECORD_HEADER_BYTES + length;
      seq++;
    }
    const buf = new Uint8Array(size);
    readFullySync(fd, buf.subarray(0, SEGMENT_HEADER_BYTES), 0);
    readFullySync(fd, buf.subarray(off), off);
    return { buf, offset: off, seq };
  } catch {
    return null; // read again whole (and any failure reported) by the caller
  } finally {
    fs.closeSync(fd);
  }
}

/** Fills `into` from `fd` at `position`; throws when the file ends first. */
function readFullySync(fd: number, into: Uint8Array, position: number): void {
  let done = 0;
  while (done < into.length) {
    const n = fs.readSync(fd, into, done, Math.min(into.length - done, 1 << 30), position + done);
    if (n <= 0) throw new Error(`file ended at byte ${position + done}`);
    done += n;
  }
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
  /** The data directory a {@link DiskFullError} names. */
  readonly data_dir: string;
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
  #stats = { records: 0, bytes: 0, syncs: 0, dir_syncs: 0, disk_full_refused: 0 };
  #control: WalControl;
  #controlWrite: Promise<void> = Promise.resolve();
  /** Bytes of a refused batch may lie past `#segmentBytes`: cut them before the next write. */
  #tailDirty = false;
  /** A rotation failed for lack of space: finish it before the next write. */
  #rotateDue = false;
  /** Records refused since the disk was last found full (0: writes are going through). */
  #refusedRun = 0;
  /**
   * Takes the seconds of each group commit's write + fdatasync (a metrics histogram; the
   * storage layer sets it). One observation per batch, not per append.
   */
  sync_observer: { observe(seconds: number): void } | null = null;

  private constructor(
    dir: string,
    options: Required<
      Pick<WalOptions, "segment_bytes_max" | "record_bytes_max" | "queue_bytes_max">
    >,
    logger: (message: string) => void,
    dataDir: string,
    segments: WalSegment[],
    handle: FileHandle,
    segmentBytes: number,
    nextSeq: number,
    dirSyncs: number,
    control: WalControl,
  ) {
    this.dir = dir;
    this.segment_bytes_max = options.segment_bytes_max;
    this.record_bytes_max = options.record_bytes_max;
    this.queue_bytes_max = options.queue_bytes_max;
    this.data_dir = dataDir;
    this.#logger = logger;
    this.#segments = segments;
    this.#handle = handle;
    this.#segmentBytes = segmentBytes;
    this.#nextSeq = nextSeq;
    this.#lastSeq = nextSeq - 1;
    this.#stats.dir_syncs = dirSyncs;
    this.#control = control;
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

    // The control file: which segments must be there.
    const controlPath = join(dir, CONTROL_NAME);
    let control: WalControl | null = null;
    if (names.includes(CONTROL_NAME)) {
      const parsed = parseControl(await readSegment(controlPath));
      if ("reason" in parsed) {
        if (recovery === "strict") throw new WalCorruptionError(controlPath, 0, parsed.reason);
        log(`Recovery: ${controlPath} is corrupt (${parsed.reason}); rebuilding it`);
      } else {
        control = parsed;
      }
    } else if (found.length > 0) {
      log(`WAL ${dir} has no ${CONTROL_NAME} file (older data); creating one`);
    }
    let needFresh = false;
    if (control !== null) {
      const has = (seq: number) => found.some((s) => s.first_seq === seq);
      if (!has(control.last_seq)) {
        const missing = join(dir, segmentName(control.last_seq));
        const reason = `segment named by ${CONTROL_NAME} as the newest is missing; the records ` +
          `from seq ${control.last_seq} on are lost`;
        if (recovery === "strict") throw new WalCorruptionError(missing, 0, reason);
        log(`Recovery: WAL segment ${missing} is missing: ${reason}; starting without them`);
      }
      if (control.first_seq !== control.last_seq && !has(control.first_seq)) {
        const missing = join(dir, segmentName(control.first_seq));
        const next = found.find((s) => s.first_seq > control!.first_seq);
        const end = next === undefined ? Infinity : next.first_seq - 1;
        const reason = `segment named by ${CONTROL_NAME} as the oldest is missing (records ` +
          `${control.first_seq}..${end === Infinity ? "?" : end})`;
        if (end > afterSeq) throw new WalCorruptionError(missing, 0, reason);
        log(`WAL segment ${missing} is missing: ${reason}, all covered by seq ${afterSeq}`);
      }
      const extra = found.filter((s) => s.first_seq > control!.last_seq).length;
      if (extra > 1) {
        log(`WAL ${dir} has ${extra} segments newer than ${CONTROL_NAME} names; keeping them`);
      }
    }

    const kept: WalSegment[] = [];
    let nextSeq = afterSeq + 1;
    let activeBytes = SEGMENT_HEADER_BYTES;
    const snapshotSeq = control?.snapshot_seq ?? 0;

    /**
     * Truncate-mode cut in segment `at` from byte `from` (`from` 0: the whole segment): CONTROL
     * first stops naming what goes, then the cut bytes and later segments move aside, then the
     * segment is truncated.
     */
    const cut = async (at: number, from: number, buf: Uint8Array) => {
      if (at > 0 || from > 0) {
        const lastKept = from > 0 ? found[at] : found[at - 1];
        await writeControl(dir, {
          first_seq: found[0].first_seq,
          last_seq: lastKept.first_seq,
          snapshot_seq: snapshotSeq,
        });
      } else {
        await fsp.rm(controlPath, { force: true });
        await fsyncDir(dir);
      }
      const aside = await uniqueAsideDir(dir);
      if (from > 0 && from < buf.length) {
        const piece = buf.subarray(from);
        const name = `${segmentName(found[at].first_seq)}.from-${from}`;
        await writeFileAtomic(join(aside, name), (h, temp) => writeFully(h, temp, piece, 0));
        log(
          `Recovery copied ${piece.length} bytes of ${found[at].path} from ${from} to ` +
            `${join(aside, name)}`,
        );
      }
      for (let j = found.length - 1; j >= (from > 0 ? at + 1 : at); j--) {
        const size = (await fsp.stat(found[j].path)).size;
        const to = join(aside, segmentName(found[j].first_seq));
        await fsp.rename(found[j].path, to);
        log(`Recovery dropped segment ${found[j].path} (${size} bytes), moved to ${to}`);
      }
      await fsyncDir(aside);
      await fsyncDir(dir);
      if (from > 0 && from < buf.length) {
        await truncateFile(found[at].path, from);
        log(`Recovery dropped ${buf.length - from} bytes of ${found[at].path} from ${from}`);
      }
      dirty = true;
    };

    for (let i = 0; i < found.length; i++) {
      const seg = found[i];
      const isLast = i === found.length - 1;
      const ahead = options.prefetched?.get(seg.path);
      options.prefetched?.delete(seg.path);
      let buf = ahead === undefined ? null : await ahead;
      // Where the scan starts: after the records the caller's snapshot covers, when a walk over
      // their headers found them framed as expected (readAfterCovered); else at the first record.
      let scanFrom = SEGMENT_HEADER_BYTES;
      let scanSeq = seg.first_seq;
      if (buf === null && seg.first_seq <= afterSeq) {
        const partial = readAfterCovered(seg.path, seg.first_seq, afterSeq);
        if (partial !== null) {
          buf = partial.buf;
          scanFrom = partial.offset;
          scanSeq = partial.seq;
        }
      }
      buf ??= await readSegment(seg.path);
      const header = parseSegmentHeader(buf);
      let reason: string | null = null;
      if ("reason" in header) reason = header.reason;
      else if (header.first_seq !== seg.first_seq) {
        reason = `header first seq ${header.first_seq} does not match the file name`;
      } else if (i > 0 && seg.first_seq !== nextSeq) {
        if (seg.first_seq > nextSeq && seg.first_seq - 1 <= afterSeq) {
          log(
            `WAL ${dir}: records ${nextSeq}..${seg.first_seq - 1} before ${seg.path} are ` +
              `missing or damaged; all are covered by seq ${afterSeq}`,
          );
        } else {
          reason = `segment starts at seq ${seg.first_seq} but the previous one ends at seq ` +
            `${nextSeq - 1}`;
        }
      }
      if (reason !== null) {
        if (recovery === "strict") throw new WalCorruptionError(seg.path, 0, reason);
        log(`Recovery: ${seg.path} is corrupt at byte offset 0: ${reason}`);
        await cut(i, 0, buf);
        if (i === 0) nextSeq = Math.max(seg.first_seq, afterSeq + 1);
        break;
      }
      if (i === 0 && seg.first_seq > afterSeq + 1) {
        const hint = snapshotSeq > afterSeq
          ? ` (${CONTROL_NAME} records a snapshot at seq ${snapshotSeq}: is it missing?)`
          : "";
        throw new WalSequenceError(
          `WAL ${dir} starts at seq ${seg.first_seq} but records after seq ${afterSeq} are ` +
            `needed${hint}`,
        );
      }

      const scan = scanSegment(buf, scanSeq, afterSeq, scanFrom);
      for (const d of scan.skipped) {
        log(
          `WAL segment ${seg.path} is damaged at byte offset ${d.offset} (${d.reason}); the ` +
            `records from seq ${d.seq} ` +
            (d.resumed_at < 0
              ? `to the end of the segment`
              : `before seq ${d.resumed_seq} (byte offset ${d.resumed_at})`) +
            ` are covered by seq ${afterSeq} and skipped`,
        );
      }
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
          await cut(i, scan.good_end, buf);
          stop = true;
        }
      }
      for (const entry of scan.entries) {
        if (entry.seq > afterSeq && options.onRecord) await options.onRecord(entry);
      }
      kept.push(seg);
      nextSeq = scan.next_seq;
      activeBytes = scan.good_end;
      // Covered damage at the end of the newest segment: never append after it.
      needFresh = scan.tail_skipped;
      if (stop) break;
    }
    if (dirty) await syncDir();

    if (afterSeq > nextSeq - 1) {
      const lost = control !== null && !found.some((s) => s.first_seq === control!.last_seq);
      if (!needFresh && !(lost && recovery === "truncate")) {
        throw new WalSequenceError(
          `WAL ${dir} ends at seq ${nextSeq - 1} but the caller already has records up to seq ` +
            `${afterSeq}`,
        );
      }
      log(`WAL ${dir}: records end at seq ${nextSeq - 1}; continuing after seq ${afterSeq}`);
      nextSeq = afterSeq + 1;
      needFresh = true;
    }
    if (kept.length === 0 || needFresh) {
      kept.push(await createSegment(dir, nextSeq));
      dirSyncs++;
      activeBytes = SEGMENT_HEADER_BYTES;
    }
    const want: WalControl = {
      first_seq: kept[0].first_seq,
      last_seq: kept[kept.length - 1].first_seq,
      snapshot_seq: snapshotSeq,
    };
    if (!sameControl(control, want)) {
      await writeControl(dir, want);
      dirSyncs++;
    }
    const active = kept[kept.length - 1];
    const handle = await fsp.open(active.path, "r+");
    return new Wal(
      dir,
      limits,
      log,
      options.data_dir ?? dir,
      kept,
      handle,
      activeBytes,
      nextSeq,
      dirSyncs,
      want,
    );
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

  /**
   * True while the log refuses appends because the disk was found full (a torn tail not cut
   * yet, a rotation not finished, or the last batch refused); the next append re-checks.
   */
  get diskFull(): boolean {
    return this.#tailDirty || this.#rotateDue || this.#refusedRun > 0;
  }

  /** The log's CONTROL file as last written. */
  control(): WalControl {
    return { ...this.#control };
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
   * segment is never deleted. `snapshotSeq`, when given, is recorded in CONTROL as the seq the
   * owner's newest snapshot covers. CONTROL is rewritten before any segment is deleted. Resolves
   * with the number of segments deleted.
   */
  truncateBefore(seq: number, snapshotSeq?: number): Promise<number> {
    checkSeq(seq, "Sequence number");
    if (snapshotSeq !== undefined) checkSeq(snapshotSeq, "Snapshot sequence number");
    if (this.#closed) return Promise.reject(new WalClosedError(this.dir));
    const run = this.#maintenance.then(async () => {
      let count = 0;
      while (
        count + 1 < this.#segments.length && this.#segments[count + 1].first_seq - 1 <= seq
      ) {
        count++;
      }
      const want: WalControl = {
        first_seq: this.#segments[count].first_seq,
        last_seq: this.#control.last_seq,
        snapshot_seq: snapshotSeq ?? this.#control.snapshot_seq,
      };
      if (!sameControl(this.#control, want)) {
        // Rotation may be writing CONTROL too: both run on the flush loop's segment list.
        await this.#writeControl(want);
      }
      let deleted = 0;
      while (deleted < count) {
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
    if (this.#tailDirty && this.#failed === null) {
      try {
        await this.#restore();
      } catch (e) {
        this.#logger(
          `WAL ${this.dir}: could not cut the refused tail of ` +
            `${this.#activePath()} at close: ${(e as Error).message}`,
        );
      }
    }
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
        if (this.#tailDirty || this.#rotateDue) {
          // The disk was full: finish the cut or rotation first. This is the cheap re-check
          // every write makes while the disk is full; the batch is refused while it fails.
          try {
            await this.#restore();
          } catch (e) {
            if (diskFullCode(e) === null) {
              this.#fail(e, batch);
              return;
            }
            this.#refuse(e, this.#withdraw(batch));
            continue;
          }
        }
        const path = this.#activePath();
        try {
          batch.writer.flush();
          const bytes = batch.sink.view();
          if (bytes.length !== batch.bytes) {
            throw new Error(`Batch framed ${bytes.length} bytes but accounted ${batch.bytes}`);
          }
          if (batch.first_seq !== this.#lastSeq + 1) {
            throw new Error(`Batch starts at seq ${batch.first_seq} after seq ${this.#lastSeq}`);
          }
          const t0 = this.sync_observer !== null ? performance.now() : 0;
          await writeFully(this.#handle, path, bytes, this.#segmentBytes);
          await syncFile(this.#handle, path, { data_only: true });
          this.#stats.syncs++;
          this.sync_observer?.observe((performance.now() - t0) / 1000);
          this.#segmentBytes += bytes.length;
        } catch (e) {
          if (diskFullCode(e) === null) {
            this.#fail(e, batch);
            return;
          }
          // Part of the batch may be in the file: cut it before answering (when the cut fails
          // too, the next write retries it first). Appends made meanwhile queue behind.
          this.#tailDirty = true;
          const refused = this.#withdraw(batch);
          try {
            await this.#restore();
          } catch (r) {
            if (diskFullCode(r) === null) {
              this.#fail(r, null);
              for (const w of refused.waiters) w.reject(this.#failed!);
              return;
            }
          }
          this.#refuse(e, refused);
          continue;
        }
        if (this.#refusedRun > 0) {
          this.#logger(
            `WAL ${this.dir}: space is available again in data directory ${this.data_dir}; ` +
              `writes resume (${this.#refusedRun} records were refused while it was full)`,
          );
          this.#refusedRun = 0;
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
            if (diskFullCode(e) === null) {
              this.#fail(e, null);
              return;
            }
            // Retried before the next write (see #restore).
            this.#rotateDue = true;
            this.#logger(
              `WAL ${this.dir}: rotating to a new segment failed, the disk is full ` +
                `(${(e as Error).message}); writes are refused until a retry succeeds`,
            );
          }
        }
      }
    } finally {
      this.#flushing = null;
    }
  }

  #activePath(): string {
    return this.#segments[this.#segments.length - 1].path;
  }

  /**
   * Repairs what a full disk left: cuts the active segment back to its last durable record
   * (ftruncate + fsync) and finishes a rotation that failed. Throws (the disk still full, or
   * worse) when it cannot; the state stays and the next write retries.
   */
  async #restore(): Promise<void> {
    if (this.#tailDirty) {
      const path = this.#activePath();
      await truncateOpen(this.#handle, path, this.#segmentBytes);
      await syncFile(this.#handle, path);
      this.#tailDirty = false;
      this.#logger(
        `WAL ${this.dir}: cut ${path} back to byte ${this.#segmentBytes}, the end of its last ` +
          `durable record (the refused batch left nothing behind)`,
      );
    }
    if (this.#rotateDue) {
      await this.#rotate();
      this.#rotateDue = false;
      this.#logger(`WAL ${this.dir}: rotated to ${this.#activePath()} after the disk had filled`);
    }
  }

  /**
   * Rotates to a new segment starting after the last durable record, then names it in CONTROL.
   * A retry after a failure for lack of space resumes where it stopped: the segment may already
   * be active (CONTROL failed), or exist without being active (it holds only its header and
   * was never named: it is replaced).
   */
  async #rotate(): Promise<void> {
    const first = this.#lastSeq + 1;
    if (this.#segments[this.#segments.length - 1].first_seq !== first) {
      const segment = await createSegment(this.dir, first, { replace: this.#rotateDue });
      this.#stats.dir_syncs++;
      const handle = await fsp.open(segment.path, "r+");
      const old = this.#handle;
      this.#handle = handle;
      this.#segments.push(segment);
      this.#segmentBytes = SEGMENT_HEADER_BYTES;
      await old.close();
    }
    // Created first, then named: a crash in between leaves one segment beyond CONTROL's last,
    // which `open` accepts.
    if (this.#control.last_seq !== first) {
      await this.#writeControl({ ...this.#control, last_seq: first });
    }
  }

  /**
   * Writes CONTROL; serialised, and always from the current segment list's ends so a rotation
   * and a truncation running together cannot write a stale one.
   */
  #writeControl(want: WalControl): Promise<void> {
    const run = this.#controlWrite.then(async () => {
      const next: WalControl = {
        first_seq: Math.max(
          want.first_seq,
          this.#control.first_seq,
          this.#segments[0].first_seq,
        ),
        last_seq: this.#segments[this.#segments.length - 1].first_seq,
        snapshot_seq: Math.max(want.snapshot_seq, this.#control.snapshot_seq),
      };
      await writeControl(this.dir, next);
      this.#control = next;
      this.#stats.dir_syncs++;
    });
    this.#controlWrite = run.catch(() => {});
    return run;
  }

  /**
   * Takes `batch` and every append queued behind it out of the log: their sequence numbers are
   * given out again (none of them reached the file durably). Their callers are answered by
   * {@link refuse}.
   */
  #withdraw(batch: Batch): { waiters: Waiter[]; records: number } {
    const waiters: Waiter[] = [];
    let records = 0;
    for (const b of [batch, this.#pending]) {
      waiters.push(...b.waiters);
      this.#queuedBytes -= b.bytes;
      records += b.records;
    }
    this.#pending = this.#newBatch();
    this.#nextSeq = this.#lastSeq + 1;
    return { waiters, records };
  }

  /** Rejects withdrawn appends with a {@link DiskFullError} naming the data directory. */
  #refuse(cause: unknown, refused: { waiters: Waiter[]; records: number }): void {
    const error = cause instanceof DiskFullError ? cause : new DiskFullError(
      this.data_dir,
      (cause as NodeJS.ErrnoException)?.path ?? this.#activePath(),
      cause,
      WRITE_REFUSED,
    );
    for (const w of refused.waiters) w.reject(error);
    this.#stats.disk_full_refused += refused.records;
    if (this.#refusedRun === 0) {
      this.#logger(`WAL ${this.dir}: ${error.message}: ${(cause as Error)?.message ?? cause}`);
    }
    this.#refusedRun += refused.records;
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

/** Creates (durably) a fresh `cut-<timestamp>` directory inside the log directory. */
async function uniqueAsideDir(dir: string): Promise<string> {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  for (let n = 0;; n++) {
    const path = join(dir, n === 0 ? `cut-${stamp}` : `cut-${stamp}-${n}`);
    try {
      await fsp.mkdir(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") continue;
      throw e;
    }
    await fsyncDir(dir);
    return path;
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

/**
 * Creates an empty segment durably: temp file, header, fsync, rename, directory fsync. With
 * `replace`, an existing file of that name (an unnamed segment a failed rotation left, holding
 * only its header) is replaced atomically instead of refused.
 */
async function createSegment(
  dir: string,
  firstSeq: number,
  options: { replace?: boolean } = {},
): Promise<WalSegment> {
  const path = join(dir, segmentName(firstSeq));
  if (options.replace !== true && fs.existsSync(path)) {
    throw new WalSequenceError(`WAL segment ${path} already exists; refusing to overwrite it`);
  }
  await writeFileAtomic(
    path,
    (handle, temp) => writeFully(handle, temp, encodeSegmentHeader(firstSeq), 0),
  );
  return { path, first_seq: firstSeq };
}

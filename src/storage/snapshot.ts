/**
 * Snapshot container files: `snapshot-<covered seq, 20 digits>.snap` in a directory.
 *
 * | Offset      | Size | Field         | Meaning                                            |
 * | ----------- | ---- | ------------- | -------------------------------------------------- |
 * | 0           | 4    | magic         | `0x504E5356` (the bytes `VSNP`)                    |
 * | 4           | 4    | version       | `6` (`1` to `5` still load; see below)            |
 * | 8           | 8    | seq           | last WAL sequence number the snapshot covers (u64) |
 * | 16          | 8    | created_ms    | creation time, ms since the Unix epoch (u64)       |
 * | 24          | 8    | payload_bytes | payload length P (u64)                             |
 * | 32          | P    | payload       | written by the caller through a `BinaryWriter`     |
 * | 32 + P      | 4    | crc           | CRC-32 of the payload, continued over bytes 0..31  |
 * | 36 + P      | 4    | end_magic     | `0x444E4556` (the bytes `VEND`)                    |
 *
 * The container is the same in every version; the version says what the payload holds, and the
 * consumer is told which it reads (`loadNewestSnapshot`'s `consume(r, seq, version)`). For
 * collections (src/storage/collection.ts): version 1 is the index image alone, version 2 the
 * index image followed by the per-point version table, version 3 adds the payload table,
 * version 4 the payload index definitions, version 5 the key table (src/storage/key_table.ts),
 * version 6 puts a bulk section before all of version 5's (the id map and the version table as
 * their hash tables' own arrays, so a load takes them whole instead of hashing every point).
 *
 * The checksum covers the header and the payload; it is computed as
 * `crc32(header, crc32(payload))` (payload first) so the payload can be streamed before its length
 * is known and the header is written last.
 *
 * Writing goes to a temporary file (`<final name>.tmp-<random>`), which is fsynced, renamed to its
 * final name, and the directory fsynced; then all but the newest `keep` snapshots (by seq) are
 * deleted. Loading tries snapshots newest first and skips (with a log line) any that fail
 * validation; temporary leftovers from interrupted writes are removed. Loading streams the
 * payload from the file to the consumer ({@link BinaryReader.streaming}), checksumming it as it
 * passes, so the large arrays are read once, straight into their final place (an index's WASM
 * memory and link table), and the file is never held whole in memory; the checksum is checked
 * once the consumer is done, and a consumer's value from a file that fails it is dropped.
 * @module
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import { dirname, join } from "node:path";
import { BinaryReader, BinaryWriter, BufferSink } from "../io/binary.ts";
import { FileSink } from "../io/file_sink.ts";
import { crc32 } from "../io/crc32.ts";
import { fsyncDir, writeFileAtomic, writeFullySync } from "../io/fs_util.ts";

export const SNAPSHOT_MAGIC = 0x504E5356;
export const SNAPSHOT_END_MAGIC = 0x444E4556;
/** Version written. */
export const SNAPSHOT_VERSION = 6;
/** Versions loaded. */
export const SNAPSHOT_VERSIONS_READ: readonly number[] = [1, 2, 3, 4, 5, 6];
export const SNAPSHOT_HEADER_BYTES = 32;
export const SNAPSHOT_TRAILER_BYTES = 8;
/** Default largest payload written or loaded: 8 GiB. */
export const SNAPSHOT_PAYLOAD_BYTES_MAX = 8 * 2 ** 30;

const SNAPSHOT_NAME = /^snapshot-(\d{20})\.snap$/;
const SNAPSHOT_TEMP_NAME = /^snapshot-\d{20}\.snap\.tmp-/;
const READ_CHUNK_BYTES = 1 << 26;

/** A snapshot file fails validation; `reason` says why. */
export class SnapshotFormatError extends Error {
  constructor(readonly file: string, readonly reason: string) {
    super(`Snapshot ${file} is invalid: ${reason}`);
    this.name = "SnapshotFormatError";
  }
}

export interface SnapshotFile {
  path: string;
  seq: number;
}

export interface WriteSnapshotOptions {
  /** How many snapshots to keep, newest by seq, after writing. Default 2. */
  keep?: number;
  /** Creation time stored in the header. Default `Date.now()`. */
  created_ms?: number;
  /** Largest payload accepted. Default {@link SNAPSHOT_PAYLOAD_BYTES_MAX}. */
  payload_bytes_max?: number;
  /** Receives a line per deleted old snapshot. */
  logger?: (message: string) => void;
}

export interface WrittenSnapshot {
  path: string;
  seq: number;
  payload_bytes: number;
  /** Older snapshots deleted by retention. */
  deleted: string[];
}

export interface LoadSnapshotOptions {
  /** Receives a line per skipped snapshot and removed temporary file. */
  logger?: (message: string) => void;
  /** Larger files are skipped as invalid. Default {@link SNAPSHOT_PAYLOAD_BYTES_MAX}. */
  payload_bytes_max?: number;
}

export interface LoadedSnapshot<T> {
  value: T;
  seq: number;
  /** The container version the file was written with. */
  version: number;
  created_ms: number;
  path: string;
  /**
   * Milliseconds (start-up logs): reading the file and checksumming it, both within the whole
   * load (`load_ms`, the consumer's work included).
   */
  read_ms: number;
  checksum_ms: number;
  load_ms: number;
}

/** A validated snapshot: the header fields and a view of the payload. */
export interface ParsedSnapshot {
  seq: number;
  version: number;
  created_ms: number;
  payload: Uint8Array;
}

/** The file name of the snapshot covering `seq`. */
export function snapshotName(seq: number): string {
  return `snapshot-${String(seq).padStart(20, "0")}.snap`;
}

function defaultLogger(message: string): void {
  console.warn(`snapshot: ${message}`);
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}

function encodeHeader(seq: number, createdMs: number, payloadBytes: number): Uint8Array {
  const sink = new BufferSink({ initial_bytes: SNAPSHOT_HEADER_BYTES });
  const w = new BinaryWriter(sink, { buffer_bytes: SNAPSHOT_HEADER_BYTES });
  w.u32(SNAPSHOT_MAGIC);
  w.u32(SNAPSHOT_VERSION);
  w.u64(seq);
  w.u64(createdMs);
  w.u64(payloadBytes);
  w.flush();
  return sink.view();
}

/**
 * Validates a whole snapshot file's bytes (e.g. one received over the network). `file` only
 * names it in errors; `expectedSeq`, when given, must match the header.
 */
export function parseSnapshot(
  bytes: Uint8Array,
  file: string,
  expectedSeq?: number,
): ParsedSnapshot {
  const fail = (reason: string): never => {
    throw new SnapshotFormatError(file, reason);
  };
  const overhead = SNAPSHOT_HEADER_BYTES + SNAPSHOT_TRAILER_BYTES;
  if (bytes.length < overhead) {
    fail(`file of ${bytes.length} bytes is shorter than the ${overhead}-byte header and trailer`);
  }
  const r = new BinaryReader(bytes);
  const magic = r.u32();
  if (magic !== SNAPSHOT_MAGIC) fail(`bad magic ${hex(magic)}`);
  const version = r.u32();
  if (!SNAPSHOT_VERSIONS_READ.includes(version)) fail(`unsupported version ${version}`);
  let seq = 0;
  let createdMs = 0;
  let payloadBytes = 0;
  try {
    seq = r.u64Number();
    createdMs = r.u64Number();
    payloadBytes = r.u64Number();
  } catch (e) {
    fail(`header field out of range: ${(e as Error).message}`);
  }
  if (expectedSeq !== undefined && seq !== expectedSeq) {
    fail(`header seq ${seq} does not match the expected seq ${expectedSeq}`);
  }
  if (payloadBytes !== bytes.length - overhead) {
    fail(
      `payload length ${payloadBytes} does not match the file size ` +
        `(${payloadBytes + overhead} bytes expected, ${bytes.length} found)`,
    );
  }
  const payload = r.raw(payloadBytes);
  const stored = r.u32();
  const endMagic = r.u32();
  if (endMagic !== SNAPSHOT_END_MAGIC) fail(`bad end magic ${hex(endMagic)}`);
  const computed = crc32(bytes.subarray(0, SNAPSHOT_HEADER_BYTES), crc32(payload));
  if (stored !== computed) {
    fail(`checksum mismatch (stored ${hex(stored)}, computed ${hex(computed)})`);
  }
  return { seq, version, created_ms: createdMs, payload };
}

/** Lists the directory's snapshot files, newest (highest seq) first. */
export async function listSnapshots(dir: string): Promise<SnapshotFile[]> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return [];
    throw e;
  }
  const out: SnapshotFile[] = [];
  for (const name of names) {
    const m = SNAPSHOT_NAME.exec(name);
    if (m === null) continue;
    const seq = Number(m[1]);
    if (Number.isSafeInteger(seq)) out.push({ path: join(dir, name), seq });
  }
  return out.sort((a, b) => b.seq - a.seq);
}

/**
 * Writes a snapshot covering WAL records up to `seq`: `produce` writes the payload through the
 * given writer (streamed to a temporary file), which is then made durable under its final name.
 */
export async function writeSnapshot(
  dir: string,
  seq: number,
  produce: (w: BinaryWriter) => void | Promise<void>,
  options: WriteSnapshotOptions = {},
): Promise<WrittenSnapshot> {
  if (!Number.isSafeInteger(seq) || seq < 0) {
    throw new RangeError(`Snapshot seq ${seq} is not a non-negative safe integer`);
  }
  const keep = options.keep ?? 2;
  if (!Number.isInteger(keep) || keep < 1) {
    throw new RangeError(`Snapshot keep count ${keep} must be an integer of at least 1`);
  }
  const createdMs = options.created_ms ?? Date.now();
  if (!Number.isSafeInteger(createdMs) || createdMs < 0) {
    throw new RangeError(`Creation time ${createdMs} is not a non-negative safe integer`);
  }
  const payloadMax = options.payload_bytes_max ?? SNAPSHOT_PAYLOAD_BYTES_MAX;
  const log = options.logger ?? defaultLogger;

  const created = await fsp.mkdir(dir, { recursive: true });
  if (created !== undefined) await fsyncDir(dirname(created));
  const path = join(dir, snapshotName(seq));
  let payloadBytes = 0;
  await writeFileAtomic(path, async (handle, temp) => {
    const fd = handle.fd;
    const sink = new FileSink(fd, temp, {
      position: SNAPSHOT_HEADER_BYTES,
      bytes_max: payloadMax,
    });
    const w = new BinaryWriter(sink);
    await produce(w);
    w.flush();
    payloadBytes = w.bytesWritten;
    if (sink.bytes_written !== payloadBytes) {
      throw new Error(
        `Snapshot sink got ${sink.bytes_written} bytes, writer wrote ${payloadBytes}`,
      );
    }
    const header = encodeHeader(seq, createdMs, payloadBytes);
    const trailer = new Uint8Array(SNAPSHOT_TRAILER_BYTES);
    const tv = new DataView(trailer.buffer);
    tv.setUint32(0, crc32(header, w.crc32()), true);
    tv.setUint32(4, SNAPSHOT_END_MAGIC, true);
    writeFullySync(fd, temp, trailer, SNAPSHOT_HEADER_BYTES + payloadBytes);
    writeFullySync(fd, temp, header, 0);
    // Assertion on our own side of the durable write: the file is exactly what we meant.
    const size = fs.fstatSync(fd).size;
    const expected = SNAPSHOT_HEADER_BYTES + payloadBytes + SNAPSHOT_TRAILER_BYTES;
    if (size !== expected) {
      throw new Error(`Snapshot temporary file ${temp} is ${size} bytes, expected ${expected}`);
    }
  }, { temp_suffix: `.tmp-${randomBytes(6).toString("hex")}` });

  const deleted: string[] = [];
  for (const old of (await listSnapshots(dir)).slice(keep)) {
    await fsp.unlink(old.path);
    deleted.push(old.path);
    log(`Deleted old snapshot ${old.path}`);
  }
  if (deleted.length > 0) await fsyncDir(dir);
  return { path, seq, payload_bytes: payloadBytes, deleted };
}

/** A snapshot file being loaded: its header, and its payload streamed from the file. */
interface OpenedSnapshot {
  fd: number;
  seq: number;
  version: number;
  created_ms: number;
  payload_bytes: number;
  header: Uint8Array;
}

/** Opens `path` and validates its header and size; a string says why it is invalid. */
function openSnapshot(path: string, seq: number, bytesMax: number): OpenedSnapshot | string {
  const fd = fs.openSync(path, "r");
  let ok = false;
  try {
    const size = fs.fstatSync(fd).size;
    if (size > bytesMax) return `file of ${size} bytes exceeds the limit of ${bytesMax} bytes`;
    const overhead = SNAPSHOT_HEADER_BYTES + SNAPSHOT_TRAILER_BYTES;
    if (size < overhead) {
      return `file of ${size} bytes is shorter than the ${overhead}-byte header and trailer`;
    }
    const header = new Uint8Array(SNAPSHOT_HEADER_BYTES);
    if (fs.readSync(fd, header, 0, header.length, 0) !== header.length) {
      return "file shrank while being read";
    }
    const r = new BinaryReader(header);
    const magic = r.u32();
    if (magic !== SNAPSHOT_MAGIC) return `bad magic ${hex(magic)}`;
    const version = r.u32();
    if (!SNAPSHOT_VERSIONS_READ.includes(version)) return `unsupported version ${version}`;
    let fields: number[];
    try {
      fields = [r.u64Number(), r.u64Number(), r.u64Number()];
    } catch (e) {
      return `header field out of range: ${(e as Error).message}`;
    }
    const [headerSeq, createdMs, payloadBytes] = fields;
    if (headerSeq !== seq) return `header seq ${headerSeq} does not match the expected seq ${seq}`;
    if (payloadBytes !== size - overhead) {
      return `payload length ${payloadBytes} does not match the file size ` +
        `(${payloadBytes + overhead} bytes expected, ${size} found)`;
    }
    ok = true;
    return {
      fd,
      seq,
      version,
      created_ms: createdMs,
      payload_bytes: payloadBytes,
      header,
    };
  } finally {
    if (!ok) fs.closeSync(fd);
  }
}

/** Reads `into.length` bytes of `fd` at `position` (a string: the file ended first). */
function readFullyAt(fd: number, into: Uint8Array, position: number): void {
  let done = 0;
  while (done < into.length) {
    const n = fs.readSync(
      fd,
      into,
      done,
      Math.min(READ_CHUNK_BYTES, into.length - done),
      position + done,
    );
    if (n <= 0) throw new SnapshotTruncated(position + done);
    done += n;
  }
}

/** The file ended before its header said (it shrank while being read). */
class SnapshotTruncated extends Error {
  constructor(readonly at: number) {
    super(`file shrank to ${at} bytes while being read`);
  }
}

/**
 * Loads the newest valid snapshot in `dir` through `consume`, which must read the whole payload.
 * Invalid snapshots are skipped with a log line; returns null when none is valid (the caller then
 * replays the whole WAL). Errors thrown by `consume` propagate.
 */
export async function loadNewestSnapshot<T>(
  dir: string,
  consume: (r: BinaryReader, seq: number, version: number) => T | Promise<T>,
  options: LoadSnapshotOptions = {},
): Promise<LoadedSnapshot<T> | null> {
  const log = options.logger ?? defaultLogger;
  const bytesMax = (options.payload_bytes_max ?? SNAPSHOT_PAYLOAD_BYTES_MAX) +
    SNAPSHOT_HEADER_BYTES + SNAPSHOT_TRAILER_BYTES;
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return null;
    throw e;
  }
  let removed = 0;
  for (const name of names) {
    if (!SNAPSHOT_TEMP_NAME.test(name)) continue;
    await fsp.rm(join(dir, name), { force: true });
    log(`Removed leftover temporary snapshot ${join(dir, name)}`);
    removed++;
  }
  if (removed > 0) await fsyncDir(dir);

  for (const file of await listSnapshots(dir)) {
    const t0 = performance.now();
    const opened = openSnapshot(file.path, file.seq, bytesMax);
    if (typeof opened === "string") {
      log(`Skipping snapshot ${file.path}: ${opened}`);
      continue;
    }
    // The payload streams from the file into its final places (the index's arrays, WASM
    // memory) through the consumer, checksummed as it passes: one read of each byte, no copy
    // of the whole file. The checksum is known only at the end, so a consumer's error on a
    // file whose checksum fails is that file's damage (skipped), not a bug (thrown).
    const fd = opened.fd;
    let position = SNAPSHOT_HEADER_BYTES;
    let crc = 0;
    let readMs = 0;
    let checksumMs = 0;
    const source = (into: Uint8Array) => {
      const r0 = performance.now();
      readFullyAt(fd, into, position);
      const r1 = performance.now();
      position += into.length;
      crc = crc32(into, crc);
      readMs += r1 - r0;
      checksumMs += performance.now() - r1;
    };
    const payloadEnd = SNAPSHOT_HEADER_BYTES + opened.payload_bytes;
    /** Reads what the consumer left, then the trailer: null when valid, else why not. */
    const verify = (): string | null => {
      const rest = new Uint8Array(Math.min(1 << 20, payloadEnd - position));
      while (position < payloadEnd) {
        source(rest.subarray(0, Math.min(rest.length, payloadEnd - position)));
      }
      const trailer = new Uint8Array(SNAPSHOT_TRAILER_BYTES);
      readFullyAt(fd, trailer, payloadEnd);
      const tv = new DataView(trailer.buffer);
      const endMagic = tv.getUint32(4, true);
      if (endMagic !== SNAPSHOT_END_MAGIC) return `bad end magic ${hex(endMagic)}`;
      const stored = tv.getUint32(0, true);
      const computed = crc32(opened.header, crc);
      if (stored !== computed) {
        return `checksum mismatch (stored ${hex(stored)}, computed ${hex(computed)})`;
      }
      return null;
    };
    let value: T;
    let invalid: string | null;
    let unread = 0;
    try {
      try {
        const r = BinaryReader.streaming(opened.payload_bytes, source);
        value = await consume(r, opened.seq, opened.version);
        unread = r.remaining;
      } catch (e) {
        if (e instanceof SnapshotTruncated) throw e;
        const why = verify();
        if (why === null) throw e;
        log(`Skipping snapshot ${file.path}: ${why}`);
        continue;
      }
      invalid = verify();
    } catch (e) {
      if (!(e instanceof SnapshotTruncated)) throw e;
      log(`Skipping snapshot ${file.path}: ${e.message}`);
      continue;
    } finally {
      fs.closeSync(fd);
    }
    if (invalid !== null) {
      log(`Skipping snapshot ${file.path}: ${invalid}`);
      continue;
    }
    if (unread !== 0) {
      throw new SnapshotFormatError(
        file.path,
        `the consumer left ${unread} of ${opened.payload_bytes} payload bytes unread`,
      );
    }
    const total = performance.now() - t0;
    return {
      value,
      seq: opened.seq,
      version: opened.version,
      created_ms: opened.created_ms,
      path: file.path,
      read_ms: readMs,
      checksum_ms: checksumMs,
      load_ms: total,
    };
  }
  return null;
}

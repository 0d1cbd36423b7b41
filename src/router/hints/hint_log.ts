/**
 * Durable hint log of one storage node: the writes the router accepted for the node but could
 * not deliver to it, in the order the router accepted them.
 *
 * Layout of the node's hint directory (`<router data dir>/hints/<node address>/`):
 *
 * | path        | what                                                                   |
 * | ----------- | ---------------------------------------------------------------------- |
 * | `wal/`      | a write-ahead log (`src/io/wal.ts`) of hint records                 |
 * | `delivered` | the delivered watermark: every hint with seq ≤ it reached the node      |
 *
 * Hint records are WAL records of `src/common/records.ts` (put, delete, put_batch,
 * create_collection, drop_collection) whose `collection` field names the collection.
 *
 * The `delivered` file (20 bytes, little-endian), replaced atomically (temporary name, fsync,
 * rename, directory fsync):
 *
 * | Offset | Size | Field      | Meaning                                           |
 * | ------ | ---- | ---------- | ------------------------------------------------- |
 * | 0      | 4    | magic      | `0x544E4948` (the bytes `HINT`)                   |
 * | 4      | 4    | version    | `1`                                               |
 * | 8      | 8    | seq        | highest delivered hint seq (u64)                  |
 * | 16     | 4    | crc        | CRC-32 of bytes 0..15                             |
 *
 * Life of a hint: {@link HintLog.append} queues it in memory at once (so queue order is call
 * order) and resolves once it is durable in the WAL; only durable hints are handed out by
 * {@link HintLog.peek}. The replayer delivers them in order and reports each with
 * {@link HintLog.markDelivered}, which resolves the hint's `delivery` promise;
 * {@link HintLog.commit} then writes the watermark durably, removes the delivered hints from
 * memory and lets the WAL drop segments they alone occupied. A crash between delivery and
 * commit only re-delivers a suffix of hints that were already applied, in the same order and
 * with no direct write to the node in between (the router routes writes into the queue while
 * it is not empty), so the node ends in the same state.
 *
 * Limits: at most `hints_max` hints and `hint_bytes_max` payload bytes pending; an append past
 * either throws {@link HintQueueFullError} (the router then fails the client's write with
 * RESOURCE_EXHAUSTED rather than acknowledge a write some owner would never get).
 *
 * @module
 */

import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { BinaryReader, BinaryWriter, BufferSink } from "../../io/binary.ts";
import { crc32 } from "../../io/crc32.ts";
import { type Hint, type HintQueue, HintQueueFullError } from "./queue.ts";
import { writeFileAtomic, writeFully } from "../../io/fs_util.ts";
import { encodeRecord, type WalRecord } from "../../common/records.ts";
import { Wal } from "../../io/wal.ts";

export const DELIVERED_MAGIC = 0x544E4948;
export const DELIVERED_VERSION = 1;
export const DELIVERED_BYTES = 20;

/** Default most hints pending per node. */
export const DEFAULT_HINTS_MAX = 100_000;
/** Default most payload bytes pending per node (hints are also held in memory). */
export const DEFAULT_HINT_BYTES_MAX = 256 * 2 ** 20;
/** Size at which the hint WAL starts a new segment (so delivered hints free disk soon). */
export const HINT_SEGMENT_BYTES_MAX = 4 * 2 ** 20;
/** Largest single hint payload: a full 64 MiB PutBatch plus framing. */
export const HINT_RECORD_BYTES_MAX = 65 * 2 ** 20;

/** The `delivered` file is damaged. */
export class HintLogCorruptionError extends Error {
  constructor(readonly path: string, reason: string) {
    super(`Hint watermark ${path} is corrupt: ${reason}`);
    this.name = "HintLogCorruptionError";
  }
}

interface Entry extends Hint {
  durable: boolean;
  settled: boolean;
  resolve: (delivered: boolean) => void;
}

/** Options of {@link HintLog.open}. */
export interface HintLogOptions {
  hints_max?: number;
  hint_bytes_max?: number;
  logger?: (message: string) => void;
}

function newEntry(type: number, payload: Uint8Array, seq: number, durable: boolean): Entry {
  let resolve!: (delivered: boolean) => void;
  const delivery = new Promise<boolean>((r) => (resolve = r));
  return { seq, type, payload, delivery, durable, settled: false, resolve };
}

/** Encodes the watermark file. */
export function encodeDelivered(seq: number): Uint8Array {
  const sink = new BufferSink({ initial_bytes: DELIVERED_BYTES, bytes_max: DELIVERED_BYTES });
  const w = new BinaryWriter(sink, { buffer_bytes: 32 });
  w.u32(DELIVERED_MAGIC);
  w.u32(DELIVERED_VERSION);
  w.u64(seq);
  w.u32(w.crc32());
  w.flush();
  return sink.bytes();
}

/** Decodes the watermark file; throws {@link HintLogCorruptionError}. */
export function decodeDelivered(path: string, bytes: Uint8Array): number {
  if (bytes.length !== DELIVERED_BYTES) {
    throw new HintLogCorruptionError(
      path,
      `${bytes.length} bytes where ${DELIVERED_BYTES} were expected`,
    );
  }
  const r = new BinaryReader(bytes);
  const magic = r.u32();
  if (magic !== DELIVERED_MAGIC) {
    throw new HintLogCorruptionError(path, `bad magic 0x${magic.toString(16)}`);
  }
  const version = r.u32();
  if (version !== DELIVERED_VERSION) {
    throw new HintLogCorruptionError(path, `unsupported version ${version}`);
  }
  const seq = r.u64Number();
  const stored = r.u32();
  const computed = crc32(bytes.subarray(0, 16));
  if (stored !== computed) {
    throw new HintLogCorruptionError(
      path,
      `checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`,
    );
  }
  return seq;
}

/** The hint log of one node. Create with {@link HintLog.open}. */
export class HintLog implements HintQueue {
  readonly node: string;
  readonly dir: string;
  readonly hints_max: number;
  readonly hint_bytes_max: number;
  readonly #wal: Wal;
  readonly #log: (message: string) => void;
  /** Pending hints in seq order; entries before `#next` were handed out by peek. */
  #queue: Entry[];
  #delivered_seq: number;
  #pending_bytes = 0;
  /** Hints handed out by peek and settled, waiting for commit. */
  #settled_count = 0;
  #closed = false;

  private constructor(
    node: string,
    dir: string,
    wal: Wal,
    queue: Entry[],
    delivered_seq: number,
    limits: { hints_max: number; hint_bytes_max: number },
    log: (message: string) => void,
  ) {
    this.node = node;
    this.dir = dir;
    this.#wal = wal;
    this.#queue = queue;
    this.#delivered_seq = delivered_seq;
    this.hints_max = limits.hints_max;
    this.hint_bytes_max = limits.hint_bytes_max;
    this.#log = log;
    for (const e of queue) this.#pending_bytes += e.payload.length;
  }

  /** Opens (creating if needed) the hint log of `node` in `dir`, loading pending hints. */
  static async open(node: string, dir: string, options: HintLogOptions = {}): Promise<HintLog> {
    const hints_max = options.hints_max ?? DEFAULT_HINTS_MAX;
    const hint_bytes_max = options.hint_bytes_max ?? DEFAULT_HINT_BYTES_MAX;
    if (!Number.isSafeInteger(hints_max) || hints_max < 1) {
      throw new RangeError(`hints_max ${hints_max} must be a positive integer`);
    }
    if (!Number.isSafeInteger(hint_bytes_max) || hint_bytes_max < 1) {
      throw new RangeError(`hint_bytes_max ${hint_bytes_max} must be a positive integer`);
    }
    const log = options.logger ?? ((m: string) => console.error(m));
    await fsp.mkdir(dir, { recursive: true });
    const path = join(dir, "delivered");
    let delivered = 0;
    try {
      delivered = decodeDelivered(path, new Uint8Array(await fsp.readFile(path)));
    } catch (e) {
      if ((e as { code?: unknown }).code !== "ENOENT") throw e;
    }
    const queue: Entry[] = [];
    const wal = await Wal.open(join(dir, "wal"), {
      afterSeq: delivered,
      segment_bytes_max: HINT_SEGMENT_BYTES_MAX,
      record_bytes_max: HINT_RECORD_BYTES_MAX,
      logger: (m) => log(`hints ${node}: ${m}`),
      onRecord: (e) => {
        queue.push(newEntry(e.type, e.payload.slice(), e.seq, true));
      },
    });
    const hl = new HintLog(node, dir, wal, queue, delivered, { hints_max, hint_bytes_max }, log);
    if (queue.length > 0) {
      log(`hints ${node}: ${queue.length} undelivered hints loaded from ${dir}`);
    }
    if (queue.length > hints_max || hl.#pending_bytes > hint_bytes_max) {
      log(
        `WARNING hints ${node}: ${queue.length} hints of ${hl.#pending_bytes} bytes exceed the ` +
          `limits (${hints_max} hints, ${hint_bytes_max} bytes); new hints are refused until ` +
          `they are delivered`,
      );
    }
    return hl;
  }

  /** Hints not yet removed by commit (durable or not). */
  get pending(): number {
    return this.#queue.length;
  }

  /** Payload bytes of the pending hints. */
  get pending_bytes(): number {
    return this.#pending_bytes;
  }

  /** Highest seq durably recorded as delivered. */
  get delivered_seq(): number {
    return this.#delivered_seq;
  }

  /**
   * Queues `record` for the node. Its place in the queue is fixed when this is called; the
   * promise resolves once the hint is durable. Throws {@link HintQueueFullError} at the limits.
   */
  append(record: WalRecord): Promise<Hint> {
    if (this.#closed) return Promise.reject(new Error(`Hint log of node ${this.node} is closed`));
    let encoded;
    try {
      encoded = encodeRecord(record);
    } catch (e) {
      return Promise.reject(e);
    }
    const bytes = encoded.payload.length;
    if (
      this.#queue.length + 1 > this.hints_max || this.#pending_bytes + bytes > this.hint_bytes_max
    ) {
      return Promise.reject(
        new HintQueueFullError(
          this.node,
          this.#queue.length,
          this.#pending_bytes,
          this.hints_max,
          this.hint_bytes_max,
        ),
      );
    }
    const expected = this.#wal.nextSeq;
    const entry = newEntry(encoded.type, encoded.payload, 0, false);
    const durable = this.#wal.append(encoded.type, encoded.payload);
    // The WAL numbers appends in call order, synchronously.
    if (this.#wal.nextSeq !== expected + 1) {
      throw new Error(`Hint WAL seq went from ${expected} to ${this.#wal.nextSeq} on one append`);
    }
    entry.seq = expected;
    this.#queue.push(entry);
    this.#pending_bytes += bytes;
    return durable.then(
      (seq) => {
        if (seq !== entry.seq) {
          throw new Error(`Hint WAL acknowledged seq ${seq} for the hint queued as ${entry.seq}`);
        }
        entry.durable = true;
        return entry;
      },
      (e) => {
        // The WAL refuses all appends after a failed write; the hint never became durable.
        this.#drop(entry);
        throw e;
      },
    );
  }

  /** Up to `max` durable hints not yet settled, in order (stops at the first non-durable). */
  peek(max: number): Hint[] {
    const out: Hint[] = [];
    for (let i = this.#settled_count; i < this.#queue.length && out.length < max; i++) {
      const e = this.#queue[i];
      if (!e.durable) break;
      out.push(e);
    }
    return out;
  }

  /**
   * Records that the next unsettled hint (which must have `seq`) reached the node
   * (`delivered`) or was discarded as undeliverable; resolves its `delivery` promise.
   */
  markDelivered(seq: number, delivered: boolean): void {
    const e = this.#queue[this.#settled_count];
    if (e === undefined || e.seq !== seq || !e.durable) {
      throw new Error(
        `Hint ${seq} of node ${this.node} settled out of order (next is ${e?.seq ?? "none"})`,
      );
    }
    e.settled = true;
    this.#settled_count++;
    e.resolve(delivered);
  }

  /**
   * Makes the settled hints' delivery durable (watermark), removes them from the queue and
   * drops WAL segments they alone occupied. Returns the number removed.
   */
  async commit(): Promise<number> {
    const n = this.#settled_count;
    if (n === 0) return 0;
    const seq = this.#queue[n - 1].seq;
    if (seq <= this.#delivered_seq) {
      throw new Error(`Hint watermark would move back from ${this.#delivered_seq} to ${seq}`);
    }
    await this.#writeDelivered(seq);
    // A decode of what we wrote must give the same value (assert both sides of the write).
    const check = decodeDelivered(
      join(this.dir, "delivered"),
      new Uint8Array(await fsp.readFile(join(this.dir, "delivered"))),
    );
    if (check !== seq) throw new Error(`Hint watermark reads back ${check}, wrote ${seq}`);
    this.#delivered_seq = seq;
    const removed = this.#queue.splice(0, n);
    for (const e of removed) this.#pending_bytes -= e.payload.length;
    this.#settled_count = 0;
    await this.#wal.truncateBefore(seq);
    return n;
  }

  /** Waits for pending appends and closes the WAL. Unsettled hints stay on disk. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#wal.close();
  }

  async #writeDelivered(seq: number): Promise<void> {
    const path = join(this.dir, "delivered");
    await writeFileAtomic(
      path,
      (handle, temp) => writeFully(handle, temp, encodeDelivered(seq), 0),
    );
  }

  #drop(entry: Entry): void {
    const i = this.#queue.indexOf(entry);
    if (i >= this.#settled_count) {
      this.#queue.splice(i, 1);
      this.#pending_bytes -= entry.payload.length;
      entry.resolve(false);
      this.#log(`hints ${this.node}: hint ${entry.seq} was not made durable and is dropped`);
    }
  }
}

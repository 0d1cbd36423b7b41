/**
 * A named collection on one storage node: an HNSW index made durable by its own write-ahead
 * log and snapshots.
 *
 * Directory layout (under the node's data directory):
 *
 * | path                               | what                                           |
 * |------------------------------------|------------------------------------------------|
 * | `collections/<name>/wal/`          | WAL segments (`src/storage/wal.ts`)            |
 * | `collections/<name>/snapshots/`    | snapshot files (`src/storage/snapshot.ts`)      |
 *
 * The collection's parameters are the first WAL record (CREATE_COLLECTION) and are also in
 * every snapshot (the index header), so no third file format is needed.
 *
 * Write path: validate → append to the WAL (durable after its group commit's fdatasync) →
 * apply to the index in sequence order → acknowledge. Nothing invalid ever reaches the log,
 * and nothing reaches the index before it is durable.
 *
 * Snapshots serialise the index into memory at a sequence number (synchronously, so the
 * image is consistent), then stream it to disk in chunks, yielding to the event loop between
 * them, so writes keep being accepted while the file is written. WAL segments covered by the
 * oldest kept snapshot are then deleted.
 *
 * @module
 */
import { mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { BinaryWriter, BufferSink } from "../io/binary.ts";
import { HnswIndex, validateId, validateVector } from "../index/hnsw.ts";
import type { Hit, IdFilter } from "../index/hnsw.ts";
import type { Metric } from "../kernels/kernels.ts";
import { decodeRecord, encodeRecord, type WalRecord } from "./records.ts";
import { Wal, type WalEntry, type WalStats } from "./wal.ts";
import { listSnapshots, loadNewestSnapshot, writeSnapshot } from "./snapshot.ts";

/** Parameters a collection is created with. */
export interface CollectionConfig {
  name: string;
  dimension: number;
  metric: Metric;
  m: number;
  ef_construction: number;
}

export interface CollectionOptions {
  logger?: (message: string) => void;
  /** WAL recovery mode at open: "strict" refuses corruption, "truncate" cuts it off. */
  recovery?: "strict" | "truncate";
  /** Snapshots kept on disk. Default 2. */
  snapshots_keep?: number;
  /** WAL segment size. Default 64 MiB. */
  segment_bytes_max?: number;
}

/** One point of a batch. */
export interface Point {
  id: number;
  vector: ArrayLike<number>;
}

/** Raised when a collection's files hold no usable state (no snapshot and no creation record). */
export class CollectionStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CollectionStateError";
  }
}

/** Collection names: letters, digits, `_` and `-`, 1 to 64 characters. */
export const COLLECTION_NAME = /^[A-Za-z0-9_-]{1,64}$/;

export function validateCollectionName(name: string): void {
  if (typeof name !== "string" || !COLLECTION_NAME.test(name)) {
    throw new RangeError(
      `collection name "${name}" must be 1 to 64 letters, digits, "_" or "-"`,
    );
  }
}

/** Bytes of memory a snapshot image may take before the write is refused. */
const SNAPSHOT_IMAGE_BYTES_MAX = 6 * 2 ** 30;
/** Points a batch applies before it lets the event loop run (gossip, other requests). */
const APPLY_SLICE_POINTS = 64;

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Chunk size when streaming a snapshot image to disk; the event loop runs between chunks. */
const SNAPSHOT_CHUNK_BYTES = 8 << 20;

export class Collection {
  readonly name: string;
  readonly dir: string;
  readonly config: CollectionConfig;
  readonly index: HnswIndex;
  private readonly wal: Wal;
  private readonly log: (message: string) => void;
  private readonly keep: number;
  /** Sequence number of the last record applied to the index. */
  private applied: number;
  private snapshotSeq: number;
  private snapshotTimeMs: number;
  private snapshotting: Promise<void> | null = null;
  /** Tail of the apply queue (see {@link apply}). */
  private queue: Promise<void> = Promise.resolve();
  /** Writes applied since the last snapshot started. */
  opsSinceSnapshot = 0;
  private closed = false;

  private constructor(
    dir: string,
    config: CollectionConfig,
    index: HnswIndex,
    wal: Wal,
    applied: number,
    snapshotSeq: number,
    snapshotTimeMs: number,
    options: CollectionOptions,
  ) {
    this.name = config.name;
    this.dir = dir;
    this.config = config;
    this.index = index;
    this.wal = wal;
    this.applied = applied;
    this.snapshotSeq = snapshotSeq;
    this.snapshotTimeMs = snapshotTimeMs;
    this.log = options.logger ?? ((m) => console.error(m));
    this.keep = options.snapshots_keep ?? 2;
  }

  /** Creates a new, empty collection in `dir` (which must not hold one yet). */
  static async create(
    dir: string,
    config: CollectionConfig,
    options: CollectionOptions = {},
  ): Promise<Collection> {
    validateCollectionName(config.name);
    const index = new HnswIndex({
      dim: config.dimension,
      metric: config.metric,
      M: config.m,
      efConstruction: config.ef_construction,
    });
    mkdirSync(join(dir, "snapshots"), { recursive: true });
    const wal = await Wal.open(join(dir, "wal"), {
      logger: options.logger,
      segment_bytes_max: options.segment_bytes_max,
      onRecord: () => {
        throw new CollectionStateError(`Collection directory "${dir}" already holds a log`);
      },
    });
    const { type, payload } = encodeRecord({
      kind: "create_collection",
      collection: config.name,
      dimension: config.dimension,
      metric: config.metric,
      m: config.m,
      ef_construction: config.ef_construction,
    });
    const seq = await wal.append(type, payload);
    return new Collection(dir, config, index, wal, seq, 0, 0, options);
  }

  /** Opens an existing collection: newest valid snapshot, then the WAL after it. */
  static async open(dir: string, options: CollectionOptions = {}): Promise<Collection> {
    const log = options.logger ?? ((m: string) => console.error(m));
    const snap = await loadNewestSnapshot(
      join(dir, "snapshots"),
      (r) => HnswIndex.readFrom(r),
      { logger: log },
    );
    let index: HnswIndex | null = snap?.value ?? null;
    let config: CollectionConfig | null = index === null ? null : {
      name: "",
      dimension: index.dim,
      metric: index.metric,
      m: index.M,
      ef_construction: index.efConstruction,
    };
    let applied = snap?.seq ?? 0;
    let replayed = 0;
    const started = Date.now();
    const apply = (entry: WalEntry) => {
      const rec = decodeRecord(entry.type, entry.payload);
      if (rec.kind === "create_collection") {
        if (index === null) {
          config = {
            name: rec.collection,
            dimension: rec.dimension,
            metric: rec.metric,
            m: rec.m,
            ef_construction: rec.ef_construction,
          };
          index = new HnswIndex({
            dim: rec.dimension,
            metric: rec.metric,
            M: rec.m,
            efConstruction: rec.ef_construction,
          });
        } else if (config !== null) {
          config.name = rec.collection;
        }
      } else {
        if (index === null) {
          throw new CollectionStateError(
            `Collection "${dir}": record ${entry.seq} (${rec.kind}) comes before any ` +
              `snapshot or creation record`,
          );
        }
        applyRecord(index, rec);
      }
      if (entry.seq !== applied + 1) {
        throw new CollectionStateError(
          `Collection "${dir}": record ${entry.seq} follows ${applied}; the log has a gap`,
        );
      }
      applied = entry.seq;
      replayed++;
    };
    const wal = await Wal.open(join(dir, "wal"), {
      afterSeq: snap?.seq ?? 0,
      onRecord: apply,
      logger: log,
      recovery: options.recovery,
      segment_bytes_max: options.segment_bytes_max,
    });
    if (index === null || config === null) {
      await wal.close();
      throw new CollectionStateError(
        `Collection directory "${dir}" has no valid snapshot and no creation record`,
      );
    }
    const finalConfig = config as CollectionConfig;
    if (finalConfig.name === "") finalConfig.name = dir.replace(/\/+$/, "").replace(/^.*\//, "");
    validateCollectionName(finalConfig.name);
    log(
      `Collection "${finalConfig.name}": ${
        snap ? `snapshot at seq ${snap.seq}` : "no snapshot"
      }, replayed ${replayed} WAL records in ${Date.now() - started} ms, ` +
        `${(index as HnswIndex).count} points`,
    );
    return new Collection(
      dir,
      finalConfig,
      index,
      wal,
      applied,
      snap?.seq ?? 0,
      snap?.created_ms ?? 0,
      options,
    );
  }

  /** Inserts or replaces one point; resolves once it is durable and searchable. */
  async put(id: number, vector: ArrayLike<number>): Promise<number> {
    this.checkOpen();
    validateId(id);
    validateVector(vector, this.index.dim);
    const { type, payload } = encodeRecord({
      kind: "put",
      id,
      vector: Float32Array.from(vector),
    });
    const seq = await this.wal.append(type, payload);
    await this.apply(seq, () => this.index.add(id, vector));
    return seq;
  }

  /** Inserts or replaces many points with one WAL record (one sync). */
  async putBatch(points: readonly Point[]): Promise<number> {
    this.checkOpen();
    const dim = this.index.dim;
    const ids = new Uint32Array(points.length);
    const vectors = new Float32Array(points.length * dim);
    for (let i = 0; i < points.length; i++) {
      const p = points[i];
      validateId(p.id);
      validateVector(p.vector, dim, `points[${i}].vector`);
      ids[i] = p.id;
      vectors.set(p.vector, i * dim);
    }
    if (points.length === 0) return this.applied;
    const { type, payload } = encodeRecord({ kind: "put_batch", dimension: dim, ids, vectors });
    const seq = await this.wal.append(type, payload);
    await this.apply(seq, async () => {
      for (let i = 0; i < ids.length; i++) {
        this.index.add(ids[i], vectors.subarray(i * dim, (i + 1) * dim));
        // A large batch would otherwise hold the event loop for seconds: gossip probes
        // would time out and the node would look dead. The apply queue keeps the order.
        if ((i + 1) % APPLY_SLICE_POINTS === 0 && i + 1 < ids.length) await yieldToLoop();
      }
    });
    return seq;
  }

  /**
   * Deletes a point durably. The tombstone is logged even when the point is absent, so a
   * replica that missed the put cannot bring it back. Resolves with whether it was present and
   * the sequence number of the tombstone.
   */
  async delete(id: number): Promise<{ deleted: boolean; seq: number }> {
    this.checkOpen();
    validateId(id);
    const { type, payload } = encodeRecord({ kind: "delete", id });
    const seq = await this.wal.append(type, payload);
    let deleted = false;
    await this.apply(seq, () => {
      deleted = this.index.delete(id);
    });
    return { deleted, seq };
  }

  search(vector: ArrayLike<number>, k: number, ef?: number, filter?: IdFilter): Hit[] {
    // Named after the API field, so the error a client sees points at what it sent.
    validateVector(vector, this.index.dim, "vector");
    return this.index.search(vector, k, { ef, filter });
  }

  get(id: number): Float32Array | null {
    validateId(id);
    return this.index.get(id);
  }

  /** Sequence number of the last write applied. */
  get lastSeq(): number {
    return this.applied;
  }

  stats(): {
    count: number;
    dimension: number;
    metric: Metric;
    memory_bytes: number;
    wal_bytes: number;
    wal: WalStats;
    last_snapshot_seq: number;
    last_snapshot_time_ms: number;
    last_seq: number;
  } {
    let walBytes = 0;
    for (const s of this.wal.segments()) {
      try {
        walBytes += statSync(s.path).size;
      } catch {
        // A segment deleted by a concurrent truncation no longer counts.
      }
    }
    return {
      count: this.index.count,
      dimension: this.index.dim,
      metric: this.index.metric,
      memory_bytes: this.index.memoryBytes,
      wal_bytes: walBytes,
      wal: this.wal.stats(),
      last_snapshot_seq: this.snapshotSeq,
      last_snapshot_time_ms: this.snapshotTimeMs,
      last_seq: this.applied,
    };
  }

  /**
   * Writes a snapshot of everything applied so far and deletes the WAL segments the oldest
   * kept snapshot covers. Concurrent calls share one snapshot.
   */
  snapshot(): Promise<void> {
    if (this.snapshotting) return this.snapshotting;
    if (this.applied === this.snapshotSeq) return Promise.resolve();
    const run = this.writeSnapshotNow().finally(() => {
      this.snapshotting = null;
    });
    this.snapshotting = run;
    return run;
  }

  private async writeSnapshotNow(): Promise<void> {
    const started = Date.now();
    // The image is taken synchronously between two applies (in the apply queue), so it is
    // exactly the state after `seq`, never half of a batch.
    const { seq, image } = await this.serial(() => {
      const sink = new BufferSink({ initial_bytes: 1 << 20, bytes_max: SNAPSHOT_IMAGE_BYTES_MAX });
      const w = new BinaryWriter(sink);
      this.index.writeTo(w);
      w.flush();
      return { seq: this.applied, image: sink.view() };
    });
    this.opsSinceSnapshot = 0;
    const written = await writeSnapshot(join(this.dir, "snapshots"), seq, async (out) => {
      for (let at = 0; at < image.length; at += SNAPSHOT_CHUNK_BYTES) {
        out.raw(image.subarray(at, Math.min(image.length, at + SNAPSHOT_CHUNK_BYTES)));
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    }, { keep: this.keep, logger: this.log });
    this.snapshotSeq = seq;
    this.snapshotTimeMs = Date.now();
    const kept = await listSnapshots(join(this.dir, "snapshots"));
    const oldest = Math.min(...kept.map((s) => s.seq));
    const deleted = await this.wal.truncateBefore(oldest);
    this.log(
      `Collection "${this.name}": snapshot at seq ${seq} (${written.payload_bytes} bytes) in ` +
        `${Date.now() - started} ms; ${deleted} WAL segments deleted`,
    );
  }

  /** Waits for pending writes and closes the log. Optionally snapshots first. */
  async close(options: { snapshot?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    if (options.snapshot) await this.snapshot();
    else if (this.snapshotting) await this.snapshotting;
    this.closed = true;
    await this.wal.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new CollectionStateError(`Collection "${this.name}" is closed`);
  }

  /**
   * Applies a durable record to the index through the apply queue: one apply at a time, in
   * the order the WAL made records durable (which is sequence order), even when an apply
   * yields to the event loop part-way (large batches do).
   */
  private apply(seq: number, fn: () => void | Promise<void>): Promise<void> {
    return this.serial(async () => {
      this.advance(seq);
      await fn();
    });
  }

  /** Runs `fn` after every apply queued before it, and before any queued after it. */
  private serial<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.then(() => {}, () => {});
    return run;
  }

  /** Asserts that records are applied in sequence order, without gaps. */
  private advance(seq: number): void {
    if (seq !== this.applied + 1) {
      throw new CollectionStateError(
        `Collection "${this.name}": applying record ${seq} after ${this.applied}; ` +
          `the log resolved out of order`,
      );
    }
    this.applied = seq;
    this.opsSinceSnapshot++;
  }
}

/** Applies a replayed data record to an index. */
function applyRecord(index: HnswIndex, rec: WalRecord): void {
  switch (rec.kind) {
    case "put":
      index.add(rec.id, rec.vector);
      break;
    case "delete":
      index.delete(rec.id);
      break;
    case "put_batch":
      for (let i = 0; i < rec.ids.length; i++) {
        index.add(rec.ids[i], rec.vectors.subarray(i * rec.dimension, (i + 1) * rec.dimension));
      }
      break;
    case "drop_collection":
      // Drops remove the directory; a record of one inside a log is never written.
      break;
    case "create_collection":
      break;
  }
}

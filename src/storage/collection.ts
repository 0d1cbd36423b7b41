/**
 * A named collection on one storage node: an HNSW index made durable by its own write-ahead
 * log and snapshots.
 *
 * Directory layout (under the node's data directory):
 *
 * | path                               | what                                           |
 * |------------------------------------|------------------------------------------------|
 * | `collections/<name>/wal/`          | WAL segments (`src/io/wal.ts`)            |
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
 * oldest kept snapshot are then deleted, and the log's CONTROL file records the new snapshot's
 * seq. At open the WAL replays after the newest readable snapshot; damaged records that snapshot
 * covers are skipped (logged) in both recovery modes, so they never cost later records.
 *
 * **Full disk.** A write the WAL refuses for lack of space (`DiskFullError`, see wal.ts) reaches
 * neither the log nor the index and is answered with that error; reads and searches go on, and
 * writes resume by themselves once space is freed. A snapshot that fails (full disk or
 * otherwise) loses nothing: its temporary file is removed, the writes it would have covered count
 * again towards the next one, and a WAL trim that failed after the file was written is retried
 * by the next {@link Collection.snapshot} call (the node store retries with a backoff).
 *
 * **Versions** (see "Versions" in proto/vector_db.proto). The collection keeps, per id, the
 * version of the last write applied to it, deletes included: one `Map<id, number>` holding the
 * version (`>= 0`) of a live point's put, or the negated version (`< 0`) of a tombstone (a
 * delete's version, always at least 1; a legacy delete leaves no entry). Every live point of the
 * index has an entry; an id with no entry was never written (or was forgotten): version 0.
 * Records are applied in WAL order, which makes replay deterministic, by this rule:
 *
 * - a put, delete or copied entry applies only when its version is above the held one, or equal
 *   to it when the entry is a delete and the held one a live point (a delete beats a put at equal
 *   versions: common/version.ts `supersedes`, the rule anti-entropy follows too); version 0, from
 *   records written before versions existed, applies unconditionally;
 * - a delete that applies removes the point from the index (when there) and leaves a tombstone;
 * - forget(id, v) removes the entry (point or tombstone, leaving nothing) when the held version
 *   is at most v;
 * - a write that does not apply is still logged and acknowledged: it simply lost.
 *
 * Writes without a version (0) are stamped by the collection's {@link VersionClock} before they
 * are logged; every version the collection sees (written, copied, replayed, loaded) is observed
 * by that clock, so a direct write always sorts after everything the node holds.
 *
 * Snapshot payload (container: `snapshot.ts`; its header version says which layout):
 *
 * | container version | payload                                                            |
 * |-------------------|--------------------------------------------------------------------|
 * | 1                 | the index image (`hnsw.ts`) only: every point loads at version 0   |
 * | 2                 | the index image, then the version table: ids u32Array (ascending), |
 * |                   | one u64 version per id, deleted bytes (one u8 0/1 per id)          |
 * | 3                 | as 2, then the payload table (`payload_store.ts`): the live points |
 * |                   | that have a payload, with its canonical JSON bytes                 |
 * | 4                 | as 3, then the payload index definitions: u32 count, then per index |
 * |                   | field string, type string (sorted by field); the indexes themselves |
 * |                   | are rebuilt from the payloads at open                              |
 * | 5                 | as 4, then the key table section (`key_table.ts`); 1 to 4 load with |
 * |                   | an empty key table                                                 |
 * | 6                 | a bulk section (u32 length, then: the index's id map as u32        |
 * |                   | capacity, size, used, u32Array keys, u32Array slots (i32) of the   |
 * |                   | image's slot order; the version table as u32 capacity, size, used, |
 * |                   | u32Array keys, u32Array of the f64 versions' words, u32Array of    |
 * |                   | the u8 bucket states, four a word), then all of version 5          |
 *
 * The bulk section holds the two hash tables exactly as they are in memory (id_map.ts,
 * version_table.ts: open addressing, `mix` hash), so a load copies them in a few large reads
 * instead of inserting every point (a third of a 100K restart's open before): one pass in order
 * over each checks it against the index (every map entry the live slot of its id, once; the
 * version table's states, versions and counts against the list that follows; the counts of
 * removed buckets), then one lookup per entry that each is found where it lies and (version
 * table) that its point is live in the index exactly when the entry is, so a file that passes
 * its checksum but not these is refused, never loaded inconsistent. The version 5
 * sections follow unchanged (the version table's list too, whose length is checked), so a
 * version-6 payload is the bulk section followed by a version-5 payload.
 *
 * **Ids** (see "Ids" in proto/vector_db.proto) are `PointId`s (uint64 integers and strings,
 * src/common/point_id.ts) at this class's boundary; everything inside (index, version table,
 * payloads, payload indexes, filter plans) works on uint32 "pids" that the {@link KeyTable}
 * maps them to: a uint32 id is its own pid (nothing stored), other ids get an allocated pid
 * and an explicit entry, released when the id is forgotten entirely (no tombstone left). The
 * key table changes only while a record applies, in WAL order, so replay rebuilds the same
 * map; snapshots (version 5) carry it. Listing order (Scroll, Entries, Scan) is `compareIds`.
 *
 * **Payloads** (src/common/payload.ts) are part of a point's state: a put sets the vector and
 * the payload together (a put without one clears it), a delete or forget removes both, and the
 * version rule above decides for both at once: an older put never brings back its payload. They
 * travel in the same WAL records as the vectors (types 11 to 13 of src/common/records.ts when a
 * record carries any) and live in a {@link PayloadStore} (a byte arena, no object per point).
 *
 * **Payload indexes** (`payload_index.ts`) are kept current by {@link PointTable} on every write
 * that applies (the old payload's values are removed, the new one's added), so live writes,
 * replay and copies all keep them; their definitions are durable (WAL types 14 and 15, and
 * snapshot version 4) and the indexes are rebuilt from the payload store when a snapshot loads
 * or a definition replays. Filtered reads ({@link Collection.search}, {@link Collection.count},
 * {@link Collection.matches}) plan with `filter_plan.ts`.
 *
 * **Digest** (src/common/digest.ts): the table keeps a digest of its entries (1,024 buckets of
 * XORed 64-bit hashes of id, version and deleted flag), updated in O(1) by every put, delete and
 * forget that applies (live writes, copies and replay alike). A snapshot load fills the version
 * table directly and leaves the digest stale: it is rebuilt in one pass when first read (the
 * first anti-entropy call after a restart), so a restart does not wait for it; writes while it
 * is stale skip it, as the rebuild reads the entries as they are then. Not persisted: no format
 * to keep. Replicas
 * of a shard compare it for anti-entropy (src/node/transfer_service.ts `Digest`).
 *
 * Tombstones are collected by the node (src/node/tombstone_gc.ts) once older than the
 * tombstone grace ({@link Collection.expiredTombstones}, then FORGET records).
 *
 * Size: ~900 lines: the one place where a write goes WAL → version table → index, with replay,
 * snapshots and copies sharing that order; splitting it would split the ordering argument.
 *
 * @module
 */
import { collectionNameProblem } from "../common/collection_name.ts";
import { mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { type BinaryReader, BinaryWriter, BufferSink } from "../io/binary.ts";
import { BUCKET_EMPTY, BUCKET_FULL, BUCKET_REMOVED, VersionTable } from "./version_table.ts";
import { HnswIndex, validateVector } from "../index/hnsw.ts";
import type { Hit } from "../index/hnsw.ts";
import type { Metric } from "../kernels/kernels.ts";
import { decodeRecord, encodeRecord, type RecordIds, type WalRecord } from "../common/records.ts";
import { canonicalId, compareIds, isU32Id, type PointId } from "../common/point_id.ts";
import { KeyTable, KeyTableFormatError } from "./key_table.ts";
import { prefetchSegments, Wal, type WalEntry, type WalStats } from "../io/wal.ts";
import {
  listSnapshots,
  loadNewestSnapshot,
  writeSnapshot,
  type WrittenSnapshot,
} from "./snapshot.ts";
import { diskFullCode, DiskFullError } from "../io/disk_full.ts";
import { isVersion, supersedes, VERSION_MAX, VersionClock } from "../common/version.ts";
import { PayloadStore, PayloadTableError } from "./payload_store.ts";
import { type RootDigest, UnitDigest } from "../common/digest.ts";
import { PAYLOAD_BYTES_MAX, PAYLOAD_INDEXES_MAX } from "../common/limits.ts";
import {
  canonicalKey,
  type Filter,
  isEmptyFilter,
  parseKey,
  type Predicate,
} from "../common/filter.ts";
import { PAYLOAD_FIELD_TYPES, PayloadIndexes, type PayloadIndexInfo } from "./payload_index.ts";
import { planFilter, resolveHasIds } from "./filter_plan.ts";
import type { PlannedFilter } from "../index/hnsw.ts";
import { type GraphPool, ThreadPoolError } from "../index/graph_pool.ts";
import { CapacityError } from "../index/vector_store.ts";
import { DEFAULT_RESCORE, type Quantization } from "../common/limits.ts";

/** Parameters a collection is created with. */
export interface CollectionConfig {
  name: string;
  dimension: number;
  metric: Metric;
  m: number;
  ef_construction: number;
  /**
   * `int8`: the index also keeps one-byte codes and searches over them, re-ranking exactly
   * (src/index/quantizer.ts). Absent or `none`: floats only.
   */
  quantization?: Quantization;
  /** Re-ranking factor of an int8 collection (default 4). */
  rescore?: number;
}

/** The index options a collection's quantization settings give (none when not quantized). */
function quantizationOptions(
  q: Quantization | undefined,
  rescore: number | undefined,
): { quantization?: Quantization; rescore?: number } {
  if (q === undefined || q === "none") return {};
  return { quantization: q, rescore: rescore ?? DEFAULT_RESCORE };
}

export interface CollectionOptions {
  logger?: (message: string) => void;
  /** WAL recovery mode at open: "strict" refuses corruption, "truncate" cuts it off. */
  recovery?: "strict" | "truncate";
  /** Snapshots kept on disk. Default 2. */
  snapshots_keep?: number;
  /** WAL segment size. Default 64 MiB. */
  segment_bytes_max?: number;
  /** Wall clock of the version clock (ms since the Unix epoch). Default `Date.now`. */
  now_ms?: () => number;
  /** The node's data directory, named by a {@link DiskFullError}. Default: the collection's. */
  data_dir?: string;
  /** Metrics histograms (common/metrics.ts) fed by every collection; absent: none. */
  observers?: CollectionObservers;
  /**
   * The version clock to stamp and observe with; absent: a new one. The shard units of one
   * collection (sharded_collection.ts) share one, so a stamp sorts after every version any of
   * them holds, as it does in a single collection.
   */
  clock?: VersionClock;
  /**
   * The node's graph threads (graph_pool.ts; `--search-threads`, `--build-threads`): absent,
   * null or both 1: every search and insert on the caller's thread, as before threads.
   */
  threads?: GraphThreads | null;
}

/**
 * How a collection uses the node's worker pool: `search` > 1 sends unfiltered float searches
 * to its workers ({@link Collection.searchAsync}); `build` > 1 links each PutBatch on that
 * many workers ({@link Collection.putBatch}).
 */
export interface GraphThreads {
  pool: GraphPool;
  search: number;
  build: number;
}

/** A search's hits and what it cost (for metrics). */
export interface SearchOutcome {
  hits: KeyHit[];
  /** The ef it ran with. */
  ef: number;
  /** Candidates scored on layer 0. */
  visited: number;
}

/** Where a collection reports durations and sizes (metrics histograms, shared by a node). */
export interface CollectionObservers {
  /** Seconds of each WAL group commit (write + fdatasync). */
  wal_sync_seconds?: Observer;
  /** Seconds of each snapshot written (image, write, sync, rename; not the WAL trim). */
  snapshot_seconds?: Observer;
  /** Payload bytes of each snapshot written. */
  snapshot_bytes?: Observer;
}

/** Takes one observation. */
export interface Observer {
  observe(value: number): void;
}

/** One point of a batch. */
export interface Point {
  id: PointId;
  vector: ArrayLike<number>;
  /** Canonical JSON bytes (src/common/payload.ts: `parsePayload`); null or absent: none. */
  payload?: Uint8Array | null;
}

/** One entry of a copy: a live point (with its vector) or a tombstone (`deleted`). */
export interface CopyEntry {
  id: PointId;
  /** 1 .. VERSION_MAX. */
  version: number;
  deleted: boolean;
  /** The vector of a live entry (the collection's dimension); ignored for a tombstone. */
  vector?: ArrayLike<number>;
  /** A live entry's payload (canonical JSON bytes); null or absent: none. Not for tombstones. */
  payload?: Uint8Array | null;
}

/** What the collection holds for an id. */
export interface Entry {
  /** The live point's vector (as stored: normalised for cosine); null when absent. */
  vector: Float32Array | null;
  /** Version of the last write applied (the put, or the delete when `deleted`); 0 when none. */
  version: number;
  /** True when the last write applied was a delete (a tombstone). */
  deleted: boolean;
}

/** A search hit: the point's id and its distance to the query. */
export interface KeyHit {
  id: PointId;
  distance: number;
}

/**
 * The ids a collection held at one moment, in `compareIds` order (see
 * {@link Collection.sortedIds}): the uint32 ids, ascending, then the others. Immutable.
 */
export class IdList {
  constructor(
    /** The uint32 ids, ascending. */
    readonly u32: Uint32Array,
    /** Integers above 2^32 - 1 and string ids, in `compareIds` order. */
    readonly others: readonly PointId[],
  ) {}

  get length(): number {
    return this.u32.length + this.others.length;
  }

  *[Symbol.iterator](): Generator<PointId> {
    yield* this.u32;
    yield* this.others;
  }

  /** The id at position `i`. */
  at(i: number): PointId {
    return i < this.u32.length ? this.u32[i] : this.others[i - this.u32.length];
  }

  /** First position whose id is above `after` in `compareIds` order (0 for null). */
  upperBound(after: PointId | null): number {
    if (after === null) return 0;
    if (isU32Id(after)) {
      let lo = 0;
      let hi = this.u32.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.u32[mid] <= after) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    }
    let lo = 0;
    let hi = this.others.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareIds(this.others[mid], after) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return this.u32.length + lo;
  }
}

/** The canonical form of an id argument (a PointIdError, a RangeError, naming `field`). */
function checkId(id: PointId, field = "id"): PointId {
  return canonicalId(id, field);
}

/** A record's ids: a Uint32Array when all are uint32 ones (the older, compact record types). */
function recordIds(ids: readonly PointId[]): RecordIds {
  for (let i = 0; i < ids.length; i++) if (!isU32Id(ids[i])) return ids;
  return Uint32Array.from(ids as number[]);
}

/** Raised when a collection's files hold no usable state (no snapshot and no creation record). */
export class CollectionStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CollectionStateError";
  }
}

/**
 * Raised by {@link Collection.open} for a directory that holds nothing: no snapshot file and no
 * WAL record (a creation interrupted before its creation record was durable, so never
 * acknowledged). The node store removes such a directory at start-up.
 */
export class CollectionIncompleteError extends CollectionStateError {
  constructor(readonly dir: string) {
    super(`Collection directory "${dir}" holds no snapshot and no log record`);
    this.name = "CollectionIncompleteError";
  }
}

/** Throws when `name` breaks the collection-name rule (names become directory names). */
export function validateCollectionName(name: string): void {
  const problem = collectionNameProblem(name, "collection name");
  if (problem !== null) throw new RangeError(problem);
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

/** A payload argument: null, or at most PAYLOAD_BYTES_MAX bytes, else a RangeError. */
function checkPayload(payload: Uint8Array | null | undefined, field: string): void {
  if (payload === null || payload === undefined) return;
  if (!(payload instanceof Uint8Array) || payload.length > PAYLOAD_BYTES_MAX) {
    throw new RangeError(
      `${field} of ${(payload as Uint8Array).length} bytes is over the limit of ` +
        `${PAYLOAD_BYTES_MAX}`,
    );
  }
}

/** A version argument: an integer in `min .. VERSION_MAX`, else a RangeError naming `field`. */
function checkVersion(version: number, field: string, min: number): number {
  if (!isVersion(version) || version < min) {
    throw new RangeError(
      `${field} ${version} must be an integer between ${min} and ${VERSION_MAX}`,
    );
  }
  return version;
}

/**
 * Checks a batch of points (ids, vectors of `dim`, payload sizes), naming `points[i]` fields in
 * a RangeError or PointIdError: before a batch is split over shard units, so errors name the
 * caller's positions.
 */
export function validatePoints(points: readonly Point[], dim: number): void {
  for (let i = 0; i < points.length; i++) {
    const p = points[i];
    checkId(p.id, `points[${i}].id`);
    validateVector(p.vector, dim, `points[${i}].vector`);
    checkPayload(p.payload, `points[${i}].payload`);
  }
}

/** Checks copied entries as {@link Collection.copy} takes them, naming `entries[i]` fields. */
export function validateCopyEntries(entries: readonly CopyEntry[], dim: number): void {
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    checkId(e.id, `entries[${i}].id`);
    checkVersion(e.version, `entries[${i}].version`, 1);
    if (!e.deleted) {
      if (e.vector === undefined) {
        throw new RangeError(`entries[${i}].vector is missing for a live entry`);
      }
      validateVector(e.vector, dim, `entries[${i}].vector`);
      checkPayload(e.payload, `entries[${i}].payload`);
    } else if (e.payload !== undefined && e.payload !== null && e.payload.length > 0) {
      throw new RangeError(`entries[${i}].payload is set on a tombstone (point ${e.id})`);
    }
  }
}

/** A version argument, as {@link Collection} checks it (a RangeError naming `field`). */
export function validateVersion(version: number, field: string, min: number): number {
  return checkVersion(version, field, min);
}

/**
 * The apply rule of the module comment: whether a write at `version` applies over `held` (the
 * table's value for the id: undefined when none, negative for a tombstone).
 */
function applies(version: number, deleted: boolean, held: number | undefined): boolean {
  return version === 0 || held === undefined ||
    supersedes(version, deleted, Math.abs(held), held < 0);
}

/** A version table as its own arrays ({@link VersionTable.image}). */
type VersionImage = ReturnType<VersionTable["image"]>;
/** An index's id map as its own arrays ({@link HnswIndex.idMapImage}). */
type IdMapImage = ReturnType<HnswIndex["idMapImage"]>;

/**
 * Writes the bulk section a version-6 snapshot payload begins with (module comment, "Snapshot
 * payload"): the index's id map as an image of the slots written in `order`, then the version
 * table, each as its hash table's own arrays, so a load takes both whole. Every array is a
 * u32Array (the versions as their f64 words, the states four to a word), so each streams from
 * the file straight into its final array (`u32ArrayInto`).
 */
function writeBulkSection(
  w: BinaryWriter,
  index: HnswIndex,
  order: Int32Array,
  versions: VersionTable,
): void {
  const ids = index.idMapImage(order);
  const v = versions.image();
  const idCap = ids.keys.length;
  const cap = v.keys.length;
  // u32 fields and array counts, then the arrays' words.
  w.u32(4 * (3 + 2 + 3 + 3) + 4 * (2 * idCap) + 4 * (cap + 2 * cap + cap / 4));
  w.u32(idCap);
  w.u32(ids.size);
  w.u32(ids.used);
  w.u32Array(ids.keys);
  w.u32Array(new Uint32Array(ids.vals.buffer, ids.vals.byteOffset, idCap));
  w.u32(cap);
  w.u32(v.size);
  w.u32(v.used);
  w.u32Array(v.keys);
  w.u32Array(new Uint32Array(v.vals.buffer, v.vals.byteOffset, 2 * cap));
  w.u32Array(new Uint32Array(v.states.buffer, v.states.byteOffset, cap / 4));
}

/** Reads what {@link writeBulkSection} wrote (the tables' contents are checked as taken). */
function readBulkSection(r: BinaryReader): { ids: IdMapImage; versions: VersionImage } {
  const length = r.u32();
  const start = r.offset;
  const fail = (why: string): never => {
    throw new CollectionStateError(`Snapshot bulk section: ${why}`);
  };
  // The length bounds the capacities below, so it is bounded by the payload first (the
  // checksum is known only after the load: a damaged length must not size an allocation).
  if (length > r.remaining) fail(`its length ${length} passes the ${r.remaining} bytes left`);
  // Capacities are powers of two of at least 16 (id_map.ts, version_table.ts), and bounded by
  // the section before anything is allocated.
  const capacity = (what: string, bytesPerBucket: number) => {
    const cap = r.u32();
    if (cap < 16 || (cap & (cap - 1)) !== 0 || cap * bytesPerBucket > length) {
      fail(`${what} capacity ${cap} is not a power of two of at least 16 within ${length} bytes`);
    }
    return cap;
  };
  const idCap = capacity("id map", 8);
  const idSize = r.u32();
  const idUsed = r.u32();
  const idKeys = new Uint32Array(idCap);
  r.u32ArrayInto(idKeys, 0, idCap);
  const slots = new Int32Array(idCap);
  r.u32ArrayInto(new Uint32Array(slots.buffer), 0, idCap);
  const cap = capacity("version table", 13);
  const size = r.u32();
  const used = r.u32();
  const keys = new Uint32Array(cap);
  r.u32ArrayInto(keys, 0, cap);
  const vals = new Float64Array(cap);
  r.u32ArrayInto(new Uint32Array(vals.buffer), 0, 2 * cap);
  const states = new Uint8Array(cap);
  r.u32ArrayInto(new Uint32Array(states.buffer), 0, cap / 4);
  if (r.offset - start !== length) fail(`${r.offset - start} bytes read of ${length}`);
  return {
    ids: { keys: idKeys, vals: slots, size: idSize, used: idUsed },
    versions: { keys, vals, states, size, used },
  };
}

/**
 * The index and the per-id version table, with the apply rules of the module comment. Shared by
 * live writes and replay, so both apply records identically.
 */
class PointTable {
  /** Version per id: `>= 0` a live point's put, `< 0` a tombstone (negated delete version). */
  readonly versions = new VersionTable();
  /** Payloads of live points (a point without one has no entry). */
  readonly payloads = new PayloadStore();
  /** Payload indexes over {@link payloads}, kept current by every apply. */
  readonly indexes = new PayloadIndexes();
  /** Index definitions (field → type), as logged; empty: no payload parsing on writes. */
  readonly fieldIndexes = new Map<string, string>();
  /** Point ids ↔ pids (empty while every id is a uint32 one). */
  readonly keys = new KeyTable();
  tombstones = 0;
  /**
   * A lower bound of every held tombstone's version (Infinity: none held): lowered by each
   * tombstone stored, raised only by a full walk of {@link Collection.expiredTombstones}. While
   * a collection cutoff is at or below it no tombstone can be expired, so the periodic
   * collection skips the O(n) walk (8 bytes, not per entry).
   */
  tombstoneMin = Infinity;
  /**
   * The digest of every entry (common/digest.ts), kept current by put, delete and forget (O(1)
   * each) while it is built; null while stale. A snapshot load fills the version table without
   * it and leaves it stale ({@link invalidateDigest}): it is a function of the entries alone,
   * so it is rebuilt in one pass when first read ({@link digest}), not on the restart's path,
   * and the writes meanwhile need not update it.
   */
  private digestState: UnitDigest | null = new UnitDigest();

  /** The digest of every entry, rebuilt first when stale. */
  get digest(): UnitDigest {
    if (this.digestState === null) this.digestState = this.rebuildDigest();
    return this.digestState;
  }

  /** Marks the digest stale (the entries changed without it). */
  invalidateDigest(): void {
    this.digestState = null;
  }
  /** Whether a pid holds an entry (what the key table must not allocate). */
  readonly inUse = (pid: number): boolean => this.versions.has(pid);

  /** The pid of `id`, or -1 when the collection holds nothing for it. */
  pidOf(id: PointId): number {
    return this.keys.lookup(id);
  }

  /** The version held for `id` (see {@link versions}), undefined when none. */
  held(id: PointId): number | undefined {
    const pid = this.keys.lookup(id);
    return pid < 0 ? undefined : this.versions.get(pid);
  }

  /** Unindexes the current payload of `id` (before it changes). */
  private unindex(id: number): void {
    if (this.fieldIndexes.size === 0) return;
    const old = this.payloads.get(id);
    if (old !== null) this.indexes.remove(id, parsePayloadBytes(old));
  }

  /** Indexes `payload` as the payload of `id`. */
  private reindex(id: number, payload: Uint8Array | null | undefined): void {
    if (this.fieldIndexes.size === 0 || payload === null || payload === undefined) return;
    if (payload.length > 0) this.indexes.add(id, parsePayloadBytes(payload));
  }

  /** Defines (or redefines with another type) the index on `field` and builds it. */
  defineIndex(field: string, type: string): void {
    this.indexes.define(field, type);
    this.fieldIndexes.set(field, type);
    this.indexes.build(this.payloadEntries(), [field]);
  }

  /** Drops the index on `field`; whether there was one. */
  dropIndex(field: string): boolean {
    this.fieldIndexes.delete(field);
    return this.indexes.drop(field);
  }

  /** Every (id, parsed payload) of the store, for index builds. */
  *payloadEntries(): Generator<readonly [number, object | null]> {
    const ids = this.payloads.idsSorted();
    for (let i = 0; i < ids.length; i++) {
      const bytes = this.payloads.get(ids[i]);
      yield [ids[i], bytes === null ? null : parsePayloadBytes(bytes)];
    }
  }

  /** Writes the index definitions of a version-4 snapshot payload. */
  writeIndexesTo(w: BinaryWriter): void {
    const defs = [...this.fieldIndexes].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
    w.u32(defs.length);
    for (const [field, type] of defs) {
      w.string(field);
      w.string(type);
    }
  }

  /** Reads definitions written by {@link writeIndexesTo} and builds every index. */
  readIndexesFrom(r: BinaryReader): void {
    const n = r.u32();
    if (n > PAYLOAD_INDEXES_MAX) {
      throw new CollectionStateError(
        `Snapshot holds ${n} payload index definitions; the limit is ${PAYLOAD_INDEXES_MAX}`,
      );
    }
    for (let i = 0; i < n; i++) {
      const field = r.string();
      const type = r.string();
      try {
        this.indexes.define(field, type);
      } catch (e) {
        throw new CollectionStateError(`Snapshot payload index ${i}: ${(e as Error).message}`);
      }
      this.fieldIndexes.set(field, type);
    }
    if (n > 0) this.indexes.build(this.payloadEntries());
  }

  constructor(readonly index: HnswIndex, readonly clock: VersionClock) {
    // Compaction runs between records ({@link compactIfDue}), never inside one: the same
    // moments live and in WAL replay (so replay rebuilds the same graph), and with worker
    // searches it must wait for them (graph_pool.ts).
    index.deferCompaction = true;
  }

  /** Compacts the index when its tombstones passed the ratio (called after each record). */
  compactIfDue(): void {
    if (this.index.compactDue()) this.index.compact();
  }

  /** Applies a put (vector and payload together); returns whether it applied. */
  put(
    key: PointId,
    vector: ArrayLike<number>,
    version: number,
    payload: Uint8Array | null | undefined = null,
  ): boolean {
    // Room for the vector first (a CapacityError then changes nothing): an entry must never be
    // left without its vector (Collection.holdSlots refuses such writes before logging them).
    this.index.checkRoom(1);
    const id = this.putEntry(key, version, payload);
    if (id < 0) return false;
    this.index.add(id, vector);
    return true;
  }

  /**
   * Everything of a put but the vector (version, payload, digest): returns the pid whose
   * vector the caller must then insert, or -1 when the put does not apply. Batches on
   * several threads (Collection.putBatch) insert the vectors of many entries at once after.
   */
  putEntry(
    key: PointId,
    version: number,
    payload: Uint8Array | null | undefined = null,
  ): number {
    const found = this.keys.lookup(key);
    const held = found < 0 ? undefined : this.versions.get(found);
    if (!applies(version, false, held)) return -1;
    const id = found >= 0 ? found : this.keys.assign(key, this.inUse);
    this.unindex(id);
    this.payloads.set(id, payload ?? null);
    this.reindex(id, payload);
    if (held !== undefined && held < 0) this.tombstones--;
    const digest = this.digestState;
    if (digest !== null) {
      if (held !== undefined) digest.remove(key, Math.abs(held), held < 0);
      digest.add(key, version, false);
    }
    this.versions.set(id, version);
    return id;
  }

  /** Applies a delete; returns whether it applied and whether it removed a live point. */
  delete(key: PointId, version: number): { applied: boolean; removed: boolean } {
    const found = this.keys.lookup(key);
    const held = found < 0 ? undefined : this.versions.get(found);
    if (!applies(version, true, held)) return { applied: false, removed: false };
    if (found < 0 && version === 0) return { applied: true, removed: false }; // nothing held
    const id = found >= 0 ? found : this.keys.assign(key, this.inUse);
    const removed = this.index.delete(id);
    this.unindex(id);
    this.payloads.delete(id);
    if (held !== undefined && held < 0) this.tombstones--;
    const digest = this.digestState;
    if (held !== undefined) digest?.remove(key, Math.abs(held), held < 0);
    if (version === 0) {
      this.versions.delete(id); // a legacy delete: nothing to remember
      this.keys.release(id);
    } else {
      this.versions.set(id, -version);
      digest?.add(key, version, true);
      this.tombstones++;
      if (version < this.tombstoneMin) this.tombstoneMin = version;
    }
    return { applied: true, removed };
  }

  /** Forgets an entry when the held version is at most `version`; returns whether it did. */
  forget(key: PointId, version: number): boolean {
    const id = this.keys.lookup(key);
    const held = id < 0 ? undefined : this.versions.get(id);
    if (held === undefined || Math.abs(held) > version) return false;
    this.digestState?.remove(key, Math.abs(held), held < 0);
    if (held < 0) this.tombstones--;
    else {
      this.index.delete(id);
      this.unindex(id);
      this.payloads.delete(id);
    }
    this.versions.delete(id);
    this.keys.release(id);
    return true;
  }

  entry(key: PointId): Entry {
    const id = this.keys.lookup(key);
    const held = id < 0 ? undefined : this.versions.get(id);
    if (held === undefined) return { vector: null, version: 0, deleted: false };
    if (held < 0) return { vector: null, version: -held, deleted: true };
    return { vector: this.index.get(id), version: held, deleted: false };
  }

  /** Applies one entry of a copy record; returns whether it applied. */
  copyEntry(
    id: PointId,
    version: number,
    deleted: boolean,
    vector: ArrayLike<number>,
    payload: Uint8Array | null | undefined = null,
  ): boolean {
    return deleted ? this.delete(id, version).applied : this.put(id, vector, version, payload);
  }

  /** Applies a replayed record (observing its versions first). */
  replay(rec: WalRecord): void {
    switch (rec.kind) {
      case "put":
        this.clock.observe(rec.version);
        this.put(rec.id, rec.vector, rec.version, rec.payload);
        break;
      case "delete":
        this.clock.observe(rec.version);
        this.delete(rec.id, rec.version);
        break;
      case "put_batch":
        for (let i = 0; i < rec.ids.length; i++) {
          this.clock.observe(rec.versions[i]);
          this.put(
            rec.ids[i],
            rec.vectors.subarray(i * rec.dimension, (i + 1) * rec.dimension),
            rec.versions[i],
            rec.payloads?.[i],
          );
        }
        break;
      case "copy": {
        let live = 0;
        for (let i = 0; i < rec.ids.length; i++) {
          this.clock.observe(rec.versions[i]);
          const deleted = rec.deleted[i] === 1;
          const vector = deleted
            ? EMPTY
            : rec.vectors.subarray(live * rec.dimension, ++live * rec.dimension);
          this.copyEntry(rec.ids[i], rec.versions[i], deleted, vector, rec.payloads?.[i]);
        }
        break;
      }
      case "forget":
        for (let i = 0; i < rec.ids.length; i++) {
          this.clock.observe(rec.versions[i]);
          this.forget(rec.ids[i], rec.versions[i]);
        }
        break;
      case "create_field_index":
        this.defineIndex(rec.field, rec.type);
        break;
      case "drop_field_index":
        this.dropIndex(rec.field);
        break;
      case "drop_collection":
        // Drops remove the directory; a record of one inside a log is never written.
        break;
      case "create_collection":
        break;
    }
  }

  /** The digest of every entry, computed from the version table and the key table. */
  private rebuildDigest(): UnitDigest {
    const digest = new UnitDigest();
    this.versions.forEach((held, pid) => {
      digest.add(this.keys.keyOf(pid), Math.abs(held), held < 0);
    });
    return digest;
  }

  /** Every known pid (live and tombstones), ascending. */
  knownPids(): Uint32Array {
    const ids = new Uint32Array(this.versions.size);
    let i = 0;
    for (const id of this.versions.pids()) ids[i++] = id;
    return ids.sort();
  }

  /** Every known id (live and tombstones), in `compareIds` order. */
  knownIds(): IdList {
    if (this.keys.size === 0) return new IdList(this.knownPids(), []);
    const u32 = new Uint32Array(this.versions.size);
    let n = 0;
    for (const pid of this.versions.pids()) if (!this.keys.isExplicit(pid)) u32[n++] = pid;
    const sorted = this.keys.sorted();
    const others: PointId[] = [];
    for (const key of sorted.keys) {
      if (isU32Id(key)) u32[n++] = key;
      else others.push(key);
    }
    return new IdList(u32.subarray(0, n).sort(), others);
  }

  /** Writes the version table of a version-2 snapshot payload (see the module comment). */
  writeTo(w: BinaryWriter): void {
    const ids = this.knownPids();
    const deleted = new Uint8Array(ids.length);
    w.u32Array(ids);
    for (let i = 0; i < ids.length; i++) {
      const held = this.versions.get(ids[i])!;
      w.u64(Math.abs(held));
      if (held < 0) deleted[i] = 1;
    }
    w.bytes(deleted);
  }

  /**
   * Reads a version table written by {@link writeTo}, checking it against the index. `bulk`:
   * the same table as its own arrays (a version-6 snapshot's bulk section), taken whole after
   * one pass in bucket order that checks every version and counts the entries against the
   * list read here and the index (no hash per point); null: the table is built from the list.
   */
  readFrom(r: BinaryReader, bulk: VersionImage | null = null): void {
    const ids = r.u32Array();
    const n = ids.length;
    const versionBytes = r.raw(8 * n);
    const deleted = r.bytes();
    const fail = (why: string): never => {
      throw new CollectionStateError(`Snapshot version table: ${why}`);
    };
    if (deleted.length !== n) fail(`${n} ids come with ${deleted.length} deleted flags`);
    if (bulk !== null) {
      this.takeVersions(bulk, n, fail);
      return;
    }
    // The u64 versions in one read, as (low, high) word pairs of an aligned copy: a snapshot
    // load does no per-point decoding call.
    const words = new Uint32Array(2 * n);
    new Uint8Array(words.buffer).set(versionBytes);
    let live = 0;
    let newest = 0;
    // Every id is new to the table (a fresh one) and distinct (ascending, checked below).
    if (this.versions.size !== 0) fail("the table is not empty before a load");
    this.versions.reserve(n);
    for (let i = 0; i < n; i++) {
      const id = ids[i];
      const hi = words[2 * i + 1];
      // Up to 2^53 - 1 (VERSION_MAX): the high word holds at most 21 bits.
      if (hi > 0x1f_ffff) fail(`version of point ${id} is above ${VERSION_MAX}`);
      const v = hi * 0x1_0000_0000 + words[2 * i];
      if (i > 0 && id <= ids[i - 1]) fail(`id ${id} follows ${ids[i - 1]} (not ascending)`);
      if (deleted[i] > 1) fail(`deleted flag ${deleted[i]} of point ${id} is not 0 or 1`);
      const tomb = deleted[i] === 1;
      if (tomb && v === 0) fail(`tombstone of point ${id} has version 0`);
      if (tomb === this.index.has(id)) {
        fail(`point ${id} is ${tomb ? "a tombstone but live" : "live but not"} in the index`);
      }
      this.versions.insertAbsent(id, tomb ? -v : v);
      if (v > newest) newest = v;
      if (tomb) {
        this.tombstones++;
        if (v < this.tombstoneMin) this.tombstoneMin = v;
      } else live++;
    }
    if (live !== this.index.count) {
      fail(`${live} live entries, but the index holds ${this.index.count} points`);
    }
    // Not observed by the clock here: a snapshot's checksum is checked after the load
    // (snapshot.ts), and a damaged file's versions must not move a clock the node keeps.
    this.loadedVersionMax = newest;
  }

  /** {@link readFrom}'s check and install of a stored table of `n` entries. */
  private takeVersions(bulk: VersionImage, n: number, fail: (why: string) => never): void {
    if (this.versions.size !== 0) fail("the table is not empty before a load");
    const { keys, vals, states } = bulk;
    if (keys.length !== states.length || vals.length !== states.length) {
      fail(`${keys.length} keys, ${vals.length} versions and ${states.length} states`);
    }
    let live = 0;
    let tombstones = 0;
    let tombstoneMin = Infinity;
    let newest = 0;
    let removed = 0;
    // One pass in bucket order: the states, the versions and the counts (assign takes the
    // arrays without a pass of its own).
    for (let i = 0; i < states.length; i++) {
      const state = states[i];
      if (state !== BUCKET_FULL) {
        if (state === BUCKET_REMOVED) removed++;
        else if (state !== BUCKET_EMPTY) fail(`version table bucket ${i} has state ${state}`);
        continue;
      }
      const held = vals[i];
      const v = held < 0 ? -held : held;
      if (!(v <= VERSION_MAX) || v !== Math.floor(v)) {
        fail(`version ${held} of point ${keys[i]} is not a version`);
      }
      if (held < 0) {
        tombstones++;
        if (v < tombstoneMin) tombstoneMin = v;
      } else live++;
      if (v > newest) newest = v;
    }
    if (live + tombstones !== n || n !== bulk.size || n + removed !== bulk.used) {
      fail(
        `the stored table holds ${live + tombstones} entries and ${removed} removed buckets, ` +
          `its counts say ${bulk.size} and ${bulk.used - bulk.size}, its list ${n}`,
      );
    }
    if (live !== this.index.count) {
      fail(`${live} live entries, but the index holds ${this.index.count} points`);
    }
    try {
      this.versions.assign(keys, vals, states, bulk.size, bulk.used);
    } catch (e) {
      fail((e as Error).message);
    }
    // Every entry where a lookup of its point finds it (so none is there twice), a live one for
    // a point of the index and a tombstone for none: with the counts above, the table then
    // holds exactly the index's points. One lookup in each table per entry, no insert (a
    // failure discards the table: each snapshot tried loads into a new one).
    const versions = this.versions;
    const index = this.index;
    for (let i = 0; i < states.length; i++) {
      if (states[i] !== BUCKET_FULL) continue;
      const pid = keys[i];
      if (versions.bucketOf(pid) !== i) {
        fail(`version table bucket ${i}: point ${pid} is not found there (or is there twice)`);
      }
      const live = !(vals[i] < 0); // as counted above
      if (index.has(pid) !== live) {
        fail(
          `version table bucket ${i} holds point ${pid} as ` +
            `${live ? "live, but the index lacks it" : "a tombstone, but the index holds it"}`,
        );
      }
    }
    this.tombstones = tombstones;
    this.tombstoneMin = tombstoneMin;
    // Observed by the clock once the file's checksum is known good (see readFrom).
    this.loadedVersionMax = newest;
  }

  /** The newest version {@link readFrom} read: the clock observes it once the load is valid. */
  loadedVersionMax = 0;

  /** Fills the table from a version-1 snapshot's index: every live point at version 0. */
  fillLegacy(): void {
    if (this.index.count === 0) return;
    // The index has no id iterator: a brute-force search whose filter rejects everything
    // visits every live point once.
    const probe = new Array<number>(this.index.dim).fill(1);
    this.index.exactSearch(probe, 1, {
      filter: (id) => {
        this.versions.set(id, 0);
        return false;
      },
    });
    if (this.versions.size !== this.index.count) {
      throw new CollectionStateError(
        `Listed ${this.versions.size} ids of an index that holds ${this.index.count} points`,
      );
    }
  }
}

const EMPTY = new Float32Array(0);

const payloadDecoder = new TextDecoder();

/** A stored payload (canonical JSON bytes, see payload.ts) as the object filters read. */
export function parsePayloadBytes(bytes: Uint8Array): object | null {
  return JSON.parse(payloadDecoder.decode(bytes)) as object | null;
}

/** A refused payload index definition (unknown type, bad field, too many, another type). */
export class FieldIndexError extends Error {
  override name = "FieldIndexError";
  constructor(message: string, readonly reason: "invalid" | "exists") {
    super(message);
  }
}

/**
 * Candidates (of an index plan with a residual check) up to which the search checks each one
 * first and scores the survivors exactly. The check parses a payload (microseconds each), so
 * beyond a few thousand candidates the filtered graph walk, which checks only the nodes it
 * visits, is cheaper.
 */
const IDS_PREFILTER_MAX = 4_096;

/** Whether sorted `ids` holds `id` (binary search). */
function sortedHas(ids: Uint32Array, id: number): boolean {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[mid] < id) lo = mid + 1;
    else hi = mid;
  }
  return lo < ids.length && ids[lo] === id;
}

/** A field name's canonical key, or a {@link FieldIndexError} naming it. */
function fieldKey(field: string): string {
  try {
    return canonicalKey(parseKey(field, "field"));
  } catch (e) {
    throw new FieldIndexError((e as Error).message, "invalid");
  }
}

export class Collection {
  readonly name: string;
  readonly dir: string;
  readonly config: CollectionConfig;
  readonly index: HnswIndex;
  /** Stamps writes that come without a version (see the module comment). */
  readonly clock: VersionClock;
  private readonly table: PointTable;
  private readonly wal: Wal;
  private readonly log: (message: string) => void;
  private readonly keep: number;
  /** Named by a {@link DiskFullError}. */
  private readonly dataDir: string;
  /** Sequence number of the last record applied to the index. */
  private applied: number;
  private snapshotSeq: number;
  private snapshotTimeMs: number;
  private snapshotting: Promise<void> | null = null;
  /** WAL segments a written snapshot covers, not deleted yet because the trim failed. */
  private trimPending: { before: number; snapshot_seq: number } | null = null;
  /** Records the WAL replayed at open (0 for a new collection). */
  readonly replayed: number;
  /** Tail of the apply queue (see {@link apply}). */
  private queue: Promise<void> = Promise.resolve();
  /**
   * Writes past their log append's start and not applied yet ({@link record} to the end of
   * {@link apply}); {@link close} waits for them, and `settled` is called when none is left.
   */
  private writing = 0;
  private settled: (() => void)[] = [];
  /** Index slots the writes counted in {@link writing} may take (see {@link holdSlots}). */
  private slotsHeld = 0;
  /** Writes applied since the last snapshot started. */
  opsSinceSnapshot = 0;
  /** Payload bytes of the last snapshot this process wrote (0: none yet). */
  lastSnapshotBytes = 0;
  private readonly observers: CollectionObservers;
  private closed = false;
  private readonly threads: GraphThreads | null;

  private constructor(
    dir: string,
    config: CollectionConfig,
    table: PointTable,
    wal: Wal,
    applied: number,
    snapshotSeq: number,
    snapshotTimeMs: number,
    options: CollectionOptions,
    replayed: number,
  ) {
    this.name = config.name;
    this.dir = dir;
    this.config = config;
    this.table = table;
    this.index = table.index;
    this.clock = table.clock;
    this.wal = wal;
    this.applied = applied;
    this.snapshotSeq = snapshotSeq;
    this.snapshotTimeMs = snapshotTimeMs;
    this.log = options.logger ?? ((m) => console.error(m));
    this.keep = options.snapshots_keep ?? 2;
    this.dataDir = options.data_dir ?? dir;
    this.replayed = replayed;
    this.observers = options.observers ?? {};
    const t = options.threads ?? null;
    this.threads = t !== null && (t.search > 1 || t.build > 1) ? t : null;
    this.wal.sync_observer = this.observers.wal_sync_seconds ?? null;
  }

  /**
   * Opens again, at `dir`, the collection `moved`: closed, its directory since renamed to `dir`
   * whole (a shard unit installed from an image, sharded_collection.ts `installUnit`). Nothing
   * is loaded again: the in-memory state (index, versions, payloads, digest) is reused and only
   * the log is opened, which holds no record `moved` had not applied (CollectionStateError
   * otherwise: the directory is not the one it closed).
   */
  static async reopenMoved(
    moved: Collection,
    dir: string,
    options: CollectionOptions = {},
  ): Promise<Collection> {
    if (!moved.closed) {
      throw new CollectionStateError(`Collection "${moved.name}" must be closed to be reopened`);
    }
    const wal = await Wal.open(join(dir, "wal"), {
      afterSeq: moved.applied,
      onRecord: (entry) => {
        throw new CollectionStateError(
          `Collection directory "${dir}" holds record ${entry.seq}, after the last one ` +
            `(${moved.applied}) of the collection moved there`,
        );
      },
      logger: options.logger,
      recovery: options.recovery,
      segment_bytes_max: options.segment_bytes_max,
      data_dir: options.data_dir,
    });
    // A name taken from the directory (a snapshot holds none) follows it, as an open would.
    const base = (d: string) => d.replace(/\/+$/, "").replace(/^.*\//, "");
    const name = moved.name === base(moved.dir) ? base(dir) : moved.name;
    // The close detached the index from the pool for good; this collection owns it now.
    options.threads?.pool.adopt(moved.index);
    const c = new Collection(
      dir,
      { ...moved.config, name },
      moved.table,
      wal,
      moved.applied,
      moved.snapshotSeq,
      moved.snapshotTimeMs,
      options,
      moved.replayed,
    );
    c.opsSinceSnapshot = moved.opsSinceSnapshot;
    c.trimPending = moved.trimPending;
    return c;
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
      ...quantizationOptions(config.quantization, config.rescore),
    });
    mkdirSync(join(dir, "snapshots"), { recursive: true });
    const wal = await Wal.open(join(dir, "wal"), {
      logger: options.logger,
      segment_bytes_max: options.segment_bytes_max,
      data_dir: options.data_dir,
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
      ...quantizationOptions(config.quantization, config.rescore),
    });
    const seq = await wal.append(type, payload);
    const table = new PointTable(index, options.clock ?? new VersionClock(options.now_ms));
    return new Collection(dir, config, table, wal, seq, 0, 0, options, 0);
  }

  /** Opens an existing collection: newest valid snapshot, then the WAL after it. */
  static async open(dir: string, options: CollectionOptions = {}): Promise<Collection> {
    const log = options.logger ?? ((m: string) => console.error(m));
    const clock = options.clock ?? new VersionClock(options.now_ms);
    // Milliseconds per part of the open, for the log line (where a restart's time goes).
    const phases: Record<string, number> = {};
    let lap = performance.now();
    const phase = (name: string) => {
      const now = performance.now();
      phases[name] = (phases[name] ?? 0) + now - lap;
      lap = now;
    };
    // The log's segments are read on the thread pool while the snapshot loads on this one
    // (wal.ts `prefetchSegments`): the scan after the load then finds them in memory.
    const prefetched = prefetchSegments(join(dir, "wal"));
    const snap = await loadNewestSnapshot(
      join(dir, "snapshots"),
      (r, _seq, version) => {
        lap = performance.now();
        // Version 6: the id map and the version table as their own arrays, taken whole.
        const bulk = version >= 6 ? readBulkSection(r) : null;
        phase("bulk");
        const table = new PointTable(HnswIndex.readFrom(r, bulk?.ids ?? null), clock);
        phase("index");
        if (version >= 2) table.readFrom(r, bulk?.versions ?? null);
        else table.fillLegacy();
        phase("versions");
        if (version >= 3) {
          try {
            table.payloads.readFrom(r, (id) => table.index.has(id));
          } catch (e) {
            if (!(e instanceof PayloadTableError)) throw e;
            throw new CollectionStateError(e.message);
          }
        }
        phase("payloads");
        if (version >= 4) table.readIndexesFrom(r);
        phase("payload_indexes");
        if (version >= 5) {
          try {
            table.keys.readFrom(r, table.inUse);
          } catch (e) {
            if (!(e instanceof KeyTableFormatError)) throw e;
            throw new CollectionStateError(e.message);
          }
        }
        phase("keys");
        // The load filled the version table without the digest: rebuilt when first read.
        table.invalidateDigest();
        return table;
      },
      { logger: log },
    );
    let table: PointTable | null = snap?.value ?? null;
    if (table !== null) clock.observe(table.loadedVersionMax);
    let config: CollectionConfig | null = table === null ? null : {
      name: "",
      dimension: table.index.dim,
      metric: table.index.metric,
      m: table.index.M,
      ef_construction: table.index.efConstruction,
      ...quantizationOptions(table.index.quantization, table.index.rescore),
    };
    let applied = snap?.seq ?? 0;
    let replayed = 0;
    const started = Date.now();
    lap = performance.now();
    const apply = (entry: WalEntry) => {
      const rec = decodeRecord(entry.type, entry.payload);
      if (rec.kind === "create_collection") {
        if (table === null) {
          config = {
            name: rec.collection,
            dimension: rec.dimension,
            metric: rec.metric,
            m: rec.m,
            ef_construction: rec.ef_construction,
            ...quantizationOptions(rec.quantization, rec.rescore),
          };
          table = new PointTable(
            new HnswIndex({
              dim: rec.dimension,
              metric: rec.metric,
              M: rec.m,
              efConstruction: rec.ef_construction,
              ...quantizationOptions(rec.quantization, rec.rescore),
            }),
            clock,
          );
        } else if (config !== null) {
          config.name = rec.collection;
        }
      } else {
        if (table === null) {
          throw new CollectionStateError(
            `Collection "${dir}": record ${entry.seq} (${rec.kind}) comes before any ` +
              `snapshot or creation record`,
          );
        }
        table.replay(rec);
        table.compactIfDue();
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
      prefetched,
      onRecord: apply,
      logger: log,
      recovery: options.recovery,
      segment_bytes_max: options.segment_bytes_max,
      data_dir: options.data_dir,
    });
    if (table === null || config === null) {
      await wal.close();
      if (replayed === 0 && (await listSnapshots(join(dir, "snapshots"))).length === 0) {
        throw new CollectionIncompleteError(dir);
      }
      throw new CollectionStateError(
        `Collection directory "${dir}" has no valid snapshot and no creation record`,
      );
    }
    const finalConfig = config as CollectionConfig;
    const finalTable = table as PointTable;
    phase("wal");
    if (snap !== null) {
      // Within the parts above: the file streams into the index and tables as they load.
      phases.of_which_file_read = snap.read_ms;
      phases.of_which_checksum = snap.checksum_ms;
    }
    const parts = Object.entries(phases).filter(([, ms]) => ms >= 0.5)
      .map(([name, ms]) => `${name} ${Math.round(ms)}`).join(", ");
    if (finalConfig.name === "") finalConfig.name = dir.replace(/\/+$/, "").replace(/^.*\//, "");
    validateCollectionName(finalConfig.name);
    log(
      `Collection "${finalConfig.name}": ${
        snap ? `snapshot at seq ${snap.seq}` : "no snapshot"
      }, replayed ${replayed} WAL records in ${Date.now() - started} ms, ` +
        `${finalTable.index.count} points, ${finalTable.tombstones} tombstones` +
        (parts === "" ? "" : ` (ms: ${parts})`),
    );
    return new Collection(
      dir,
      finalConfig,
      finalTable,
      wal,
      applied,
      snap?.seq ?? 0,
      snap?.created_ms ?? 0,
      options,
      replayed,
    );
  }

  /** `version` when given (observed by the clock), else a fresh stamp. */
  private stamp(version: number, field: string): number {
    checkVersion(version, field, 0);
    if (version === 0) return this.clock.next();
    this.clock.observe(version);
    return version;
  }

  /**
   * Inserts or replaces one point at `version` (0 or absent: stamped by the clock); resolves
   * once it is durable and applied. `applied` is false when the collection already held the id
   * at the same or a newer version (the write lost, see the module comment). `data` is the
   * point's payload (canonical JSON bytes from `parsePayload`); null or absent: none, which
   * clears a payload the point had.
   */
  async put(
    key: PointId,
    vector: ArrayLike<number>,
    version = 0,
    data: Uint8Array | null = null,
  ): Promise<{ seq: number; version: number; applied: boolean }> {
    this.checkOpen();
    const id = checkId(key);
    validateVector(vector, this.index.dim);
    checkPayload(data, "payload");
    const v = this.stamp(version, "version");
    const { type, payload } = encodeRecord({
      kind: "put",
      id,
      vector: Float32Array.from(vector),
      version: v,
      payload: data,
    });
    const seq = await this.record(type, payload, 1);
    let applied = false;
    await this.apply(seq, () => {
      applied = this.table.put(id, vector, v, data);
    }, 1);
    return { seq, version: v, applied };
  }

  /**
   * Inserts or replaces many points with one WAL record (one sync), all at `version` (0 or
   * absent: one stamp). When an id appears twice, the later point wins. `applied` counts the
   * points that won.
   */
  async putBatch(
    points: readonly Point[],
    version = 0,
  ): Promise<{ seq: number; version: number; applied: number }> {
    this.checkOpen();
    const dim = this.index.dim;
    validatePoints(points, dim);
    checkVersion(version, "version", 0);
    if (points.length === 0) return { seq: this.applied, version, applied: 0 };
    // Keep the last occurrence of each id, in order: with one version for the whole batch, an
    // earlier duplicate would otherwise win (a later one is not above it).
    const keep: number[] = [];
    const seen = new Set<PointId>();
    for (let i = points.length - 1; i >= 0; i--) {
      if (seen.has(points[i].id)) continue;
      seen.add(points[i].id);
      keep.push(i);
    }
    keep.reverse();
    const keys = new Array<PointId>(keep.length);
    const vectors = new Float32Array(keep.length * dim);
    const payloads = new Array<Uint8Array | null>(keep.length);
    keep.forEach((at, i) => {
      keys[i] = canonicalId(points[at].id);
      vectors.set(points[at].vector, i * dim);
      payloads[i] = points[at].payload ?? null;
    });
    const ids = recordIds(keys);
    const v = this.stamp(version, "version");
    const versions = new Float64Array(ids.length).fill(v);
    const { type, payload } = encodeRecord({
      kind: "put_batch",
      dimension: dim,
      ids,
      vectors,
      versions,
      payloads,
    });
    const seq = await this.record(type, payload, ids.length);
    let applied = 0;
    const t = this.threads;
    if (t !== null && t.build > 1 && this.index.batchable) {
      // Durable first (above); then the entries on this thread and the vectors linked on
      // `build` workers. The apply queue keeps batches (and every other write) in log order.
      await this.apply(seq, async () => {
        // Room for every vector first (a CapacityError then changes nothing): no entry may be
        // left without its vector. holdSlots, before logging, makes this one never fail.
        this.index.checkRoom(ids.length);
        const pids: number[] = [];
        const rows: number[] = [];
        for (let i = 0; i < ids.length; i++) {
          const pid = this.table.putEntry(ids[i], v, payloads[i]);
          if (pid < 0) continue;
          pids.push(pid);
          rows.push(i);
        }
        applied = pids.length;
        let vs = vectors;
        if (rows.length !== ids.length) {
          vs = new Float32Array(rows.length * dim);
          for (let j = 0; j < rows.length; j++) {
            vs.set(vectors.subarray(rows[j] * dim, (rows[j] + 1) * dim), j * dim);
          }
        }
        await t.pool.addBatch(this.index, pids, vs, t.build);
      }, ids.length);
      return { seq, version: v, applied };
    }
    await this.apply(seq, async () => {
      for (let i = 0; i < ids.length; i++) {
        const vector = vectors.subarray(i * dim, (i + 1) * dim);
        if (this.table.put(ids[i], vector, v, payloads[i])) applied++;
        // A large batch would otherwise hold the event loop for seconds: gossip probes
        // would time out and the node would look dead. The apply queue keeps the order.
        if ((i + 1) % APPLY_SLICE_POINTS === 0 && i + 1 < ids.length) await yieldToLoop();
      }
    }, ids.length);
    return { seq, version: v, applied };
  }

  /**
   * Deletes a point durably at `version` (0 or absent: stamped). The delete is logged and, when
   * its version is above the held one, leaves a tombstone even when the point is absent, so a
   * replica or copy that missed it cannot bring the point back. Resolves with whether a live
   * point was removed, the sequence number, the version and whether the delete applied.
   */
  async delete(
    key: PointId,
    version = 0,
  ): Promise<{ deleted: boolean; seq: number; version: number; applied: boolean }> {
    this.checkOpen();
    const id = checkId(key);
    const v = this.stamp(version, "version");
    const { type, payload } = encodeRecord({ kind: "delete", id, version: v });
    const seq = await this.record(type, payload);
    let result = { applied: false, removed: false };
    await this.apply(seq, () => {
      result = this.table.delete(id, v);
    });
    return { deleted: result.removed, seq, version: v, applied: result.applied };
  }

  /**
   * Applies entries copied from another node (live points and tombstones, versions 1 ..
   * VERSION_MAX) with one WAL record: each only when its version is above the held one.
   */
  async copy(
    entries: readonly CopyEntry[],
  ): Promise<{ applied: number; skipped: number; seq: number }> {
    this.checkOpen();
    const dim = this.index.dim;
    const n = entries.length;
    validateCopyEntries(entries, dim);
    if (n === 0) return { applied: 0, skipped: 0, seq: this.applied };
    for (let i = 0; i < n; i++) this.clock.observe(entries[i].version);
    // Entries already held at the same or a newer version are skipped before logging: held
    // versions only grow, so they would be skipped at apply time too. Anti-entropy sends every
    // entry to every owner, and most are such repeats.
    const fresh: number[] = [];
    let live = 0;
    for (let i = 0; i < n; i++) {
      const held = this.table.held(canonicalId(entries[i].id));
      if (!applies(entries[i].version, entries[i].deleted, held)) continue;
      fresh.push(i);
      if (!entries[i].deleted) live++;
    }
    if (fresh.length === 0) return { applied: 0, skipped: n, seq: this.applied };
    const m = fresh.length;
    const keys = new Array<PointId>(m);
    const versions = new Float64Array(m);
    const deleted = new Uint8Array(m);
    const vectors = new Float32Array(live * dim);
    const payloads = new Array<Uint8Array | null>(m);
    live = 0;
    for (let j = 0; j < m; j++) {
      const e = entries[fresh[j]];
      keys[j] = canonicalId(e.id);
      versions[j] = e.version;
      deleted[j] = e.deleted ? 1 : 0;
      payloads[j] = e.deleted ? null : e.payload ?? null;
      if (!e.deleted) vectors.set(e.vector!, live++ * dim);
    }
    const ids = recordIds(keys);
    const { type, payload } = encodeRecord({
      kind: "copy",
      dimension: dim,
      ids,
      versions,
      deleted,
      vectors,
      payloads,
    });
    const seq = await this.record(type, payload, live);
    let applied = 0;
    await this.apply(seq, async () => {
      let at = 0;
      for (let i = 0; i < m; i++) {
        const tomb = deleted[i] === 1;
        const vector = tomb ? EMPTY : vectors.subarray(at * dim, ++at * dim);
        if (this.table.copyEntry(ids[i], versions[i], tomb, vector, payloads[i])) applied++;
        if ((i + 1) % APPLY_SLICE_POINTS === 0 && i + 1 < m) await yieldToLoop();
      }
    }, live);
    return { applied, skipped: n - applied, seq };
  }

  /**
   * Forgets entries (live points or tombstones, leaving no tombstone) durably, each only when
   * the version held for it is at most the given one. `versions[i]` goes with `ids[i]`.
   */
  async forget(
    ids: ArrayLike<PointId>,
    versions: ArrayLike<number>,
  ): Promise<{ forgotten: number; skipped: number; seq: number }> {
    this.checkOpen();
    if (ids.length !== versions.length) {
      throw new RangeError(`${ids.length} ids come with ${versions.length} versions`);
    }
    const n = ids.length;
    const keys = new Array<PointId>(n);
    const versionArray = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      keys[i] = checkId(ids[i], `ids[${i}]`);
      checkVersion(versions[i], `versions[${i}]`, 0);
      versionArray[i] = versions[i];
    }
    const idArray = recordIds(keys);
    if (n === 0) return { forgotten: 0, skipped: 0, seq: this.applied };
    for (let i = 0; i < n; i++) this.clock.observe(versionArray[i]);
    const { type, payload } = encodeRecord({
      kind: "forget",
      ids: idArray,
      versions: versionArray,
    });
    const seq = await this.record(type, payload);
    let forgotten = 0;
    await this.apply(seq, async () => {
      for (let i = 0; i < n; i++) {
        if (this.table.forget(idArray[i], versionArray[i])) forgotten++;
        if ((i + 1) % APPLY_SLICE_POINTS === 0 && i + 1 < n) await yieldToLoop();
      }
    });
    return { forgotten, skipped: n - forgotten, seq };
  }

  /**
   * The k nearest live points to `vector`, nearest first; with a non-empty `filter`, only
   * points that match it. The filter is planned over the payload indexes (filter_plan.ts):
   *
   * | plan                 | search                                                         |
   * |----------------------|----------------------------------------------------------------|
   * | `all`                | unfiltered HNSW search                                         |
   * | `ids`, exact         | `filteredSearch` over the id list (exact scoring when few)     |
   * | `ids`, with a check  | up to IDS_PREFILTER_MAX candidates: checked first, then as an  |
   * |                      | exact list; more: a test (in the list and passes the check)    |
   * | `predicate`          | `filteredSearch` with a test, at the planner's selectivity     |
   * |                      | when every condition was estimated from an index               |
   */
  search(
    vector: ArrayLike<number>,
    k: number,
    ef?: number,
    filter?: Filter | null,
  ): KeyHit[] {
    return this.keyHits(this.searchPids(vector, k, ef, filter));
  }

  /**
   * {@link search}, on a worker thread of the node's pool when it can take it (unfiltered,
   * `search` threads > 1; float or int8 codes), else on this thread. A worker that fails is not the
   * caller's problem: the search runs again here.
   */
  async searchAsync(
    vector: ArrayLike<number>,
    k: number,
    ef?: number,
    filter?: Filter | null,
  ): Promise<SearchOutcome> {
    const t = this.threads;
    const index = this.index;
    // Closed (a unit swapped out by installUnit/dropUnit, still read meanwhile): the pool
    // detached the index and answers null, so the search runs on this thread.
    // Before any worker has loaded (the first searches after a start): on this thread too,
    // rather than waiting for a thread's start-up (`ready` starts the workers).
    if (
      t !== null && t.search > 1 &&
      (filter === undefined || filter === null || isEmptyFilter(filter)) && t.pool.ready
    ) {
      validateVector(vector, index.dim, "vector");
      const e = index.searchEf(k, ef);
      if (index.count === 0) return { hits: [], ef: e, visited: 0 };
      const p = t.pool.search(index, vector, k, e, t.search);
      if (p !== null) {
        try {
          const r = await p;
          const hits = r.hits;
          let live = true;
          for (let i = 0; i < hits.length && live; i++) live = index.has(hits[i].id);
          // A point deleted while the search ran (its pid maybe released) must be left out,
          // and the answer would then be short of k: searched again here instead, on the
          // current state (rare: only a delete racing the search).
          if (live) return { hits: this.keyHits(hits), ef: e, visited: r.visited };
        } catch (err) {
          if (!(err instanceof ThreadPoolError)) throw err;
        }
      }
    }
    const hits = this.search(vector, k, ef, filter);
    return { hits, ef: index.lastSearchEf, visited: index.lastVisited };
  }

  /** Hits with pids turned into ids (the same objects when every id is a uint32 one). */
  private keyHits(hits: Hit[]): KeyHit[] {
    if (this.table.keys.size === 0) return hits;
    return hits.map((h) => ({ id: this.table.keys.keyOf(h.id), distance: h.distance }));
  }

  /** `filter` with its has_id ids turned into pids (filter_plan.ts: resolveHasIds). */
  private resolved(filter: Filter): Filter {
    return resolveHasIds(filter, (id) => this.table.pidOf(id), this.table.keys.size === 0);
  }

  private searchPids(
    vector: ArrayLike<number>,
    k: number,
    ef?: number,
    filter?: Filter | null,
  ): Hit[] {
    // Named after the API field, so the error a client sees points at what it sent.
    validateVector(vector, this.index.dim, "vector");
    if (filter === undefined || filter === null || isEmptyFilter(filter)) {
      return this.index.search(vector, k, { ef });
    }
    const live = this.index.count;
    const plan = planFilter(this.resolved(filter), this.table.indexes, live);
    const options = { ef: ef === undefined ? undefined : Math.max(ef, k) };
    let planned: PlannedFilter;
    if (plan.kind === "all") return this.index.search(vector, k, { ef });
    if (plan.kind === "ids" && (plan.exact || plan.ids.length <= IDS_PREFILTER_MAX)) {
      const ids = plan.exact ? plan.ids : this.passing(plan.ids, this.tester(plan.check!));
      planned = { ids };
    } else if (plan.kind === "ids") {
      const inList = this.tester(plan.check!);
      const ids = plan.ids;
      planned = {
        test: (id) => sortedHas(ids, id) && inList(id),
        selectivity: live === 0 ? 0 : Math.min(1, plan.cardinality.exp / live),
      };
    } else {
      planned = {
        test: this.tester(plan.check),
        selectivity: plan.known && live > 0 ? Math.min(1, plan.cardinality.exp / live) : undefined,
      };
    }
    return this.index.filteredSearch(vector, k, planned, options);
  }

  /**
   * The exact k nearest live points to `vector` (matching `filter` when given), by brute force
   * with the same batch kernels: the reference a recall measurement compares the graph search
   * with (SearchRequest.exact). Costs one distance per live point (per matching point with a
   * filter), so it is for sampling, not serving.
   */
  exactSearch(vector: ArrayLike<number>, k: number, filter?: Filter | null): KeyHit[] {
    return this.keyHits(this.exactSearchPids(vector, k, filter));
  }

  private exactSearchPids(vector: ArrayLike<number>, k: number, filter?: Filter | null): Hit[] {
    validateVector(vector, this.index.dim, "vector");
    if (filter === undefined || filter === null || isEmptyFilter(filter)) {
      return this.index.exactSearch(vector, k);
    }
    const live = this.index.count;
    const plan = planFilter(this.resolved(filter), this.table.indexes, live);
    if (plan.kind === "all") return this.index.exactSearch(vector, k);
    let planned: PlannedFilter;
    if (plan.kind === "ids") {
      planned = { ids: plan.exact ? plan.ids : this.passing(plan.ids, this.tester(plan.check!)) };
    } else {
      // Selectivity given (any): no sampling, the plan is exact whatever it is.
      planned = { test: this.tester(plan.check), selectivity: 1 };
    }
    // exactMax past any count: the planner scores every match, never walks the graph.
    return this.index.filteredSearch(vector, k, planned, { exactMax: 2 ** 32 });
  }

  /** The payload of a live point as filters read it (parsed JSON), or null. */
  private payloadObject(id: number): object | null {
    const bytes = this.table.payloads.get(id);
    return bytes === null ? null : parsePayloadBytes(bytes);
  }

  /** `check` as a test of one id (the payload parsed only when the check reads it). */
  private tester(check: Predicate): (id: number) => boolean {
    let at = 0;
    const payload = () => this.payloadObject(at);
    return (id) => {
      at = id;
      return check(id, payload);
    };
  }

  /** The ids of sorted `ids` that are live points and pass `test`, sorted. */
  private passing(ids: Uint32Array, test?: (id: number) => boolean): Uint32Array {
    const out = new Uint32Array(ids.length);
    let n = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (this.index.has(id) && (test === undefined || test(id))) out[n++] = id;
    }
    return out.subarray(0, n);
  }

  /**
   * A test of whether an id is a live point matching `filter` (every live point when it is
   * null or empty), for paging reads (Scroll, Entries). Valid until the next write applies.
   */
  matcher(filter: Filter | null | undefined): (id: PointId) => boolean {
    const test = this.pidMatcher(filter);
    if (this.table.keys.size === 0) {
      return (id) => isU32Id(id) && test(id);
    }
    return (id) => {
      const pid = this.table.pidOf(id);
      return pid >= 0 && test(pid);
    };
  }

  private pidMatcher(filter: Filter | null | undefined): (id: number) => boolean {
    if (filter === undefined || filter === null || isEmptyFilter(filter)) {
      return (id) => this.index.has(id);
    }
    const plan = planFilter(this.resolved(filter), this.table.indexes, this.index.count);
    if (plan.kind === "all") return (id) => this.index.has(id);
    if (plan.kind === "predicate") {
      const test = this.tester(plan.check);
      return (id) => this.index.has(id) && test(id);
    }
    const ids = plan.ids;
    if (plan.exact) return (id) => sortedHas(ids, id) && this.index.has(id);
    const test = this.tester(plan.check!);
    return (id) => sortedHas(ids, id) && this.index.has(id) && test(id);
  }

  /**
   * The live points matching `filter`, ascending (all of them for null or an empty filter).
   * An exact index plan reads no payload.
   */
  matchingIds(filter: Filter | null | undefined): PointId[] {
    let pids: Uint32Array | null = null;
    if (filter !== undefined && filter !== null && !isEmptyFilter(filter)) {
      const plan = planFilter(this.resolved(filter), this.table.indexes, this.index.count);
      if (plan.kind === "ids") {
        pids = this.passing(plan.ids, plan.exact ? undefined : this.tester(plan.check!));
      }
    }
    if (pids === null) {
      const test = this.pidMatcher(filter);
      const known = this.table.knownPids();
      const out = new Uint32Array(this.index.count);
      let n = 0;
      for (let i = 0; i < known.length && n < out.length; i++) {
        if (test(known[i])) out[n++] = known[i];
      }
      pids = out.subarray(0, n);
    }
    const ids = Array.from(pids, (p) => this.table.keys.keyOf(p));
    return this.table.keys.size === 0 ? ids : ids.sort(compareIds);
  }

  /** Live points matching `filter` (all of them for null or an empty filter). */
  count(filter?: Filter | null): number {
    if (filter === undefined || filter === null || isEmptyFilter(filter)) return this.index.count;
    const plan = planFilter(this.resolved(filter), this.table.indexes, this.index.count);
    if (plan.kind === "all") return this.index.count;
    if (plan.kind === "ids") {
      return this.passing(plan.ids, plan.exact ? undefined : this.tester(plan.check!)).length;
    }
    const test = this.tester(plan.check);
    let n = 0;
    this.table.versions.forEach((held, id) => {
      if (held >= 0 && test(id)) n++;
    });
    return n;
  }

  /**
   * Builds a payload index of `type` on `field` (a dotted key), durably (a WAL record, then
   * the build). `created` is false when the field already has an index of this type. Throws
   * {@link FieldIndexError}: `invalid` for an unknown type, a bad field name or one index over
   * PAYLOAD_INDEXES_MAX; `exists` when the field has an index of another type.
   */
  async createFieldIndex(field: string, type: string): Promise<{ created: boolean; seq: number }> {
    this.checkOpen();
    if (!(PAYLOAD_FIELD_TYPES as readonly string[]).includes(type)) {
      throw new FieldIndexError(
        `type ${JSON.stringify(String(type).slice(0, 64))} is not one of ${
          PAYLOAD_FIELD_TYPES.join(", ")
        }`,
        "invalid",
      );
    }
    const key = fieldKey(field);
    const held = this.table.fieldIndexes.get(key);
    if (held === type) return { created: false, seq: this.applied };
    if (held !== undefined) {
      throw new FieldIndexError(
        `field ${JSON.stringify(key)} already has a ${held} index (drop it to index it as ${type})`,
        "exists",
      );
    }
    if (this.table.fieldIndexes.size >= PAYLOAD_INDEXES_MAX) {
      throw new FieldIndexError(
        `a collection has at most ${PAYLOAD_INDEXES_MAX} payload indexes; drop one before ` +
          `indexing ${JSON.stringify(key)}`,
        "invalid",
      );
    }
    const { type: t, payload } = encodeRecord({ kind: "create_field_index", field: key, type });
    const seq = await this.record(t, payload);
    await this.apply(seq, () => this.table.defineIndex(key, type));
    return { created: true, seq };
  }

  /** Drops the payload index on `field` durably; `dropped` false when it had none. */
  async dropFieldIndex(field: string): Promise<{ dropped: boolean; seq: number }> {
    this.checkOpen();
    const key = fieldKey(field);
    if (!this.table.fieldIndexes.has(key)) return { dropped: false, seq: this.applied };
    const { type, payload } = encodeRecord({ kind: "drop_field_index", field: key });
    const seq = await this.record(type, payload);
    await this.apply(seq, () => {
      this.table.dropIndex(key);
    });
    return { dropped: true, seq };
  }

  /** The payload indexes, sorted by field. */
  fieldIndexes(): PayloadIndexInfo[] {
    return this.table.indexes.list();
  }

  /**
   * Deletes many ids at one `version` (0: stamped) with one WAL record (a COPY record whose
   * entries are all tombstones, which applies exactly like that many deletes). Repeated ids
   * count once. `deleted`: live points removed; `removed`, when given, receives their ids (a
   * router counts each id once across replicas from them).
   */
  async deleteBatch(
    ids: ArrayLike<PointId>,
    version = 0,
    removed?: Set<PointId>,
  ): Promise<{ deleted: number; applied: number; seq: number; version: number }> {
    this.checkOpen();
    const keys = Array.from(ids, (id, i) => checkId(id, `ids[${i}]`));
    const v = this.stamp(version, "version");
    keys.sort(compareIds);
    let m = 0;
    for (let i = 0; i < keys.length; i++) {
      if (m === 0 || keys[i] !== keys[m - 1]) keys[m++] = keys[i];
    }
    if (m === 0) return { deleted: 0, applied: 0, seq: this.applied, version: v };
    keys.length = m;
    const list = recordIds(keys);
    const { type, payload } = encodeRecord({
      kind: "copy",
      dimension: this.index.dim,
      ids: list,
      versions: new Float64Array(m).fill(v),
      deleted: new Uint8Array(m).fill(1),
      vectors: EMPTY,
    });
    const seq = await this.record(type, payload);
    let deleted = 0;
    let applied = 0;
    await this.apply(seq, async () => {
      for (let i = 0; i < m; i++) {
        const r = this.table.delete(list[i], v);
        if (r.applied) applied++;
        if (r.removed) {
          deleted++;
          removed?.add(keys[i]);
        }
        if ((i + 1) % APPLY_SLICE_POINTS === 0 && i + 1 < m) await yieldToLoop();
      }
    });
    return { deleted, applied, seq, version: v };
  }

  get(id: PointId): Float32Array | null {
    const pid = this.table.pidOf(checkId(id));
    return pid < 0 ? null : this.index.get(pid);
  }

  /**
   * The payload of the live point `id` (canonical JSON bytes), or null when it has none (or is
   * absent). A view into the payload store: valid until the next write applies, so decode or
   * copy it before awaiting anything.
   */
  getPayload(id: PointId): Uint8Array | null {
    const pid = this.table.pidOf(checkId(id));
    return pid < 0 ? null : this.table.payloads.get(pid);
  }

  /** What the collection holds for `id`: vector, version, tombstone (see {@link Entry}). */
  getEntry(id: PointId): Entry {
    return this.table.entry(checkId(id));
  }

  /**
   * Every id the collection holds an entry for (live points and tombstones), in `compareIds`
   * order: a snapshot in time (O(n log n), 4 bytes per uint32 id).
   */
  knownIds(): IdList {
    return this.table.knownIds();
  }

  /** The root digest of the entries (common/digest.ts): O(1), kept current by every write. */
  digestRoot(): RootDigest {
    return this.table.digest.root();
  }

  /** Every bucket's digest in wire form (common/digest.ts `UnitDigest.bucketBytes`). */
  digestBuckets(): Uint8Array {
    return this.table.digest.bucketBytes();
  }

  /**
   * Up to `max` tombstones whose delete version is below `before` (what tombstone collection
   * forgets, see src/node/tombstone_gc.ts), with their versions: one pass over the version
   * table, none when the collection holds no tombstone or none older than `before` can be held
   * (the table's lower bound of tombstone versions, which each pass makes exact again: a
   * collection ticking every minute walks the table only when some tombstone is due, not on
   * every tick while recent ones wait).
   */
  expiredTombstones(before: number, max: number): { ids: PointId[]; versions: number[] } {
    const ids: PointId[] = [];
    const versions: number[] = [];
    const t = this.table;
    if (t.tombstones === 0) t.tombstoneMin = Infinity;
    if (t.tombstones === 0 || max < 1 || before <= t.tombstoneMin) return { ids, versions };
    // The bound becomes the least version seen, returned ones included: they stay held until
    // forgotten (a failed FORGET keeps them), and the next pass drops them from the bound.
    let least = Infinity;
    t.versions.forEach((held, pid) => {
      if (held >= 0) return;
      if (-held < least) least = -held;
      if (ids.length < max && -held < before) {
        ids.push(t.keys.keyOf(pid));
        versions.push(-held);
      }
    });
    t.tombstoneMin = least;
    return { ids, versions };
  }

  /** Explicit entries of the key table (ids that are not their own pid). */
  get keyTableSize(): number {
    return this.table.keys.size;
  }

  /** Sequence number of the last write applied. */
  get lastSeq(): number {
    return this.applied;
  }

  /** Entries held: live points plus tombstones (no I/O, unlike {@link stats}). */
  get entryCount(): number {
    return this.table.versions.size;
  }

  stats(): {
    count: number;
    tombstones: number;
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
      tombstones: this.table.tombstones,
      dimension: this.index.dim,
      metric: this.index.metric,
      memory_bytes: this.index.memoryBytes + this.table.payloads.memoryBytes +
        this.table.indexes.memoryBytes() + this.table.keys.memoryBytes,
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
    if (this.applied === this.snapshotSeq && this.trimPending === null) return Promise.resolve();
    const work = this.applied === this.snapshotSeq
      ? this.trimWal().then(() => {})
      : this.writeSnapshotNow();
    const run = work.finally(() => {
      this.snapshotting = null;
    });
    this.snapshotting = run;
    return run;
  }

  /**
   * Writes a snapshot of everything applied so far into `dir` (a backup's directory; see
   * backups.ts), leaving the collection's own snapshots, WAL and write count alone. The image is
   * taken between two applies, as for {@link snapshot}, so it is exactly the state after `seq`.
   */
  async backupTo(dir: string): Promise<{
    path: string;
    seq: number;
    points: number;
    tombstones: number;
    created_ms: number;
    payload_bytes: number;
  }> {
    this.checkOpen();
    const { seq, image, points, tombstones } = await this.serial(() => {
      const sink = new BufferSink({ initial_bytes: 1 << 20, bytes_max: SNAPSHOT_IMAGE_BYTES_MAX });
      const w = new BinaryWriter(sink);
      // Slots go out in locality order (index/reorder.ts), so whatever loads the image (a
      // restart, a transfer, a restore) walks a graph whose neighbours sit near in memory.
      const order = this.index.localityOrder();
      writeBulkSection(w, this.index, order, this.table.versions);
      this.index.writeTo(w, order);
      this.table.writeTo(w);
      this.table.payloads.writeTo(w);
      this.table.writeIndexesTo(w);
      this.table.keys.writeTo(w);
      w.flush();
      return {
        seq: this.applied,
        image: sink.view(),
        points: this.index.count,
        tombstones: this.table.tombstones,
      };
    });
    const created_ms = Date.now();
    const written = await writeSnapshot(dir, seq, async (out) => {
      for (let at = 0; at < image.length; at += SNAPSHOT_CHUNK_BYTES) {
        out.raw(image.subarray(at, Math.min(image.length, at + SNAPSHOT_CHUNK_BYTES)));
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    }, { keep: 1, created_ms, logger: this.log });
    return {
      path: written.path,
      seq,
      points,
      tombstones,
      created_ms,
      payload_bytes: written.payload_bytes,
    };
  }

  private async writeSnapshotNow(): Promise<void> {
    const started = Date.now();
    const t0 = performance.now();
    // The image is taken synchronously between two applies (in the apply queue), so it is
    // exactly the state after `seq`, never half of a batch.
    const { seq, image, ops } = await this.serial(() => {
      const sink = new BufferSink({ initial_bytes: 1 << 20, bytes_max: SNAPSHOT_IMAGE_BYTES_MAX });
      const w = new BinaryWriter(sink);
      // Slots go out in locality order (index/reorder.ts), so whatever loads the image (a
      // restart, a transfer, a restore) walks a graph whose neighbours sit near in memory.
      const order = this.index.localityOrder();
      writeBulkSection(w, this.index, order, this.table.versions);
      this.index.writeTo(w, order);
      this.table.writeTo(w);
      this.table.payloads.writeTo(w);
      this.table.writeIndexesTo(w);
      this.table.keys.writeTo(w);
      w.flush();
      const ops = this.opsSinceSnapshot;
      this.opsSinceSnapshot = 0;
      return { seq: this.applied, image: sink.view(), ops };
    });
    const snapshots = join(this.dir, "snapshots");
    let written: WrittenSnapshot;
    try {
      written = await writeSnapshot(snapshots, seq, async (out) => {
        for (let at = 0; at < image.length; at += SNAPSHOT_CHUNK_BYTES) {
          out.raw(image.subarray(at, Math.min(image.length, at + SNAPSHOT_CHUNK_BYTES)));
          await new Promise((resolve) => setTimeout(resolve, 0));
        }
      }, { keep: this.keep, logger: this.log });
    } catch (e) {
      // Nothing is lost (the WAL holds every write); they count towards the next attempt.
      this.opsSinceSnapshot += ops;
      if (diskFullCode(e) === null || e instanceof DiskFullError) throw e;
      throw new DiskFullError(
        this.dataDir,
        (e as NodeJS.ErrnoException).path ?? snapshots,
        e,
        `snapshot of collection "${this.name}" at seq ${seq} not written (the WAL still holds ` +
          `every write; retried later)`,
      );
    }
    this.observers.snapshot_seconds?.observe((performance.now() - t0) / 1000);
    this.observers.snapshot_bytes?.observe(written.payload_bytes);
    this.lastSnapshotBytes = written.payload_bytes;
    this.snapshotSeq = seq;
    this.snapshotTimeMs = Date.now();
    const kept = await listSnapshots(snapshots);
    this.trimPending = { before: Math.min(...kept.map((s) => s.seq)), snapshot_seq: seq };
    const deleted = await this.trimWal();
    this.log(
      `Collection "${this.name}": snapshot at seq ${seq} (${written.payload_bytes} bytes) in ` +
        `${Date.now() - started} ms; ${deleted} WAL segments deleted`,
    );
  }

  /**
   * Records the newest snapshot's seq in the WAL's CONTROL and deletes the segments the oldest
   * kept snapshot covers; kept pending (retried by the next {@link snapshot}) when it fails.
   */
  private async trimWal(): Promise<number> {
    const pending = this.trimPending;
    if (pending === null) return 0;
    const deleted = await this.wal.truncateBefore(pending.before, pending.snapshot_seq);
    if (this.trimPending === pending) this.trimPending = null;
    return deleted;
  }

  /** Waits for pending writes and closes the log. Optionally snapshots first. */
  async close(options: { snapshot?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    // The log is closed even when the snapshot fails (e.g. a full disk): nothing is lost, the
    // next open replays it. The failure is reported after.
    let failure: unknown = null;
    if (options.snapshot) {
      try {
        await this.snapshot();
      } catch (e) {
        failure = e;
      }
    } else if (this.snapshotting) {
      await this.snapshotting.catch(() => {}); // its own caller reports a failure
    }
    this.closed = true;
    // Writes whose record the log holds apply first (one under way when the close began, e.g.
    // a batch linking on build workers): the index then holds every record up to `applied`
    // (reopenMoved starts the log there) and nothing uses the pool for it after the detach.
    while (this.writing > 0) await new Promise<void>((r) => this.settled.push(r));
    await this.queue;
    await this.threads?.pool.detach(this.index);
    await this.wal.close();
    if (failure !== null) throw failure;
  }

  /**
   * Appends a record to the log for a write that applies it next ({@link apply}): counted in
   * {@link writing} until then, so {@link close} waits for it.
   */
  private async record(type: number, payload: Uint8Array, slots = 0): Promise<number> {
    this.holdSlots(slots);
    this.writing++;
    try {
      return await this.wal.append(type, payload);
    } catch (e) {
      this.written(slots);
      throw e;
    }
  }

  private written(slots: number): void {
    this.slotsHeld -= slots;
    if (--this.writing === 0) { for (const resolve of this.settled.splice(0)) resolve(); }
  }

  /**
   * Throws what {@link holdSlots} would for a write of `n` points now, holding nothing: a
   * sharded collection checks every unit's share of a batch before any unit logs its share
   * (a write that takes slots meanwhile may still make a unit refuse its share).
   */
  checkRoom(n: number): void {
    this.holdSlots(n);
    this.slotsHeld -= n;
  }

  /**
   * Holds `n` index slots for a write about to be logged (each point it inserts may take one),
   * or throws CapacityError (RESOURCE_EXHAUSTED) when the slots taken, those held by writes
   * logged and not applied yet, and `n` pass the index's limit: the write is refused whole
   * before it is logged, so no record ever applies in part (an id without its vector, or a
   * replay that fails) and a restart finds exactly what was applied.
   */
  private holdSlots(n: number): void {
    if (n === 0) return;
    const index = this.index;
    const need = index.slotsUsed + this.slotsHeld + n;
    if (need > index.maxCapacity) {
      throw new CapacityError(
        `Collection "${this.name}": ${n} points would need ${need} index slots; the index ` +
          `holds at most ${index.maxCapacity} (dimension ${index.dim}; ${index.deletedCount} ` +
          `slots are deleted points not compacted yet). Nothing was written: delete points or ` +
          `spread the collection over more shards`,
      );
    }
    this.slotsHeld += n;
  }

  private checkOpen(): void {
    if (this.closed) throw new CollectionStateError(`Collection "${this.name}" is closed`);
  }

  /**
   * Applies a durable record to the index through the apply queue: one apply at a time, in
   * the order the WAL made records durable (which is sequence order), even when an apply
   * yields to the event loop part-way (large batches do).
   */
  private apply(seq: number, fn: () => void | Promise<void>, slots = 0): Promise<void> {
    return this.serial(async () => {
      try {
        this.advance(seq);
        await fn();
        // Deletes leave compaction to here (PointTable); worker searches are waited for first.
        if (this.threads !== null) await this.threads.pool.compactIfDue(this.index);
        else this.table.compactIfDue();
      } finally {
        this.written(slots);
      }
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

  /** The id order {@link sortedIds} built last, and the state it was built from. */
  private idOrder: { seq: number; entries: number; ids: IdList } | null = null;

  /**
   * Every id the collection holds an entry for (live points and tombstones), ascending, for
   * paging (Scroll, Transfer.Entries): like {@link knownIds}, but the array is kept and handed
   * out again (callers must not change it) until a write changes the state. It is rebuilt (a
   * sort, O(n log n)) when the last applied sequence number or the entry count moved since: a
   * record only adds ids (puts, copies) or only removes them (forgets), so between two reads
   * that see the same sequence number and count — even inside one record applied in slices —
   * the set of ids is the same. Paging a collection nobody writes costs one sort in all.
   */
  sortedIds(): IdList {
    const o = this.idOrder;
    if (o !== null && o.seq === this.applied && o.entries === this.table.versions.size) {
      return o.ids;
    }
    const ids = this.table.knownIds();
    this.idOrder = { seq: this.applied, entries: ids.length, ids };
    return ids;
  }
}

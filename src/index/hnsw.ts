/**
 * Hierarchical Navigable Small World graph (Malkov & Yashunin, 2016) over vectors held in one
 * WebAssembly memory ({@link VectorStore}).
 *
 * Data layout (no object per node):
 *
 * | array        | type        | per slot                  | meaning                              |
 * |--------------|-------------|---------------------------|--------------------------------------|
 * | `links0`     | Uint32Array | `1 + 2M` words            | layer-0 link count, then the links   |
 * | `upper`      | Uint32Array | `level * (1 + M)` words   | layers 1..level, each count + links  |
 * | `upperOff`   | Int32Array  | 1                         | a slot's block in `upper`, -1 if none|
 * | `upperAlloc` | Uint8Array  | 1                         | levels its block has room for        |
 * | `levels`     | Uint8Array  | 1                         | the slot's top layer                 |
 * | `labels`     | Uint32Array | 1                         | the point id stored in the slot      |
 * | `flags`      | Uint8Array  | 1                         | 0 live, 1 deleted (still linked), 2 free |
 * | `visited`    | Uint8Array  | 1                         | epoch stamp of the last visit        |
 * | `fstate`     | Uint8Array  | 1                         | filter verdict stamp of a search     |
 *
 * Deletion is a tombstone: the node stays in the graph for navigation but never appears in a
 * result. When tombstones pass `compactRatio` of the slots in use, {@link HnswIndex.compact}
 * relinks every node that pointed at a tombstone (candidates: its live neighbours plus the live
 * neighbours of the deleted ones, chosen again with the heuristic) and frees the slots, which
 * later inserts reuse. An upsert of an existing id is a delete followed by an insert.
 *
 * Cosine vectors are normalised on insert and searched with the inner-product kernel.
 * Reported distances: Euclidean distance for `l2`, `1 - cos` for `cosine`, `1 - a.b` for `dot`.
 *
 * @example
 * ```ts
 * import { HnswIndex } from "./hnsw.ts";
 * const index = new HnswIndex({ dim: 3, metric: "l2" });
 * index.add(100, [0.1, 0.2, 0.3]);
 * index.add(101, [0.9, 0.8, 0.7]);
 * console.log(index.search([0.1, 0.2, 0.3], 1)[0].id); // 100
 * ```
 *
 * Size: one graph (~1,000 lines): insert, search, delete, compaction and the one serialisation
 * path all walk the same flat link arrays; keeping them together keeps the layout in one place.
 * @module
 */
import { instantiateSharedKernels, type Metric } from "../kernels/kernels.ts";
import { BATCH_MAX, CapacityError, VectorStore } from "./vector_store.ts";
import {
  createLayout,
  type GraphLayout,
  H_CAPACITY,
  H_ENTRY,
  H_LINK_END,
  H_LINK_NEXT,
  H_MAX_LEVEL,
  MAX_GRAPH_THREADS,
  SharedGraph,
  STATE_DELETED,
  STATE_EMPTY,
  STATE_LIVE,
  STATE_PENDING,
  strideOf,
} from "./shared_graph.ts";
import { MaxHeap, MinHeap } from "./heap.ts";
import { IdMap } from "./id_map.ts";
import { BinaryFormatError, type BinaryReader, type BinaryWriter } from "../io/binary.ts";
import {
  CodeStore,
  DEFAULT_CLIP,
  DEFAULT_RESCORE,
  DEFAULT_TRAIN_SIZE,
  MAX_RESCORE,
  type Quantization,
  ScalarQuantizer,
  TRAIN_SAMPLE_MAX,
} from "./quantizer.ts";
import {
  checkPermutation,
  DEFAULT_REORDER,
  gatherRows,
  inversePermutation,
  isIdentity,
  localityOrder,
  permuteRows,
  type ReorderKind,
  type SlotGraph,
} from "./reorder.ts";

/**
 * Serialised form of an index ({@link HnswIndex.writeTo} / {@link HnswIndex.readFrom}); the
 * container (snapshot file, transfer stream, test buffer) adds its own framing and checksum.
 * All integers little-endian; arrays are u32 element count, then raw elements.
 *
 * | field            | type          | meaning                                        |
 * |------------------|---------------|------------------------------------------------|
 * | magic            | u32           | 0x57534e48 ("HNSW")                            |
 * | version          | u32           | 1                                              |
 * | dim, M           | u32, u32      | parameters                                     |
 * | metric           | u8            | 0 l2, 1 cosine, 2 dot                          |
 * | efConstruction   | u32           |                                                |
 * | ef               | u32           | default search ef                              |
 * | compactRatio     | f64           |                                                |
 * | rng              | u32           | level generator state                          |
 * | size, live, deleted | u32 x 3    | slots used, live points, tombstones            |
 * | entry, maxLevel  | i32, i32      | entry point slot and its level (-1: empty)     |
 * | vectors          | f32[]         | size x stride floats (stored form)             |
 * | links0           | u32[]         | size x (1 + 2M)                                |
 * | levels, flags    | bytes, bytes  | size each                                      |
 * | labels           | u32[]         | size                                           |
 * | upperOff         | i32[]         | size                                           |
 * | upperAlloc       | bytes         | size                                           |
 * | upper            | u32[]         | the used part of the upper-layer pool          |
 * | freeSlots        | i32[]         | free slots                                     |
 *
 * Version 2 (written only for a quantized index; an index without quantization still writes
 * version 1, and both load) appends the quantization section:
 *
 * | field            | type          | meaning                                        |
 * |------------------|---------------|------------------------------------------------|
 * | quantization     | u8            | 1 int8                                         |
 * | rescore          | u32           | default re-ranking factor                      |
 * | trainSize        | u32           | points at which the quantizer trains           |
 * | trained          | u8            | 0 not yet, 1 trained (the fields below follow) |
 * | lo, scale        | f32[], f32[]  | dim each: the per-dimension ranges             |
 * | codes            | bytes         | size x codeRowBytes code rows (quantizer.ts)   |
 */
const INDEX_MAGIC = 0x57534e48;
const INDEX_VERSION = 1;
/** Image version of a quantized index (adds the quantization section). */
const INDEX_VERSION_QUANTIZED = 2;
const QUANTIZATION_CODES: Record<Quantization, number> = { none: 0, int8: 1 };
const METRIC_CODES: Record<Metric, number> = { l2: 0, cosine: 1, dot: 2 };
const METRIC_NAMES: Metric[] = ["l2", "cosine", "dot"];

/** Construction and search parameters. */
export interface HnswOptions {
  /** Vector dimension, fixed for the index. */
  dim: number;
  metric?: Metric;
  /** Links per node on layers above 0 (layer 0 holds 2·M). Default 16. */
  M?: number;
  /** Candidate list size while inserting. Default 200. */
  efConstruction?: number;
  /** Default candidate list size while searching (raised to k when smaller). Default 64. */
  ef?: number;
  /** Slots to reserve up front. Default 1024. */
  capacity?: number;
  /** Seed of the level generator, so builds are reproducible. Default 42. */
  seed?: number;
  /** Compact when tombstones exceed this fraction of the slots in use. Default 0.1. */
  compactRatio?: number;
  /**
   * `int8`: search walks the graph over one-byte codes and re-ranks the best `rescore * k`
   * candidates exactly from the float vectors (quantizer.ts). Default `none`.
   */
  quantization?: Quantization;
  /** Re-ranking factor of a quantized search (1 .. 1000). Default 4. */
  rescore?: number;
  /**
   * Live points at which the int8 quantizer trains its ranges (from every point then in the
   * index) and encodes them; until then search uses the floats. Default 4096.
   */
  trainSize?: number;
}

/** One search hit. */
export interface Hit {
  id: number;
  distance: number;
}

/** Allow-list for filtered search: a predicate over ids or a set of ids. */
export type IdFilter = ((id: number) => boolean) | Set<number>;

/** Per-search options. */
export interface SearchOptions {
  ef?: number;
  filter?: IdFilter;
  /** Re-ranking factor of a quantized index for this search (default: the index's). */
  rescore?: number;
}

/**
 * A filter already evaluated by the caller (the collection's planner), for
 * {@link HnswIndex.filteredSearch}: either the exact list of matching ids, or a test per id
 * with an estimate of the fraction of live points it passes.
 */
export type PlannedFilter =
  | {
    /** Matching point ids, ascending and without repeats (ids not in the index are skipped). */
    ids: Uint32Array;
    /** How many of `ids` to use (default: all of it). */
    count?: number;
  }
  | {
    /**
     * True for an id that matches. Called at most once per slot per search; it must not call
     * back into the index (the search's scratch state is in use).
     */
    test: (id: number) => boolean;
    /** Estimated fraction of live points that match, in [0, 1]; sampled when absent. */
    selectivity?: number;
  };

/** Options of {@link HnswIndex.filteredSearch}. */
export interface FilteredSearchOptions {
  /** Candidate list size of the graph walk (default: the index's `ef`, raised to k). */
  ef?: number;
  /**
   * Forces the plan: score every match exactly when at most this many points are expected to
   * match, else walk the graph (0: always walk, unless nothing can match). Absent: exact up to
   * {@link HnswIndex.filterExactMax}, and above it whenever exact scoring is cheaper than the
   * walk by {@link HnswIndex.filterGraphCost}.
   */
  exactMax?: number;
}

/** How the last {@link HnswIndex.filteredSearch} ran (for metrics and tests). */
export type FilterPlan = "none" | "empty" | "exact" | "graph" | "graph-2hop";

/** Selectivity at or above which the filtered walk steps through rejected nodes (one hop). */
export const ONE_HOP_MIN_SELECTIVITY = 0.3;
/** Live slots tested to estimate a predicate's selectivity when the caller gives none. */
export const SELECTIVITY_SAMPLE = 128;

const FLAG_LIVE = 0;
const FLAG_DELETED = 1;
const FLAG_FREE = 2;
/**
 * Placed by {@link HnswIndex.placeBatch}, not linked yet: never a result of any search (never
 * written to a snapshot either: snapshots wait for the batch).
 */
const FLAG_PENDING = 3;
/**
 * Most slots one index may hold: the WASM memory's 4 GiB of vectors, and at most 2^24 so the
 * address space reserved for the growable link buffers stays bounded (2.2 GB for M = 16).
 */
export const MAX_SLOTS = 1 << 24;
/** Highest layer a node may have: a u8, and far above what M >= 2 ever draws in practice. */
const MAX_LEVEL = 31;
export const MAX_M = 256;
export const MAX_EF = 100_000;
export const MAX_K = 100_000;

/** Throws unless `vector` is a non-empty array of `dim` finite numbers. */
export function validateVector(vector: ArrayLike<number>, dim: number, field = "vector"): void {
  if (vector === null || typeof vector !== "object" || typeof vector.length !== "number") {
    throw new TypeError(`${field} must be an array of numbers, got ${typeof vector}`);
  }
  if (vector.length === 0) throw new RangeError(`${field} is empty`);
  if (vector.length !== dim) {
    throw new RangeError(
      `${field} has dimension ${vector.length}; the index dimension is ${dim}`,
    );
  }
  for (let i = 0; i < vector.length; i++) {
    const x = vector[i];
    if (typeof x !== "number") throw new TypeError(`${field}[${i}] is not a number: ${x}`);
    if (!Number.isFinite(x)) throw new RangeError(`${field}[${i}] is ${x}`);
  }
}

/** Throws unless `id` is an integer in 0 .. 2^32 - 1. */
export function validateId(id: number): void {
  if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id > 0xffffffff) {
    throw new RangeError(`id ${id} must be an integer between 0 and 4294967295`);
  }
}

function checkInt(name: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} ${v} must be an integer between ${min} and ${max}`);
  }
  return v;
}

/** Serialisable parameters of an index. */
export interface HnswParams {
  dim: number;
  metric: Metric;
  M: number;
  efConstruction: number;
  ef: number;
  /** Absent or `none` for a float-only index. */
  quantization?: Quantization;
  rescore?: number;
  trainSize?: number;
}

/** A table the walk scores against: the float vectors or the int8 codes. */
interface DistanceSource {
  u32: Uint32Array;
  f32: Float32Array;
  readonly slotsIdx: number;
  readonly outIdx: number;
  distancesToSlots(qPtr: number, n: number): void;
  distanceTo(qPtr: number, slot: number): number;
}

export class HnswIndex {
  readonly dim: number;
  readonly metric: Metric;
  readonly M: number;
  readonly M0: number;
  readonly efConstruction: number;
  /** Default search ef. */
  ef: number;
  readonly store: VectorStore;
  /** Default re-ranking factor of a quantized search. */
  rescore: number;
  private quant: Quantization;
  private quantTrainSize: number;
  /** The int8 code rows once trained (null: float-only, or not trained yet). */
  codes: CodeStore | null = null;
  private readonly mL: number;
  private readonly compactRatio: number;

  private capacity = 0;
  /** Slots handed out so far (live, deleted or free). */
  private size = 0;
  private live = 0;
  private deleted = 0;
  private rng: number;
  /**
   * The graph's shared buffers (shared_graph.ts): the vectors, link lists, levels, labels,
   * states and seq words below live there, so worker threads (graph_pool.ts) search and link
   * this very graph. The per-slot arrays here are fixed-length views, replaced on growth.
   */
  readonly layout: GraphLayout;
  /** This thread's handle on the layout (scratch block 0): every insert is linked by it. */
  readonly graph: SharedGraph;
  private readonly header: Int32Array;
  /** Slots the layout's buffers can ever hold. */
  readonly maxCapacity: number;
  /**
   * True while a pool may search this index on other threads: {@link delete} then leaves
   * compaction to the owner ({@link compactDue}), which runs it with those searches quiesced.
   */
  deferCompaction = false;

  private links0: Uint32Array<ArrayBufferLike> = new Uint32Array(0);
  private upper: Uint32Array<ArrayBufferLike> = new Uint32Array(0);
  private upperUsed = 0;
  private upperOff: Int32Array<ArrayBufferLike> = new Int32Array(0);
  private upperAlloc = new Uint8Array(0);
  private levels: Uint8Array<ArrayBufferLike> = new Uint8Array(0);
  private labels: Uint32Array<ArrayBufferLike> = new Uint32Array(0);
  private flags = new Uint8Array(0);
  /** Shared state per slot (STATE_*), what worker searches read; kept beside `flags`. */
  private states: Uint8Array<ArrayBufferLike> = new Uint8Array(0);
  /** One byte per slot so the whole set stays in L2; cleared every 255 searches. */
  private visited = new Uint8Array(0);
  private epoch = 0;
  private freeSlots = new Int32Array(0);
  private freeCount = 0;
  /**
   * Filter verdict per slot for the current filtered search: `fPass` passes, `fPass + 1` is
   * rejected, anything else not yet tested. Stamps step by 2 per search, so nothing is cleared
   * per query (only when the byte wraps, every 127 searches).
   */
  private fstate = new Uint8Array(0);
  private fPass = 0;
  private fTest: ((id: number) => boolean) | null = null;
  private fIds: Uint32Array = new Uint32Array(0);
  private fCount = 0;
  /** Scratch: the rejected neighbours of the node being expanded, walked through in two-hop mode. */
  private readonly hopBuf: Uint32Array;
  /** xorshift32 state for selectivity samples (separate from the level generator). */
  private sampleRng = 0x9e3779b9;
  private readonly ids: IdMap;

  private readonly cand: MinHeap;
  private readonly res: MaxHeap;
  /** Candidates for the selection heuristic, popped nearest first. */
  private readonly sel: MinHeap;
  /** Scratch for compaction: a list's deleted links, and candidates the heuristic passed over. */
  private readonly deadBuf: Uint32Array;
  private readonly restBuf: Uint32Array;

  constructor(options: HnswOptions) {
    const dim = checkInt("dim", options.dim, 1, 65536);
    this.dim = dim;
    this.metric = options.metric ?? "l2";
    if (this.metric !== "l2" && this.metric !== "cosine" && this.metric !== "dot") {
      throw new TypeError(`Unknown metric "${this.metric}"; expected one of l2, cosine, dot`);
    }
    this.M = checkInt("M", options.M ?? 16, 2, MAX_M);
    this.M0 = 2 * this.M;
    this.efConstruction = checkInt("efConstruction", options.efConstruction ?? 200, 1, MAX_EF);
    this.ef = checkInt("ef", options.ef ?? 64, 1, MAX_EF);
    this.compactRatio = options.compactRatio ?? 0.1;
    if (!(this.compactRatio > 0 && this.compactRatio <= 1)) {
      throw new RangeError(`compactRatio ${this.compactRatio} must be in (0, 1]`);
    }
    this.mL = 1 / Math.log(this.M);
    this.rng = (options.seed ?? 42) >>> 0 || 1;
    const strideBytes = strideOf(dim) * 4;
    // The store's query and batch buffers come first (below the threads' scratch blocks).
    const ownerBytes = Math.ceil(strideBytes / 64) * 64 + 64 + BATCH_MAX * 8;
    const roomBytes = 2 ** 32 - 4096 - ownerBytes - MAX_GRAPH_THREADS * (strideBytes + 4096);
    this.maxCapacity = Math.max(1, Math.min(MAX_SLOTS, Math.floor(roomBytes / strideBytes)));
    this.layout = createLayout({
      dim,
      metric: this.metric,
      M: this.M,
      efConstruction: this.efConstruction,
      maxCapacity: this.maxCapacity,
      threads: MAX_GRAPH_THREADS,
      ownerBytes,
    });
    this.store = new VectorStore(dim, this.metric, {
      kernels: instantiateSharedKernels(this.layout.memory),
      limitPtr: this.layout.scratchPtr,
      vectorsPtr: this.layout.vectorsPtr,
    });
    this.graph = new SharedGraph(this.layout, 0);
    this.header = this.graph.header;
    this.quant = options.quantization ?? "none";
    if (this.quant !== "none" && this.quant !== "int8") {
      throw new TypeError(`Unknown quantization "${this.quant}"; expected none or int8`);
    }
    this.rescore = checkInt("rescore", options.rescore ?? DEFAULT_RESCORE, 1, MAX_RESCORE);
    this.quantTrainSize = checkInt(
      "trainSize",
      options.trainSize ?? DEFAULT_TRAIN_SIZE,
      1,
      2 ** 32 - 1,
    );
    this.ids = new IdMap(options.capacity ?? 1024);
    this.cand = new MinHeap(256);
    this.res = new MaxHeap(256);
    this.sel = new MinHeap(4 * this.M0);
    this.deadBuf = new Uint32Array(this.M0 + 1);
    this.restBuf = new Uint32Array(this.M0 + 1);
    this.hopBuf = new Uint32Array(this.M0 + 1);
    this.filterHopBudget = this.M0;
    this.reserve(checkInt("capacity", options.capacity ?? 1024, 0, 1 << 30));
  }

  /** Parameters, as a snapshot stores them. */
  get params(): HnswParams {
    const p: HnswParams = {
      dim: this.dim,
      metric: this.metric,
      M: this.M,
      efConstruction: this.efConstruction,
      ef: this.ef,
    };
    if (this.quantization !== "none") {
      p.quantization = this.quantization;
      p.rescore = this.rescore;
      p.trainSize = this.trainSize;
    }
    return p;
  }

  /** Vector quantization, fixed at construction. */
  get quantization(): Quantization {
    return this.quant;
  }

  /** Live points at which the quantizer trains (see {@link HnswOptions.trainSize}). */
  get trainSize(): number {
    return this.quantTrainSize;
  }

  /** Bytes of one int8 code row (0 while there are no codes). */
  get codeBytesPerVector(): number {
    return this.codes === null ? 0 : this.codes.codeRowBytes;
  }

  /**
   * Trains the int8 quantizer from the points in the index now (up to
   * {@link TRAIN_SAMPLE_MAX}, evenly spaced) and encodes every slot; later inserts are encoded
   * as they come, clipped to these ranges. Called by {@link add} when the index first holds
   * `trainSize` live points; callable earlier (or again, to retrain). Throws for an index
   * without quantization or without live points.
   */
  trainQuantizer(clip = DEFAULT_CLIP): void {
    if (this.quantization === "none") {
      throw new TypeError("trainQuantizer: the index has no quantization");
    }
    if (this.live === 0) throw new RangeError("trainQuantizer: the index holds no live points");
    const store = this.store;
    const step = Math.max(1, Math.floor(this.live / TRAIN_SAMPLE_MAX));
    const sample = new Float32Array(Math.min(this.live, TRAIN_SAMPLE_MAX) * this.dim);
    let n = 0, seen = 0;
    const f32 = store.f32;
    for (let s = 0; s < this.size && n * this.dim < sample.length; s++) {
      if (this.flags[s] !== FLAG_LIVE) continue;
      if (seen++ % step !== 0) continue;
      const p = store.ptr(s) >>> 2;
      sample.set(f32.subarray(p, p + this.dim), n * this.dim);
      n++;
    }
    const qz = ScalarQuantizer.train(sample, n, this.dim, this.dim, clip);
    const codes = new CodeStore(this.dim, this.metric, qz, this.M0 + 1, this.maxCapacity);
    this.fillCodes(codes);
    this.codes = codes;
  }

  /** Encodes every slot in use into `codes` (sized to the index's capacity) and mirrors the graph. */
  private fillCodes(codes: CodeStore): void {
    codes.reserve(this.capacity);
    const store = this.store;
    for (let s = 0; s < this.size; s++) codes.write(s, store.f32, store.ptr(s) >>> 2);
    codes.syncGraph(this.links0, this.flags, this.size);
  }

  /**
   * Mirrors an insert into the code store (its codes are written before it is linked): the
   * slot's flag and layer-0 list, and the
   * lists of its layer-0 neighbours (the insert added itself to them, pruning some).
   */
  private mirrorInsert(codes: CodeStore, slot: number): void {
    codes.setFlag(slot, FLAG_LIVE);
    const row0 = this.M0 + 1;
    const links = this.links0;
    const off = slot * row0;
    codes.setLinks(slot, links, off);
    const cnt = links[off];
    for (let j = 1; j <= cnt; j++) {
      const n = links[off + j];
      codes.setLinks(n, links, n * row0);
    }
  }

  /** Live points. */
  get count(): number {
    return this.live;
  }

  /** Tombstones not yet compacted away. */
  get deletedCount(): number {
    return this.deleted;
  }

  /** Entry point slot (-1: empty), in the shared header so every thread sees it. */
  private get entry(): number {
    return this.header[H_ENTRY];
  }

  /** Top layer of the entry point (-1: empty). */
  private get maxLevel(): number {
    return this.header[H_MAX_LEVEL];
  }

  /**
   * Slots taken (live points, and deleted ones until compaction frees them): an insert takes
   * one more (a replaced point's old slot stays taken until then), at most {@link maxCapacity}.
   */
  get slotsUsed(): number {
    return this.size - this.freeCount;
  }

  /**
   * Throws CapacityError unless `n` more inserts fit under {@link maxCapacity} (grows nothing):
   * a caller that must not change anything else when an insert would fail checks first.
   */
  checkRoom(n: number): void {
    const need = this.slotsUsed + n;
    if (need > this.maxCapacity) {
      throw new CapacityError(
        `${need} slots pass the index's limit of ${this.maxCapacity} (dimension ${this.dim})`,
      );
    }
  }

  /** Every byte the index holds: the WASM memory and all typed arrays. */
  get memoryBytes(): number {
    return this.store.memoryBytes + (this.codes === null ? 0 : this.codes.memoryBytes) +
      this.links0.byteLength + this.upper.byteLength +
      this.upperOff.byteLength + this.upperAlloc.byteLength + this.levels.byteLength +
      this.labels.byteLength + this.flags.byteLength + this.visited.byteLength +
      this.states.byteLength * 5 +
      this.fstate.byteLength +
      this.freeSlots.byteLength + this.ids.bytes + this.cand.bytes + this.res.bytes +
      this.sel.bytes;
  }

  /** Makes room for `n` slots without further growth. */
  reserve(n: number): void {
    if (n <= this.capacity) return;
    if (n > this.maxCapacity) {
      throw new CapacityError(
        `${n} slots pass the index's limit of ${this.maxCapacity} (dimension ${this.dim})`,
      );
    }
    this.store.reserve(n);
    this.codes?.reserve(n);
    // The shared buffers grow in place (worker threads keep reading them); new bytes are zero.
    const L = this.layout;
    const grow = (b: SharedArrayBuffer, bytes: number) => {
      // deno-lint-ignore no-explicit-any
      if (b.byteLength < bytes) (b as any).grow(bytes);
    };
    grow(L.links0, n * (this.M0 + 1) * 4);
    grow(L.upperOff, n * 4);
    grow(L.levels, n);
    grow(L.states, n);
    grow(L.labels, n * 4);
    grow(L.seq, n * 4);
    grow(L.batch, n * 4);
    this.links0 = new Uint32Array(L.links0, 0, n * (this.M0 + 1));
    this.upperOff = new Int32Array(L.upperOff, 0, n);
    this.upperOff.fill(-1, this.capacity);
    this.levels = new Uint8Array(L.levels, 0, n);
    this.states = new Uint8Array(L.states, 0, n);
    this.labels = new Uint32Array(L.labels, 0, n);
    const alloc = new Uint8Array(n);
    alloc.set(this.upperAlloc);
    this.upperAlloc = alloc;
    const flags = new Uint8Array(n);
    flags.set(this.flags);
    this.flags = flags;
    this.visited = new Uint8Array(n);
    this.epoch = 0;
    this.fstate = new Uint8Array(n);
    this.fPass = 0;
    const free = new Int32Array(n);
    free.set(this.freeSlots);
    this.freeSlots = free;
    // Expected upper-layer words: n / (M - 1) nodes above layer 0 on average, (1 + M) words
    // per layer; start with that and double on demand.
    const upperWant = Math.ceil((n / (this.M - 1)) * (this.M + 1) * 1.1) + 64;
    if (upperWant > this.upper.length) this.growUpper(upperWant);
    this.capacity = n;
    this.graph.refreshViews();
    Atomics.store(this.header, H_CAPACITY, n);
  }

  /** Grows the upper-layer pool in place to at least `words` words (doubling). */
  private growUpper(words: number): void {
    const b = this.layout.upper;
    // deno-lint-ignore no-explicit-any
    const max = (b as any).maxByteLength as number;
    const want = Math.min(max, Math.max(words * 4, b.byteLength * 2));
    if (words * 4 > max) {
      throw new CapacityError(`the upper-layer link pool needs ${words * 4} bytes of ${max}`);
    }
    // deno-lint-ignore no-explicit-any
    if (want > b.byteLength) (b as any).grow(want);
    this.upper = new Uint32Array(b, 0, b.byteLength >>> 2);
  }

  /** True when `id` is a live point. */
  has(id: number): boolean {
    return this.ids.get(id) >= 0;
  }

  /** The stored vector of `id` (normalised for cosine), or null. */
  get(id: number): Float32Array | null {
    const slot = this.ids.get(id);
    return slot < 0 ? null : this.store.read(slot);
  }

  /** Inserts or replaces the point `id`. */
  add(id: number, vector: ArrayLike<number>): void {
    validateId(id);
    validateVector(vector, this.dim);
    const slot = this.place(id, vector, 0);
    // The codes before the links: a worker's int8 walk (graph_pool.ts) may reach the slot as
    // soon as a neighbour lists it.
    this.codes?.write(slot, this.store.f32, this.store.ptr(slot) >>> 2);
    // Solo: no batch is being linked (the caller applies writes one at a time).
    this.graph.link(slot, this.batchSize === 0);
    this.flags[slot] = FLAG_LIVE;
    if (this.codes !== null) {
      this.mirrorInsert(this.codes, slot);
    } else if (this.quantization !== "none" && this.live >= this.trainSize) {
      this.trainQuantizer();
    }
  }

  /**
   * Takes a slot for `id` (the vector from `src` at `offset`, already validated), writes its
   * vector, label, level and empty lists, and marks it pending: ready for
   * {@link SharedGraph.link} (on this thread or a worker). An older point of `id` becomes a
   * tombstone first.
   */
  private place(id: number, src: ArrayLike<number>, offset: number, retire = false): number {
    const old = this.ids.get(id);
    if (old >= 0) {
      if (retire && this.flags[old] !== FLAG_PENDING) {
        // A batch keeps the old point live (navigable, and in results) until the batch is
        // linked: deleting every old version first would cut the new points off the graph.
        this.ids.delete(id);
        this.live--;
        this.retired.push(old);
      } else {
        this.delete(id);
      }
    }
    const slot = this.allocSlot();
    const store = this.store;
    if (offset === 0) {
      store.write(slot, src);
    } else {
      const f32 = store.f32;
      const base = store.ptr(slot) >>> 2;
      for (let i = 0; i < this.dim; i++) f32[base + i] = src[offset + i];
      for (let i = this.dim; i < store.stride; i++) f32[base + i] = 0;
      if (this.metric === "cosine") store.kernels.normalize(store.ptr(slot), store.stride);
    }
    this.labels[slot] = id;
    this.flags[slot] = FLAG_PENDING;
    this.ids.set(id, slot);
    this.live++;
    this.ensureUpper(slot, this.randomLevel());
    this.links0[slot * (this.M0 + 1)] = 0;
    Atomics.store(this.states, slot, STATE_PENDING);
    return slot;
  }

  /** Removes `id`; returns whether it was present. */
  delete(id: number): boolean {
    validateId(id);
    const slot = this.ids.delete(id);
    if (slot < 0) return false;
    // A pending slot (its batch still linking) stays a tombstone: link() leaves it deleted.
    this.flags[slot] = FLAG_DELETED;
    Atomics.store(this.states, slot, STATE_DELETED);
    this.codes?.setFlag(slot, FLAG_DELETED);
    this.live--;
    this.deleted++;
    if (!this.deferCompaction && this.compactDue()) this.compact();
    return true;
  }

  /**
   * First half of a parallel insert: places every point of the batch (`ids[i]` with vector
   * `vectors[i*dim ..]`; a later repeat of an id wins; a point the batch replaces stays live
   * until {@link finishBatch}, then becomes a tombstone) as a pending slot, lists the slots in the layout's batch buffer for
   * {@link SharedGraph.linkBatch}, and returns how many there are. The caller then links them
   * (on this thread or on pool workers, graph_pool.ts) and calls {@link finishBatch}; nothing
   * else may change the index in between. Pending slots are never search results.
   * Float indexes and trained int8 ones ({@link batchable}). Levels are drawn in batch order; without
   * replaced points, one thread linking the batch in order builds the graph {@link add} in a
   * loop builds.
   */
  placeBatch(ids: ArrayLike<number>, vectors: ArrayLike<number>): number {
    if (!this.batchable) {
      throw new TypeError("placeBatch: an int8 index inserts with add until its quantizer trains");
    }
    const n = ids.length;
    const dim = this.dim;
    if (vectors.length !== n * dim) {
      throw new RangeError(
        `vectors has ${vectors.length} floats; ${n} ids of dimension ${dim} need ${n * dim}`,
      );
    }
    for (let i = 0; i < n; i++) {
      validateId(ids[i]);
      for (let j = 0; j < dim; j++) {
        const x = vectors[i * dim + j];
        if (typeof x !== "number" || !Number.isFinite(x)) {
          throw new RangeError(`vectors[${i * dim + j}] is ${x}`);
        }
      }
    }
    this.reserve(this.size - this.freeCount + n);
    // Compaction would free tombstoned pending slots before they are linked: after the batch.
    const defer = this.deferCompaction;
    this.deferCompaction = true;
    const batch = new Int32Array(this.layout.batch, 0, n);
    this.retired.length = 0;
    try {
      const codes = this.codes;
      const store = this.store;
      for (let i = 0; i < n; i++) {
        const slot = this.place(ids[i], vectors, i * dim, true);
        batch[i] = slot;
        // The codes before the links (a worker's int8 walk may reach the slot once linked).
        if (codes !== null) codes.write(slot, store.f32, store.ptr(slot) >>> 2);
      }
    } finally {
      this.deferCompaction = defer;
    }
    this.batchSize = n;
    Atomics.store(this.header, H_LINK_END, n);
    Atomics.store(this.header, H_LINK_NEXT, 0);
    return n;
  }

  /**
   * Second half of a parallel insert: every slot of the batch is linked; marks them live
   * (those not deleted meanwhile) and compacts when due (unless deferred to the owner).
   * Slots a failed worker left pending (claimed, maybe half linked) are linked again here
   * first: their neighbours may then list them twice, which searches tolerate.
   */
  finishBatch(): void {
    const n = this.batchSize;
    const batch = new Int32Array(this.layout.batch, 0, n);
    // Slots nobody claimed (a worker failed), then those a failed worker left half linked.
    this.graph.linkBatch();
    for (let i = 0; i < n; i++) {
      const slot = batch[i];
      if (Atomics.load(this.states, slot) === STATE_PENDING) this.graph.link(slot);
      if (this.flags[slot] === FLAG_PENDING) this.flags[slot] = FLAG_LIVE;
    }
    // The points the batch replaced become tombstones now (their ids map to the new slots).
    for (const old of this.retired) {
      this.flags[old] = FLAG_DELETED;
      Atomics.store(this.states, old, STATE_DELETED);
      this.deleted++;
    }
    this.retired.length = 0;
    this.batchSize = 0;
    // The owner's int8 walk reads links mirrored into the code rows: the batch changed the
    // lists of its slots and of nodes no longer listed by them (pruned since), so all of them.
    this.codes?.syncGraph(this.links0, this.flags, this.size);
    if (!this.deferCompaction && this.compactDue()) this.compact();
  }

  /**
   * Whether {@link placeBatch} may be used: a float index, or an int8 one whose quantizer has
   * trained (before, inserts go through {@link add}, which trains at `trainSize` points).
   */
  get batchable(): boolean {
    return this.quantization === "none" || this.codes !== null;
  }

  private batchSize = 0;
  /** Slots of points the current batch replaces (tombstoned by finishBatch). */
  private readonly retired: number[] = [];

  /** Whether tombstones passed `compactRatio` of the slots in use (see {@link compact}). */
  compactDue(): boolean {
    return this.deleted > this.compactRatio * this.size && this.deleted >= 8;
  }

  /**
   * The k nearest live points to `query`, nearest first.
   * `ef` (default: the index's `ef`, raised to k) bounds the candidate list.
   */
  search(query: ArrayLike<number>, k: number, options: SearchOptions = {}): Hit[] {
    validateVector(query, this.dim, "query");
    const ef = this.searchEf(k, options.ef);
    const rescore = options.rescore === undefined
      ? this.rescore
      : checkInt("rescore", options.rescore, 1, MAX_RESCORE);
    if (this.entry < 0 || this.live === 0) return [];
    const filter = options.filter ?? null;
    const store = this.store;
    store.setQuery(query);
    const codes = this.codes;
    const src: DistanceSource = codes === null ? store : codes;
    if (codes !== null) codes.setQuery(store.f32, store.queryIdx);
    const q = store.queryPtr;
    let cur = this.entry;
    let curDist = src.distanceTo(q, cur);
    for (let l = this.maxLevel; l > 0; l--) {
      cur = this.greedy(src, q, cur, l);
      curDist = this.lastGreedyDist;
    }
    this.lastSearchEf = ef;
    if (codes !== null && filter === null) {
      // The whole layer-0 walk runs in WASM over the codes and the mirrored links.
      codes.search0(cur, ef);
      this.lastVisited = codes.lastSeen;
      this.rerankCodes(codes, Math.max(k, rescore * k), k);
      return this.takeResults(k);
    }
    this.searchLayer(src, q, cur, curDist, ef, 0, true, filter);
    if (codes !== null) this.rerank(Math.max(k, rescore * k), k);
    return this.takeResults(k);
  }

  /**
   * The ef a search of k results runs with: `ef` (checked: at least k) or the index's default
   * raised to k. Throws a RangeError naming a bad k or ef.
   */
  searchEf(k: number, ef?: number): number {
    checkInt("k", k, 1, MAX_K);
    if (ef === undefined) return Math.max(this.ef, k);
    checkInt("ef", ef, 1, MAX_EF);
    if (ef < k) throw new RangeError(`ef ${ef} must be at least k ${k}`);
    return ef;
  }

  /**
   * Exact re-ranking after {@link CodeStore.search0}: the best `r` of its results are scored
   * from the float vectors in one batch; the k nearest are left in `this.res`.
   */
  private rerankCodes(codes: CodeStore, r: number, k: number): void {
    const m = codes.trim(r);
    const store = this.store;
    const u32 = store.u32;
    const si = store.slotsIdx;
    for (let j = 0; j < m; j++) u32[si + j] = codes.resultSlot(j);
    store.distancesToSlots(store.queryPtr, m);
    const f32 = store.f32;
    const oi = store.outIdx;
    const res = this.res;
    res.clear();
    for (let j = 0; j < m; j++) {
      const d = f32[oi + j];
      if (res.size < k || d < res.topKey()) {
        res.push(d, u32[si + j]);
        if (res.size > k) res.pop();
      }
    }
  }

  /**
   * Exact re-ranking of a search over codes: keeps the best `r` approximate results in
   * `this.res`, scores them from the float vectors in one batch, and leaves the k nearest
   * by exact distance in `this.res`.
   */
  private rerank(r: number, k: number): void {
    const res = this.res;
    while (res.size > r) res.pop();
    const m = res.size;
    const store = this.store;
    const u32 = store.u32;
    const si = store.slotsIdx;
    for (let j = 0; j < m; j++) u32[si + j] = res.pop();
    store.distancesToSlots(store.queryPtr, m);
    const f32 = store.f32;
    const oi = store.outIdx;
    for (let j = 0; j < m; j++) {
      const d = f32[oi + j];
      if (res.size < k || d < res.topKey()) {
        res.push(d, u32[si + j]);
        if (res.size > k) res.pop();
      }
    }
  }

  /** Exact k nearest live points by brute force with the same kernels. */
  exactSearch(query: ArrayLike<number>, k: number, options: { filter?: IdFilter } = {}): Hit[] {
    validateVector(query, this.dim, "query");
    checkInt("k", k, 1, MAX_K);
    const filter = options.filter ?? null;
    const store = this.store;
    store.setQuery(query);
    const res = this.res;
    res.clear();
    const f32 = store.f32;
    const out = store.outIdx;
    const flags = this.flags;
    const labels = this.labels;
    for (let start = 0; start < this.size; start += BATCH_MAX) {
      const n = Math.min(BATCH_MAX, this.size - start);
      store.distancesToRange(store.queryPtr, start, n);
      for (let j = 0; j < n; j++) {
        const s = start + j;
        if (flags[s] !== FLAG_LIVE) continue;
        const d = f32[out + j];
        if (res.size < k || d < res.topKey()) {
          if (filter !== null && !allowed(filter, labels[s])) continue;
          res.push(d, s);
          if (res.size > k) res.pop();
        }
      }
    }
    return this.takeResults(k);
  }

  /** The slot holding the live point `id`, or -1 (slots index the vector store and the graph). */
  slotOf(id: number): number {
    return this.ids.get(id);
  }

  /**
   * Expected matches at or below which {@link filteredSearch} always scores every match exactly
   * (gathered slots, one batch kernel call per 256) instead of walking the graph. Above it the
   * choice follows {@link filterGraphCost}.
   */
  filterExactMax = 1024;
  /** Selectivity at or above which the filtered walk steps through rejected nodes (one hop). */
  filterOneHopMin = ONE_HOP_MIN_SELECTIVITY;
  /** Matching nodes one expansion gathers in two-hop mode (the walk's out-degree there). */
  filterHopBudget: number;
  /** How the last {@link filteredSearch} ran. */
  lastFilterPlan: FilterPlan = "none";
  /** The selectivity the last {@link filteredSearch} planned with (given, counted or sampled). */
  lastFilterSelectivity = 0;

  /**
   * The k nearest live points that pass a filter the caller has already evaluated, nearest
   * first. The plan follows the expected number of matches:
   *
   * | expected matches         | plan         | how                                            |
   * |--------------------------|--------------|------------------------------------------------|
   * | 0 (empty id list)        | `empty`      | nothing to score                               |
   * | <= `exactMax`, or fewer  | `exact`      | gather the matching slots, score them in batch |
   * | than the walk would cost |              | ({@link filterGraphCost})                      |
   * | selectivity >= 0.3       | `graph`      | walk layer 0; rejected nodes are stepped on    |
   * |                          |              | (scored, queued) but never enter the results   |
   * | selectivity < 0.3        | `graph-2hop` | walk layer 0 over matching nodes only; a       |
   * |                          |              | rejected neighbour is crossed to its own       |
   * |                          |              | matching neighbours (two hops), so the walk    |
   * |                          |              | stays connected when most of the graph fails   |
   *
   * The filter is tested at most once per slot per search (verdicts are stamped into a per-slot
   * byte array), an id list by binary search. Deleted points never match.
   */
  filteredSearch(
    query: ArrayLike<number>,
    k: number,
    filter: PlannedFilter,
    options: FilteredSearchOptions = {},
  ): Hit[] {
    validateVector(query, this.dim, "query");
    checkInt("k", k, 1, MAX_K);
    let ef: number;
    if (options.ef !== undefined) {
      ef = checkInt("ef", options.ef, 1, MAX_EF);
      if (ef < k) throw new RangeError(`ef ${ef} must be at least k ${k}`);
    } else {
      ef = Math.max(this.ef, k);
    }
    const exactMax = checkInt("exactMax", options.exactMax ?? this.filterExactMax, 0, 2 ** 32);
    let matches: number;
    let selectivity: number;
    this.res.clear();
    if ("ids" in filter) {
      const ids = filter.ids;
      if (!(ids instanceof Uint32Array)) throw new TypeError("filter ids must be a Uint32Array");
      const count = checkInt("filter count", filter.count ?? ids.length, 0, ids.length);
      this.beginFilter(null, ids, count);
      matches = count;
      selectivity = this.live === 0 ? 0 : Math.min(1, count / this.live);
    } else {
      if (typeof filter.test !== "function") throw new TypeError("filter test must be a function");
      this.beginFilter(filter.test, this.fIds, 0);
      if (filter.selectivity !== undefined) {
        selectivity = filter.selectivity;
        if (!(selectivity >= 0 && selectivity <= 1)) {
          throw new RangeError(`filter selectivity ${selectivity} must be between 0 and 1`);
        }
      } else {
        selectivity = this.entry < 0 ? 0 : this.sampleSelectivity();
      }
      matches = selectivity * this.live;
    }
    this.lastFilterSelectivity = selectivity;
    try {
      if (this.entry < 0 || this.live === 0 || ("ids" in filter && matches === 0)) {
        this.lastFilterPlan = "empty";
        return [];
      }
      const store = this.store;
      store.setQuery(query);
      const q = store.queryPtr;
      const twoHop = selectivity < this.filterOneHopMin;
      const exact = options.exactMax !== undefined
        ? matches <= exactMax
        : matches <= exactMax || matches <= this.filterGraphCost(ef, selectivity);
      if (exact) {
        this.lastFilterPlan = "exact";
        this.exactFiltered(k);
        return this.takeResults(k);
      }
      this.lastFilterPlan = twoHop ? "graph-2hop" : "graph";
      let cur = this.entry;
      let curDist = store.pair(q, store.ptr(cur), store.stride);
      for (let l = this.maxLevel; l > 0; l--) {
        cur = this.greedy(store, q, cur, l);
        curDist = this.lastGreedyDist;
      }
      this.filteredLayer0(q, cur, curDist, ef, twoHop);
      this.lastSearchEf = ef;
      return this.takeResults(k);
    } finally {
      // Drop the caller's closure and list so the index does not keep them alive.
      this.fTest = null;
      this.fIds = EMPTY_IDS;
      this.fCount = 0;
    }
  }

  /**
   * Removes every tombstone from the graph: each node that links to one gets a new list chosen
   * by the heuristic from its live neighbours and the live neighbours of the deleted ones.
   * The deleted slots become free for reuse.
   */
  compact(): void {
    if (this.deleted === 0) return;
    const flags = this.flags;
    const graph = this.graph;
    for (let x = 0; x < this.size; x++) {
      if (flags[x] !== FLAG_LIVE) continue;
      const top = this.levels[x];
      // Under x's lock: a worker reading x's lists meanwhile retries instead of seeing half.
      graph.lock(x);
      for (let l = 0; l <= top; l++) this.repairList(x, l);
      graph.unlock(x);
    }
    // A new entry point first (when it was deleted), so no search starts at a freed slot.
    if (this.entry >= 0 && flags[this.entry] !== FLAG_LIVE) {
      let entry = -1, maxLevel = -1;
      for (let s = 0; s < this.size; s++) {
        if (flags[s] === FLAG_LIVE && this.levels[s] > maxLevel) {
          entry = s;
          maxLevel = this.levels[s];
        }
      }
      graph.writeEntry(entry, maxLevel);
    }
    for (let s = 0; s < this.size; s++) {
      if (flags[s] !== FLAG_DELETED) continue;
      flags[s] = FLAG_FREE;
      Atomics.store(this.states, s, STATE_EMPTY);
      graph.lock(s);
      this.links0[s * (this.M0 + 1)] = 0;
      const off = this.upperOff[s];
      if (off >= 0) {
        for (let l = 1; l <= this.levels[s]; l++) this.upper[off + (l - 1) * (this.M + 1)] = 0;
      }
      graph.unlock(s);
      this.levels[s] = 0;
      this.freeSlots[this.freeCount++] = s;
    }
    this.deleted = 0;
    this.codes?.syncGraph(this.links0, flags, this.size);
  }

  /**
   * Slot order that puts layer-0 neighbours near each other in memory (reorder.ts):
   * `order[newSlot] = oldSlot`, free slots last. Reads the graph only.
   */
  localityOrder(kind: ReorderKind = DEFAULT_REORDER): Int32Array {
    return localityOrder(this.layer0(), kind);
  }

  /** Layer 0 as {@link localityOrder} reads it (a view of the index's own arrays). */
  layer0(): SlotGraph {
    const flags = this.flags;
    return {
      n: this.size,
      links: this.links0,
      rowWords: this.M0 + 1,
      entry: this.entry,
      isFree: (slot) => flags[slot] === FLAG_FREE,
    };
  }

  /** Renumbers the slots in place by {@link localityOrder}; returns the order applied. */
  reorder(kind: ReorderKind = DEFAULT_REORDER): Int32Array {
    const order = this.localityOrder(kind);
    this.permuteSlots(order);
    return order;
  }

  /**
   * Renumbers the slots in place: slot `i` afterwards holds what slot `order[i]` held, for
   * every table (vectors, int8 codes, layer-0 links, upper-layer offsets, levels, labels,
   * flags) and every slot number stored in them (links, entry point, free list, id map). The
   * graph and every search result stay the same. Arrays are rewritten in place, never
   * replaced; must not run while anything else reads the index.
   */
  permuteSlots(order: Int32Array): void {
    const n = this.size;
    checkPermutation(order, n);
    const inv = inversePermutation(order);
    const done = new Uint8Array(n);
    const row0 = this.M0 + 1;
    const s = this.store;
    permuteRows(s.f32, s.vectorsPtr >>> 2, s.stride, s.stride, order, done);
    permuteRows(this.links0, 0, row0, row0, order, done);
    for (const a of [this.levels, this.flags, this.upperAlloc]) {
      permuteRows(a, 0, 1, 1, order, done);
    }
    permuteRows(this.labels, 0, 1, 1, order, done);
    // The threads' view of each slot (live, deleted, empty) moves with it; the seq words stay
    // (nothing reads the index during a renumbering, so every one of them is even).
    permuteRows(this.states, 0, 1, 1, order, done);
    permuteRows(this.upperOff, 0, 1, 1, order, done);
    const links0 = this.links0;
    for (let x = 0; x < n; x++) {
      const off = x * row0;
      const cnt = links0[off];
      for (let j = 1; j <= cnt; j++) links0[off + j] = inv[links0[off + j]];
      this.remapUpper(this.upper, x, inv);
    }
    for (let i = 0; i < this.freeCount; i++) this.freeSlots[i] = inv[this.freeSlots[i]];
    if (this.entry >= 0) this.graph.writeEntry(inv[this.entry], this.maxLevel);
    for (let x = 0; x < n; x++) if (this.flags[x] === FLAG_LIVE) this.ids.set(this.labels[x], x);
    const codes = this.codes;
    if (codes !== null) {
      permuteRows(codes.u8, codes.codesPtr, codes.rowBytes, codes.codeRowBytes, order, done);
      codes.syncGraph(this.links0, this.flags, n);
    }
  }

  /** Maps the slot numbers in the upper-layer lists of `slot` through `inv`, in `upper`. */
  private remapUpper(upper: Uint32Array, slot: number, inv: Int32Array): void {
    const top = this.levels[slot];
    const base = this.upperOff[slot];
    for (let l = 1; l <= top; l++) {
      const off = base + (l - 1) * (this.M + 1);
      const cnt = upper[off];
      for (let j = 1; j <= cnt; j++) upper[off + j] = inv[upper[off + j]];
    }
  }

  /**
   * Writes the whole index (vectors, graph, ids, deletions, parameters); see the table above.
   * With `order` (a permutation of the slots, {@link localityOrder}), slot `i` of the image is
   * slot `order[i]` of the index, renumbered throughout: the index itself is only read, and
   * what loads the image gets the same graph laid out in that order. The identity (an index
   * already in that order) writes the plain image, which is the same bytes, faster.
   */
  writeTo(w: BinaryWriter, order: Int32Array | null = null): void {
    if (order !== null && !isIdentity(order)) {
      this.writeOrdered(w, order);
      return;
    }
    this.writeHeader(w, this.entry);
    const n = this.size;
    const s = this.store;
    w.f32Array(s.f32.subarray(s.vectorsPtr >>> 2, (s.vectorsPtr >>> 2) + n * s.stride));
    w.u32Array(this.links0.subarray(0, n * (this.M0 + 1)));
    w.bytes(this.levels.subarray(0, n));
    w.bytes(this.flags.subarray(0, n));
    w.u32Array(this.labels.subarray(0, n));
    w.i32Array(this.upperOff.subarray(0, n));
    w.bytes(this.upperAlloc.subarray(0, n));
    w.u32Array(this.upper.subarray(0, this.upperUsed));
    w.i32Array(this.freeSlots.subarray(0, this.freeCount));
    if (!this.writeQuantizationHeader(w)) return;
    w.bytes(this.codes!.rows(n));
  }

  /** The image's fields up to the vectors, with `entry` as its entry point. */
  private writeHeader(w: BinaryWriter, entry: number): void {
    w.u32(INDEX_MAGIC);
    w.u32(this.quantization === "none" ? INDEX_VERSION : INDEX_VERSION_QUANTIZED);
    w.u32(this.dim);
    w.u32(this.M);
    w.u8(METRIC_CODES[this.metric]);
    w.u32(this.efConstruction);
    w.u32(this.ef);
    w.f64(this.compactRatio);
    w.u32(this.rng);
    w.u32(this.size);
    w.u32(this.live);
    w.u32(this.deleted);
    w.i32(entry);
    w.i32(this.maxLevel);
  }

  /** The quantization section up to the code rows; true when code rows follow. */
  private writeQuantizationHeader(w: BinaryWriter): boolean {
    if (this.quantization === "none") return false;
    w.u8(QUANTIZATION_CODES[this.quantization]);
    w.u32(this.rescore);
    w.u32(this.trainSize);
    const codes = this.codes;
    w.u8(codes === null ? 0 : 1);
    if (codes === null) return false;
    w.f32Array(codes.quantizer.lo);
    w.f32Array(codes.quantizer.scale);
    return true;
  }

  /** {@link writeTo} with slots in `order`: row by row, renumbered, the index untouched. */
  private writeOrdered(w: BinaryWriter, order: Int32Array): void {
    const n = this.size;
    checkPermutation(order, n);
    const inv = inversePermutation(order);
    this.writeHeader(w, this.entry < 0 ? -1 : inv[this.entry]);
    const s = this.store;
    const row0 = this.M0 + 1;
    // Floats and code bytes are moved as u32 words (every row starts and ends on a word).
    this.writeRows(w, n * s.stride, s.u32, s.vectorsPtr >>> 2, s.stride, s.stride, order, null);
    // Words past a list's count are left over from pruning and never read; copied as they are.
    this.writeRows(w, n * row0, this.links0, 0, row0, row0, order, inv);
    const gather = <T extends Uint8Array | Uint32Array | Int32Array>(a: T): T => {
      const out = new (a.constructor as new (n: number) => T)(n);
      for (let i = 0; i < n; i++) out[i] = a[order[i]];
      return out;
    };
    w.bytes(gather(this.levels));
    w.bytes(gather(this.flags));
    w.u32Array(gather(this.labels));
    w.i32Array(gather(this.upperOff));
    w.bytes(gather(this.upperAlloc));
    // The upper blocks stay where they are in the pool; only the slot numbers in them change.
    const upper = this.upper.slice(0, this.upperUsed);
    for (let x = 0; x < n; x++) this.remapUpper(upper, x, inv);
    w.u32Array(upper);
    const free = this.freeSlots.slice(0, this.freeCount);
    for (let i = 0; i < free.length; i++) free[i] = inv[free[i]];
    w.i32Array(free);
    if (!this.writeQuantizationHeader(w)) return;
    const codes = this.codes!;
    const cw = codes.codeRowBytes >>> 2;
    this.writeRows(
      w,
      n * cw * 4,
      codes.u32,
      codes.codesPtr >>> 2,
      codes.rowBytes >>> 2,
      cw,
      order,
      null,
    );
  }

  /** `count`, then the rows of a u32 table in `order` ({@link gatherRows}), 1 MiB at a time. */
  private writeRows(
    w: BinaryWriter,
    count: number,
    src: Uint32Array,
    base: number,
    stride: number,
    width: number,
    order: Int32Array,
    inv: Int32Array | null,
  ): void {
    w.u32(count);
    const chunkRows = Math.max(1, Math.floor((1 << 18) / width));
    const chunk = new Uint32Array(chunkRows * width);
    const bytes = new Uint8Array(chunk.buffer);
    for (let i = 0; i < order.length; i += chunkRows) {
      const to = Math.min(order.length, i + chunkRows);
      gatherRows(src, base, stride, width, order, i, to, chunk, inv);
      w.raw(bytes.subarray(0, (to - i) * width * 4));
    }
  }

  /** Reads an index written by {@link writeTo}, checking every structural invariant. */
  /**
   * The id map as an image of the slots {@link writeTo} writes in `order` (null or identity:
   * as they are), for a container that stores it beside the image (collection snapshots,
   * version 6) and gives it back to {@link readFrom}: the load then takes the map whole instead
   * of hashing every live slot's id. The arrays are copies when renumbered, else the map's own.
   */
  idMapImage(
    order: Int32Array | null = null,
  ): { keys: Uint32Array; vals: Int32Array; size: number; used: number } {
    const image = this.ids.image();
    if (order === null || isIdentity(order)) return image;
    checkPermutation(order, this.size);
    const inv = inversePermutation(order);
    const vals = new Int32Array(image.vals.length);
    for (let b = 0; b < vals.length; b++) {
      const slot = image.vals[b];
      vals[b] = slot >= 0 ? inv[slot] : slot;
    }
    return { ...image, keys: image.keys.slice(), vals };
  }

  /**
   * Reads an index written by {@link writeTo}. `ids`: the id map the writer's container stored
   * beside the image ({@link idMapImage}), taken whole after one pass that checks every entry
   * maps a live slot of that id, each once, and that every live slot is mapped (no hash per
   * id); null: the map is built from the slots' ids.
   */
  static readFrom(
    r: BinaryReader,
    ids: { keys: Uint32Array; vals: Int32Array; size: number; used: number } | null = null,
  ): HnswIndex {
    const magic = r.u32();
    if (magic !== INDEX_MAGIC) {
      throw new BinaryFormatError(`Index magic 0x${magic.toString(16)} is not 0x57534e48`);
    }
    const version = r.u32();
    if (version !== INDEX_VERSION && version !== INDEX_VERSION_QUANTIZED) {
      throw new BinaryFormatError(`Index format version ${version} is not supported (want 1 or 2)`);
    }
    const dim = r.u32();
    const M = r.u32();
    const metric = METRIC_NAMES[r.u8()];
    if (metric === undefined) throw new BinaryFormatError("Index metric code is unknown");
    const efConstruction = r.u32();
    const ef = r.u32();
    const compactRatio = r.f64();
    const rng = r.u32();
    const n = r.u32();
    const live = r.u32();
    const deleted = r.u32();
    const entry = r.i32();
    const maxLevel = r.i32();
    // Bounded by the input before anything is allocated: each slot's vector and layer-0 links
    // follow (a damaged count must not allocate gigabytes before a checksum refuses the file).
    if (n * 4 * (dim + 2 * M + 1) > r.remaining) {
      throw new BinaryFormatError(
        `Index of ${n} slots (dimension ${dim}, M ${M}) needs more than the ${r.remaining} ` +
          `bytes that remain`,
      );
    }
    const index = new HnswIndex({
      dim,
      metric,
      M,
      efConstruction,
      ef,
      compactRatio,
      capacity: Math.max(n, 16),
    });
    const fail = (what: string) => {
      throw new BinaryFormatError(`Index ${what} does not match its header (${n} slots)`);
    };
    const s = index.store;
    // The two big tables go straight from the file's bytes to their final place (the vectors
    // into WASM memory): one copy each, no temporary arrays.
    try {
      r.f32ArrayInto(s.f32, s.vectorsPtr >>> 2, n * s.stride);
    } catch (e) {
      if (e instanceof BinaryFormatError) fail("vector table");
      throw e;
    }
    try {
      r.u32ArrayInto(index.links0, 0, n * (index.M0 + 1));
    } catch (e) {
      if (e instanceof BinaryFormatError) fail("layer-0 links");
      throw e;
    }
    const links0 = index.links0;
    const levels = r.bytes();
    const flags = r.bytes();
    const labels = r.u32Array();
    const upperOff = r.i32Array();
    const upperAlloc = r.bytes();
    if (levels.length !== n || flags.length !== n || labels.length !== n) fail("slot tables");
    if (upperOff.length !== n || upperAlloc.length !== n) fail("upper-layer tables");
    index.levels.set(levels);
    index.flags.set(flags);
    index.labels.set(labels);
    index.upperOff.set(upperOff);
    index.upperAlloc.set(upperAlloc);
    const upper = r.u32Array();
    if (upper.length > index.upper.length) index.growUpper(upper.length + 64);
    index.upper.set(upper);
    index.upperUsed = upper.length;
    const free = r.i32Array();
    index.freeSlots.set(free);
    index.freeCount = free.length;
    index.size = n;
    index.rng = rng;
    index.graph.writeEntry(entry, maxLevel);
    // Rebuild the id map and check the counts and links against the tables.
    let liveSeen = 0, deletedSeen = 0;
    for (let slot = 0; slot < n; slot++) {
      const f = index.flags[slot];
      if (f === FLAG_LIVE) {
        if (ids === null) index.ids.set(index.labels[slot], slot);
        index.states[slot] = STATE_LIVE;
        liveSeen++;
      } else if (f === FLAG_DELETED) {
        index.states[slot] = STATE_DELETED;
        deletedSeen++;
      } else if (f !== FLAG_FREE) {
        throw new BinaryFormatError(`Slot ${slot} has unknown flag ${f}`);
      }
      const c = links0[slot * (index.M0 + 1)];
      if (c > index.M0) throw new BinaryFormatError(`Slot ${slot} has ${c} layer-0 links`);
      for (let j = 1; j <= c; j++) {
        if (links0[slot * (index.M0 + 1) + j] >= n) {
          throw new BinaryFormatError(`Slot ${slot} links to slot outside the index`);
        }
      }
      const lv = index.levels[slot];
      if (
        lv > 0 && (index.upperAlloc[slot] < lv || upperOff[slot] < 0 ||
          upperOff[slot] + lv * (M + 1) > upper.length)
      ) {
        throw new BinaryFormatError(`Slot ${slot} has level ${lv} without room for its links`);
      }
    }
    if (ids !== null) HnswIndex.takeIds(index, ids, n);
    if (liveSeen !== live || deletedSeen !== deleted || index.ids.size !== live) {
      throw new BinaryFormatError(
        `Index counts ${live} live / ${deleted} deleted do not match the slots ` +
          `(${liveSeen} / ${deletedSeen}, ${index.ids.size} distinct ids)`,
      );
    }
    if (entry >= n || (n > 0 && live > 0 && entry < 0)) {
      throw new BinaryFormatError(`Index entry point ${entry} is invalid`);
    }
    index.live = live;
    index.deleted = deleted;
    if (version === INDEX_VERSION_QUANTIZED) return HnswIndex.readQuantization(r, index);
    return index;
  }

  /** {@link readFrom}'s check and install of a stored id map over the `n` slots just read. */
  private static takeIds(
    index: HnswIndex,
    ids: { keys: Uint32Array; vals: Int32Array; size: number; used: number },
    n: number,
  ): void {
    const { keys, vals } = ids;
    const seen = new Uint8Array(n);
    let mapped = 0;
    let removed = 0;
    for (let b = 0; b < vals.length; b++) {
      const slot = vals[b];
      if (slot < 0) {
        // -1 empty, -2 a removed entry (id_map.ts); anything else is not a map.
        if (slot < -2) throw new BinaryFormatError(`Id map bucket ${b} holds slot ${slot}`);
        if (slot === -2) removed++;
        continue;
      }
      if (
        slot >= n || index.flags[slot] !== FLAG_LIVE || index.labels[slot] !== keys[b] ||
        seen[slot] !== 0
      ) {
        throw new BinaryFormatError(
          `Id map bucket ${b} maps id ${keys[b]} to slot ${slot}, which is not that id's ` +
            `live slot (or is mapped twice)`,
        );
      }
      seen[slot] = 1;
      mapped++;
    }
    // `used` bounds the load (assign): counted, so at least a quarter of the buckets are
    // empty and every lookup of an absent id ends.
    if (mapped !== ids.size || mapped + removed !== ids.used) {
      throw new BinaryFormatError(
        `Id map holds ${mapped} entries and ${removed} removed buckets, its counts say ` +
          `${ids.size} and ${ids.used - ids.size}`,
      );
    }
    try {
      index.ids.assign(keys, vals, ids.size, ids.used);
    } catch (e) {
      throw new BinaryFormatError(`Id map: ${(e as Error).message}`);
    }
    // Each entry where a lookup of its id finds it (a bucket its probe passes by would leave
    // a live point unfindable): one lookup per live point, no insert.
    for (let b = 0; b < vals.length; b++) {
      const slot = vals[b];
      if (slot >= 0 && index.ids.get(keys[b]) !== slot) {
        throw new BinaryFormatError(`Id map bucket ${b}: id ${keys[b]} is not found there`);
      }
    }
  }

  /**
   * Reads the quantization section of a version-2 image into a new index that shares the
   * graph and vectors `base` read (the quantization fields are readonly, fixed at construction).
   */
  private static readQuantization(r: BinaryReader, base: HnswIndex): HnswIndex {
    const code = r.u8();
    if (code !== QUANTIZATION_CODES.int8) {
      throw new BinaryFormatError(`Index quantization code ${code} is unknown`);
    }
    const rescore = r.u32();
    const trainSize = r.u32();
    if (rescore < 1 || rescore > MAX_RESCORE || trainSize < 1) {
      throw new BinaryFormatError(`Index rescore ${rescore} or train size ${trainSize} is invalid`);
    }
    const trained = r.u8();
    if (trained > 1) throw new BinaryFormatError(`Index trained flag ${trained} is not 0 or 1`);
    base.quant = "int8";
    base.quantTrainSize = trainSize;
    base.rescore = rescore;
    if (trained === 0) return base;
    const lo = r.f32Array();
    const scale = r.f32Array();
    if (lo.length !== base.dim || scale.length !== base.dim) {
      throw new BinaryFormatError(
        `Index quantizer ranges have ${lo.length} / ${scale.length} dimensions, not ${base.dim}`,
      );
    }
    let qz: ScalarQuantizer;
    try {
      qz = new ScalarQuantizer(lo, scale);
    } catch (e) {
      throw new BinaryFormatError(`Index quantizer: ${(e as Error).message}`);
    }
    const codes = new CodeStore(base.dim, base.metric, qz, base.M0 + 1, base.maxCapacity);
    codes.reserve(base.capacity);
    codes.loadRows(r.bytes(), base.size);
    codes.syncGraph(base.links0, base.flags, base.size);
    base.codes = codes;
    return base;
  }

  // ---- internals -------------------------------------------------------------------------

  private allocSlot(): number {
    if (this.freeCount > 0) return this.freeSlots[--this.freeCount];
    if (this.size === this.capacity) {
      // Up to the limit, not past it: the last slots below maxCapacity are usable too.
      const grown = Math.max(1024, Math.ceil(this.capacity * 1.5));
      this.reserve(this.capacity < this.maxCapacity ? Math.min(this.maxCapacity, grown) : grown);
    }
    return this.size++;
  }

  private randomLevel(): number {
    // xorshift32: reproducible for a seed, and no Math.random on the insert path.
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    const u = (this.rng + 1) / 4294967297; // in (0, 1)
    return Math.min(MAX_LEVEL, Math.floor(-Math.log(u) * this.mL));
  }

  /** Word offset of the link list of `slot` on layer `level` in `links0` or `upper`. */
  private listOffset(slot: number, level: number): number {
    return level === 0 ? slot * (this.M0 + 1) : this.upperOff[slot] + (level - 1) * (this.M + 1);
  }

  private ensureUpper(slot: number, level: number): void {
    this.levels[slot] = level;
    if (level === 0 || this.upperAlloc[slot] >= level) {
      if (level > 0) {
        const off = this.upperOff[slot];
        for (let l = 1; l <= level; l++) this.upper[off + (l - 1) * (this.M + 1)] = 0;
      }
      return;
    }
    const words = level * (this.M + 1);
    if (this.upperUsed + words > this.upper.length) this.growUpper(this.upperUsed + words);
    this.upperOff[slot] = this.upperUsed;
    this.upperAlloc[slot] = level;
    this.upper.fill(0, this.upperUsed, this.upperUsed + words);
    this.upperUsed += words;
  }

  private nextEpoch(): number {
    if (this.epoch === 255) {
      this.visited.fill(0);
      this.epoch = 0;
    }
    return ++this.epoch;
  }

  private lastGreedyDist = 0;
  /**
   * Candidates whose distance the last layer search computed (its nodes visited): after a
   * {@link search}, those of its layer-0 search. Counted once per expanded candidate, not per
   * node, for metrics.
   */
  lastVisited = 0;
  /** The ef the last {@link search} used (its `ef`, or the default raised to k). */
  lastSearchEf = 0;
  /** Sink for touch loads (see searchLayer); never read for meaning. */
  private touched = 0;

  /** Greedy walk (ef = 1) on one upper layer; returns the closest slot found. */
  private greedy(store: DistanceSource, q: number, start: number, level: number): number {
    const u32 = store.u32;
    const f32 = store.f32;
    const si = store.slotsIdx;
    const oi = store.outIdx;
    const links = level === 0 ? this.links0 : this.upper;
    let cur = start;
    let curDist = store.distanceTo(q, cur);
    let changed = true;
    while (changed) {
      changed = false;
      const off = this.listOffset(cur, level);
      const cnt = links[off];
      for (let j = 0; j < cnt; j++) u32[si + j] = links[off + 1 + j];
      store.distancesToSlots(q, cnt);
      for (let j = 0; j < cnt; j++) {
        const d = f32[oi + j];
        if (d < curDist) {
          curDist = d;
          cur = u32[si + j];
          changed = true;
        }
      }
    }
    this.lastGreedyDist = curDist;
    return cur;
  }

  /**
   * Best-first search of one layer from `ep`; leaves up to `ef` results in `this.res` (a max
   * heap). Every node nearer than the current bound is walked through, but only those that
   * pass the admission test enter the results: with `liveOnly`, live nodes (tombstones stay
   * navigable); with a `filter`, also only ids it allows. A node turned away still becomes a
   * candidate, so the walk can cross regions the filter rejects to reach the ones it allows.
   * Insertion passes `liveOnly` false and no filter (the caller drops tombstones itself).
   *
   * One loop serves filtered and unfiltered search so the two cannot drift apart. On the
   * unfiltered path `filter` is null, which costs one predictable, never-taken branch per node
   * that passes the bound.
   */
  private searchLayer(
    store: DistanceSource,
    q: number,
    ep: number,
    epDist: number,
    ef: number,
    level: number,
    liveOnly: boolean,
    filter: IdFilter | null,
  ): void {
    const u32 = store.u32;
    const f32 = store.f32;
    const si = store.slotsIdx;
    const oi = store.outIdx;
    const visited = this.visited;
    const flags = this.flags;
    const labels = this.labels;
    const epoch = this.nextEpoch();
    const cand = this.cand;
    const res = this.res;
    cand.clear();
    res.clear();
    const links = level === 0 ? this.links0 : this.upper;
    const row0 = this.M0 + 1;
    visited[ep] = epoch;
    cand.push(epDist, ep);
    let bound = Infinity;
    let seen = 1;
    if (
      (!liveOnly || flags[ep] === FLAG_LIVE) && (filter === null || allowed(filter, labels[ep]))
    ) {
      res.push(epDist, ep);
      bound = epDist;
    }
    while (cand.size > 0) {
      if (cand.topKey() > bound && res.size >= ef) break;
      const c = cand.pop();
      const off = level === 0 ? c * row0 : this.listOffset(c, level);
      const cnt = links[off];
      let m = 0;
      for (let j = 1; j <= cnt; j++) {
        const n = links[off + j];
        if (visited[n] !== epoch) {
          visited[n] = epoch;
          u32[si + m++] = n;
        }
      }
      if (m === 0) continue;
      seen += m;
      store.distancesToSlots(q, m);
      for (let j = 0; j < m; j++) {
        const d = f32[oi + j];
        if (res.size < ef || d < bound) {
          const n = u32[si + j];
          cand.push(d, n);
          if (liveOnly && flags[n] !== FLAG_LIVE) continue;
          if (filter !== null && !allowed(filter, labels[n])) continue;
          res.push(d, n);
          if (res.size > ef) res.pop();
          bound = res.topKey();
        }
      }
      // Touch the link list of the next candidate now, so its cache miss overlaps the heap
      // work above instead of stalling the next iteration (JS has no prefetch either).
      if (cand.size > 0 && level === 0) this.touched ^= links[cand.topValue() * row0];
    }
    this.lastVisited = seen;
  }

  /**
   * Rough cost of a filtered graph walk, in exactly scored matches (the unit of the exact plan),
   * so the planner can pick the cheaper. Measured on GloVe-100 (M = 16): the walk expands about
   * ef nodes. One hop scores about M0 / 2 neighbours per expansion, and needs 1 / selectivity
   * times the expansions to fill its results. Two hops score up to M0 per expansion and test
   * about M0 / selectivity links (at most M0²) to gather them; a link test (a visited check and
   * a memoised filter verdict, both random reads) costs about a quarter of a 100-d distance.
   */
  filterGraphCost(ef: number, selectivity: number): number {
    const M0 = this.M0;
    if (selectivity <= 0) return 0;
    if (selectivity >= this.filterOneHopMin) return (ef * M0) / (2 * selectivity);
    return ef * (M0 + Math.min(M0 * M0, M0 / selectivity) / 4);
  }

  /** Starts a filtered search: a fresh verdict stamp and the filter to test. */
  private beginFilter(test: ((id: number) => boolean) | null, ids: Uint32Array, count: number) {
    if (this.fPass >= 252) {
      this.fstate.fill(0);
      this.fPass = 0;
    }
    this.fPass += 2;
    this.fTest = test;
    this.fIds = ids;
    this.fCount = count;
  }

  /** Whether `slot` holds a live point that passes the current filter; tested once per search. */
  private passSlot(slot: number): boolean {
    const st = this.fstate[slot];
    const pass = this.fPass;
    if (st === pass) return true;
    if (st === pass + 1) return false;
    let ok = this.flags[slot] === FLAG_LIVE;
    if (ok) {
      const id = this.labels[slot];
      const test = this.fTest;
      if (test !== null) {
        ok = test(id) === true;
      } else {
        const ids = this.fIds;
        let lo = 0, hi = this.fCount - 1;
        ok = false;
        while (lo <= hi) {
          const mid = (lo + hi) >>> 1;
          const v = ids[mid];
          if (v < id) lo = mid + 1;
          else if (v > id) hi = mid - 1;
          else {
            ok = true;
            break;
          }
        }
      }
    }
    this.fstate[slot] = ok ? pass : pass + 1;
    return ok;
  }

  /** Fraction of up to {@link SELECTIVITY_SAMPLE} random live slots that pass the filter. */
  private sampleSelectivity(): number {
    let tested = 0, passed = 0;
    const flags = this.flags;
    for (let tries = 0; tested < SELECTIVITY_SAMPLE && tries < 4 * SELECTIVITY_SAMPLE; tries++) {
      let x = this.sampleRng;
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      this.sampleRng = x >>> 0;
      const slot = this.sampleRng % this.size;
      if (flags[slot] !== FLAG_LIVE) continue;
      tested++;
      if (this.passSlot(slot)) passed++;
    }
    return tested === 0 ? 0 : passed / tested;
  }

  /**
   * Exact filtered top-k into `this.res`: gathers the matching live slots (from the id list,
   * or by testing every live slot) and scores them with the batch kernel, BATCH_MAX at a time.
   */
  private exactFiltered(k: number): void {
    const store = this.store;
    const u32 = store.u32;
    const si = store.slotsIdx;
    let m = 0;
    if (this.fTest === null) {
      const ids = this.fIds;
      const fstate = this.fstate;
      const pass = this.fPass;
      for (let i = 0; i < this.fCount; i++) {
        const slot = this.ids.get(ids[i]);
        // Absent ids are skipped; the stamp drops a repeated id.
        if (slot < 0 || fstate[slot] === pass) continue;
        fstate[slot] = pass;
        u32[si + m++] = slot;
        if (m === EXACT_CHUNK) m = this.scoreBatch(m, k);
      }
    } else {
      for (let slot = 0; slot < this.size; slot++) {
        if (!this.passSlot(slot)) continue;
        u32[si + m++] = slot;
        if (m === EXACT_CHUNK) m = this.scoreBatch(m, k);
      }
    }
    this.scoreBatch(m, k);
  }

  /** Scores the `m` slots in the batch buffer against the query, keeping the k best; returns 0. */
  private scoreBatch(m: number, k: number): number {
    if (m === 0) return 0;
    const store = this.store;
    store.distancesToSlots(store.queryPtr, m);
    const f32 = store.f32;
    const oi = store.outIdx;
    const u32 = store.u32;
    const si = store.slotsIdx;
    const res = this.res;
    for (let j = 0; j < m; j++) {
      const d = f32[oi + j];
      if (res.size < k || d < res.topKey()) {
        res.push(d, u32[si + j]);
        if (res.size > k) res.pop();
      }
    }
    return 0;
  }

  /**
   * Filtered best-first search of layer 0 from `ep`; leaves up to `ef` matching points in
   * `this.res`. Only points that pass the filter enter the results.
   *
   * One hop (`twoHop` false): every unvisited neighbour is scored and may become a candidate,
   * matching or not, as in the unfiltered walk; right when most nodes match.
   *
   * Two hops: only matching nodes are scored and queued (the start point excepted). The
   * matching neighbours of the expanded node come first; then each rejected neighbour is
   * crossed to its own matching, unvisited neighbours, until `2M` nodes are gathered for the
   * batch. A rejected node is marked visited only once its whole list was read, so a node cut
   * short by the budget can still be crossed later from another side. This keeps the walk
   * connected on the matching subgraph without scoring the rejected majority.
   */
  private filteredLayer0(q: number, ep: number, epDist: number, ef: number, twoHop: boolean) {
    const store = this.store;
    const u32 = store.u32;
    const f32 = store.f32;
    const si = store.slotsIdx;
    const oi = store.outIdx;
    const visited = this.visited;
    const epoch = this.nextEpoch();
    const cand = this.cand;
    const res = this.res;
    cand.clear();
    res.clear();
    const links = this.links0;
    const row0 = this.M0 + 1;
    const hop = this.hopBuf;
    const budget = this.filterHopBudget;
    visited[ep] = epoch;
    cand.push(epDist, ep);
    let bound = Infinity;
    let seen = 1;
    if (this.passSlot(ep)) {
      res.push(epDist, ep);
      bound = epDist;
    }
    while (cand.size > 0) {
      if (cand.topKey() > bound && res.size >= ef) break;
      const c = cand.pop();
      const off = c * row0;
      const cnt = links[off];
      let m = 0;
      let nh = 0;
      for (let j = 1; j <= cnt; j++) {
        const n = links[off + j];
        if (visited[n] === epoch) continue;
        if (!twoHop || this.passSlot(n)) {
          visited[n] = epoch;
          u32[si + m++] = n;
        } else {
          hop[nh++] = n;
        }
      }
      for (let h = 0; h < nh && m < budget; h++) {
        const x = hop[h];
        if (visited[x] === epoch) continue;
        const xo = x * row0;
        const xc = links[xo];
        let whole = true;
        for (let j = 1; j <= xc; j++) {
          if (m >= budget) {
            whole = false;
            break;
          }
          const n = links[xo + j];
          if (visited[n] === epoch || !this.passSlot(n)) continue;
          visited[n] = epoch;
          u32[si + m++] = n;
        }
        if (whole) visited[x] = epoch;
      }
      if (m === 0) continue;
      seen += m;
      store.distancesToSlots(q, m);
      for (let j = 0; j < m; j++) {
        const d = f32[oi + j];
        if (res.size < ef || d < bound) {
          const n = u32[si + j];
          cand.push(d, n);
          if (!twoHop && !this.passSlot(n)) continue;
          res.push(d, n);
          if (res.size > ef) res.pop();
          bound = res.topKey();
        }
      }
    }
    this.lastVisited = seen;
  }

  /** Pops `this.res` into hits, nearest first, keeping the k best. */
  private takeResults(k: number): Hit[] {
    const res = this.res;
    while (res.size > k) res.pop();
    const n = res.size;
    const hits: Hit[] = new Array(n);
    const l2 = this.metric === "l2";
    for (let i = n - 1; i >= 0; i--) {
      const d = res.topKey();
      const slot = res.pop();
      hits[i] = { id: this.labels[slot], distance: l2 ? Math.sqrt(d) : d };
    }
    return hits;
  }

  /**
   * Replaces the links from `x` to deleted nodes on `level` (used by compaction). The live
   * links stay; each freed place goes to a candidate from the deleted neighbours' own lists,
   * nearest first, preferring those the heuristic accepts against the links already kept
   * (so the list stays diverse) and then the nearest of the rest (so it stays as dense as
   * the list it replaces).
   */
  private repairList(x: number, level: number): void {
    const links = level === 0 ? this.links0 : this.upper;
    const max = level === 0 ? this.M0 : this.M;
    const off = this.listOffset(x, level);
    const cnt = links[off];
    const flags = this.flags;
    const visited = this.visited;
    const epoch = this.nextEpoch();
    visited[x] = epoch;
    // Keep the live links in place; remember the deleted ones.
    const deadList = this.deadBuf;
    let dead = 0;
    let kept = 0;
    for (let j = 1; j <= cnt; j++) {
      const n = links[off + j];
      if (flags[n] === FLAG_LIVE) {
        visited[n] = epoch;
        links[off + 1 + kept++] = n;
      } else {
        deadList[dead++] = n;
      }
    }
    if (dead === 0) return;
    links[off] = kept;
    // Candidates: the live neighbours of the deleted neighbours.
    const store = this.store;
    const u32 = store.u32;
    const si = store.slotsIdx;
    let m = 0;
    for (let i = 0; i < dead; i++) {
      const doff = this.listOffset(deadList[i], level);
      const dcnt = links[doff];
      for (let j = 1; j <= dcnt && m < BATCH_MAX; j++) {
        const c = links[doff + j];
        if (visited[c] === epoch || flags[c] !== FLAG_LIVE) continue;
        visited[c] = epoch;
        u32[si + m++] = c;
      }
    }
    if (m === 0) return;
    store.distancesToSlots(store.ptr(x), m);
    const sel = this.sel;
    sel.clear();
    const f32 = store.f32;
    const oi = store.outIdx;
    for (let j = 0; j < m; j++) sel.push(f32[oi + j], u32[si + j]);
    const room = Math.min(max - kept, dead);
    const rest = this.restBuf;
    let nrest = 0;
    let added = 0;
    while (sel.size > 0 && added < room) {
      const d = sel.topKey();
      const e = sel.pop();
      const total = kept + added;
      let good = true;
      if (total > 0) {
        for (let j = 0; j < total; j++) u32[si + j] = links[off + 1 + j];
        store.distancesToSlots(store.ptr(e), total);
        for (let j = 0; j < total; j++) {
          if (f32[oi + j] < d) {
            good = false;
            break;
          }
        }
      }
      if (good) {
        links[off + 1 + kept + added++] = e;
      } else if (nrest < rest.length) {
        rest[nrest++] = e;
      }
    }
    for (let i = 0; i < nrest && added < room; i++) links[off + 1 + kept + added++] = rest[i];
    links[off] = kept + added;
  }
}

const EMPTY_IDS = new Uint32Array(0);
/**
 * Matches scored per kernel call on the exact path: the batch kernel first touches every
 * vector of its batch to overlap the cache misses, which pays only while the batch still fits
 * in the near caches (256 x 400 bytes for GloVe-100).
 */
const EXACT_CHUNK = 256;

function allowed(filter: IdFilter, id: number): boolean {
  return typeof filter === "function" ? filter(id) : filter.has(id);
}

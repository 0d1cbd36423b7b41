/**
 * An HNSW graph laid out in shared memory, so that several threads search it and link into
 * it at once. {@link HnswIndex} (hnsw.ts) keeps its graph in these buffers and links every
 * insert with {@link SharedGraph.link} on its own thread (the one insert path); worker threads
 * (graph_worker.ts, driven by graph_pool.ts) hold their own handle and run
 * {@link SharedGraph.search} and {@link SharedGraph.linkBatch} over the same arrays. Every
 * array is visible to every thread without copies, never moves, and is read while another
 * thread writes it. HnswIndex's own walks (filtered, int8, exact; on the owner's thread) read
 * the same arrays; an unfiltered search here returns exactly HnswIndex.search's hits.
 *
 * Shared state (one {@link GraphLayout}, posted to every worker once):
 *
 * | buffer     | kind                          | per slot               | meaning                     |
 * |------------|-------------------------------|------------------------|-----------------------------|
 * | `memory`   | shared `WebAssembly.Memory`   | `stride` floats        | vectors (see memory table)  |
 * | `links0`   | growable SAB, u32             | `1 + 2M` words         | layer-0 count, then links   |
 * | `upper`    | growable SAB, u32             | `level * (1 + M)`      | layers 1..level lists       |
 * | `upperOff` | growable SAB, i32             | 1                      | a slot's block in `upper`   |
 * | `levels`   | growable SAB, u8              | 1                      | top layer of the slot       |
 * | `states`   | growable SAB, u8              | 1                      | 0 empty, 1 pending, 2 live, 3 deleted |
 * | `labels`   | growable SAB, u32             | 1                      | point id of the slot        |
 * | `seq`      | growable SAB, i32             | 1                      | lock / sequence word        |
 * | `header`   | SAB, i32                      | -                      | see `H_*` below             |
 *
 * Memory (byte offsets into `memory`): `[0, heap_base)` the module's own, then one scratch
 * block per thread (query vector, a slot list and a distance list for the batch kernel), then
 * the vectors from `vectorsPtr`, slot `s` at `vectorsPtr + s * stride * 4`.
 *
 * Concurrency protocol (why it is safe):
 * - `seq[s]` is both the lock and the seqlock of every link list of slot `s`. A writer takes
 *   it by compare-exchange from an even value to the next odd one, rewrites the lists, and
 *   adds one more (even again). A reader loads it (spinning while odd), copies the list it
 *   needs into a private buffer, loads it again and retries if it changed. So readers never
 *   take locks, and never see a list half rewritten by pruning.
 * - Slots become visible only through links; a slot is linked only after its vector, level
 *   and upper-layer block are written. Searches walk live and deleted slots only: a slot still
 *   being linked (pending) is skipped, so a search never returns a slot before its insert
 *   finished (its state turns live with `Atomics.store` after its last link). Linking threads
 *   do walk pending slots, as hnswlib does, so parallel inserts find one another.
 * - The entry point and top layer change together under `H_EP_SEQ` (a seqlock; readers
 *   retry). An insert whose level is above the top layer holds the global lock `H_GLOBAL` for
 *   its whole insert, so two new tops cannot race (rare: about one insert in M^level).
 * - A thread holds at most one slot lock at a time (its own list, then each neighbour's in
 *   turn), and takes the global lock before any slot lock: no lock order cycle, no deadlock.
 * - Growth happens on the owning thread only, between batches: the growable buffers and the
 *   shared memory grow in place (addresses never move); length-tracking views see the new
 *   length, and the capacity in `H_CAPACITY` is stored after the growth. A searching thread
 *   grows its private visited array when it meets a slot beyond it.
 *
 * Plain (non-atomic) loads of list words between the two `Atomics.load`s of a seqlock are
 * data races by design; JavaScript gives such reads some value that was written (no undefined
 * behaviour), and the second load rejects any copy that overlapped a write.
 * @module
 */
import {
  createSharedMemory,
  instantiateSharedKernels,
  type Kernels,
  type Metric,
  metricKernels,
  type PairKernel,
  SHARED_MAX_PAGES,
  type SlotsKernel,
} from "../kernels/kernels.ts";
import { MaxHeap, MinHeap } from "./heap.ts";
import { CapacityError } from "./vector_store.ts";

/** Slot states (`states` array). */
export const STATE_EMPTY = 0;
export const STATE_PENDING = 1;
export const STATE_LIVE = 2;
export const STATE_DELETED = 3;

/** Header words (Int32Array over `header`). */
export const H_ENTRY = 0;
export const H_MAX_LEVEL = 1;
/** Seqlock of entry + max level. */
export const H_EP_SEQ = 2;
/** Global lock for an insert that raises the top layer. */
export const H_GLOBAL = 3;
/** Slots handed out. */
export const H_SIZE = 4;
/** Slots the buffers hold now. */
export const H_CAPACITY = 5;
/** Next slot of the current link batch to claim, and the end of the batch. */
export const H_LINK_NEXT = 6;
export const H_LINK_END = 7;
/** Words used in the upper-layer pool. */
export const H_UPPER_USED = 8;
const HEADER_WORDS = 16;

/** Most threads (the owner included) that may work on one graph. */
export const MAX_GRAPH_THREADS = 64;
/** Highest layer a node may have (as HnswIndex). */
export const MAX_LEVEL = 31;
const PAGE_BYTES = 65536;

/** Everything a thread needs to work on a graph; structured-cloneable (buffers are shared). */
export interface GraphLayout {
  dim: number;
  metric: Metric;
  M: number;
  efConstruction: number;
  /** Slots the buffers may ever hold (their reserved maximum). */
  maxCapacity: number;
  /** Threads (owner at index 0, workers 1..) the scratch blocks are laid out for. */
  threads: number;
  /** Byte address of thread 0's scratch block (blocks of every thread follow, in order). */
  scratchPtr: number;
  /** Byte address of slot 0's vector. */
  vectorsPtr: number;
  memory: WebAssembly.Memory;
  header: SharedArrayBuffer;
  links0: SharedArrayBuffer;
  upper: SharedArrayBuffer;
  upperOff: SharedArrayBuffer;
  levels: SharedArrayBuffer;
  states: SharedArrayBuffer;
  labels: SharedArrayBuffer;
  seq: SharedArrayBuffer;
  /** i32 slots of the current link batch (`H_LINK_NEXT` / `H_LINK_END` index into it). */
  batch: SharedArrayBuffer;
  /**
   * i32 per thread: the slot whose lock the thread is taking or holds (-1: none), so that the
   * owner can release it when the thread dies (graph_pool.ts).
   */
  held: SharedArrayBuffer;
}

/** Parameters of {@link createLayout}. */
export interface LayoutOptions {
  dim: number;
  metric: Metric;
  M: number;
  efConstruction: number;
  maxCapacity: number;
  threads: number;
  /**
   * Bytes of memory from 4096 reserved for the owner's own use before the threads' scratch
   * blocks (HnswIndex keeps its VectorStore's query and batch buffers there). Default 0.
   */
  ownerBytes?: number;
}

function growable(maxBytes: number): SharedArrayBuffer {
  // deno-lint-ignore no-explicit-any
  return new (SharedArrayBuffer as any)(0, { maxByteLength: maxBytes }) as SharedArrayBuffer;
}

/** Floats per stored vector: dim rounded up to 4 (16-byte aligned rows, no scalar tail). */
export function strideOf(dim: number): number {
  return (dim + 3) & ~3;
}

/** Per-thread scratch: the query, then `scratchSlots` u32 slots and as many f32 distances. */
function scratchLayout(dim: number, M: number) {
  const strideBytes = strideOf(dim) * 4;
  const queryBytes = Math.ceil(strideBytes / 64) * 64;
  // The largest batch: a full layer-0 list plus the newcomer (pruning), 2M + 1.
  const slots = Math.ceil((2 * M + 2) / 16) * 16;
  return { queryBytes, slots, blockBytes: queryBytes + slots * 8 };
}

/** A header with no entry point (entry and top layer -1). */
function emptyHeader(): SharedArrayBuffer {
  const b = new SharedArrayBuffer(HEADER_WORDS * 4);
  const h = new Int32Array(b);
  h[H_ENTRY] = -1;
  h[H_MAX_LEVEL] = -1;
  return b;
}

/** Allocates the shared buffers of an empty graph (capacity 0; {@link growLayout} adds room). */
export function createLayout(o: LayoutOptions): GraphLayout {
  if (!Number.isInteger(o.threads) || o.threads < 1 || o.threads > MAX_GRAPH_THREADS) {
    throw new RangeError(`threads ${o.threads} must be an integer between 1 and 64`);
  }
  const M0 = 2 * o.M;
  const cap = o.maxCapacity;
  const stride = strideOf(o.dim);
  const sc = scratchLayout(o.dim, o.M);
  const scratchPtr = Math.ceil((4096 + (o.ownerBytes ?? 0)) / 64) * 64;
  const base = scratchPtr + o.threads * sc.blockBytes;
  const needBytes = base + cap * stride * 4;
  if (needBytes > SHARED_MAX_PAGES * PAGE_BYTES) {
    throw new CapacityError(
      `maxCapacity ${cap} vectors of dimension ${o.dim} need ${needBytes} bytes; a WASM memory holds at most 4 GiB`,
    );
  }
  const maxPages = Math.min(SHARED_MAX_PAGES, Math.ceil(needBytes / PAGE_BYTES) + 1);
  // Upper pool bound: (M + 1) words per layer; expected layers per node 1 / (M - 1), so
  // cap * (M + 1) words is M - 1 times the expectation (a reservation, not memory in use).
  return {
    dim: o.dim,
    metric: o.metric,
    M: o.M,
    efConstruction: o.efConstruction,
    maxCapacity: cap,
    threads: o.threads,
    scratchPtr,
    vectorsPtr: base,
    memory: createSharedMemory(Math.ceil(base / PAGE_BYTES) + 1, maxPages),
    header: emptyHeader(),
    links0: growable(cap * (M0 + 1) * 4),
    upper: growable(Math.max(4096, cap * (o.M + 1) * 4)),
    upperOff: growable(cap * 4),
    levels: growable(cap),
    states: growable(cap),
    labels: growable(cap * 4),
    seq: growable(cap * 4),
    batch: growable(cap * 4),
    held: heldWords(o.threads),
  };
}

function heldWords(threads: number): SharedArrayBuffer {
  const b = new SharedArrayBuffer(threads * 4);
  new Int32Array(b).fill(-1);
  return b;
}

/** Result of {@link SharedGraph.search}: parallel arrays, nearest first, `count` valid. */
export interface GraphHits {
  count: number;
  /** Point ids (labels). */
  ids: Uint32Array;
  /** Distances as the index orders them (squared L2, or 1 - dot). */
  distances: Float32Array;
}

/**
 * Scores slots against a prepared query from another table than the float vectors (the int8
 * codes: quantizer.ts `CodeThread`): slots in at `u32[slotsIdx ..]`, distances out at
 * `f32[outIdx ..]`, at most `batchMax` at a time.
 */
export interface SlotScorer {
  readonly u32: Uint32Array;
  readonly f32: Float32Array;
  readonly slotsIdx: number;
  readonly outIdx: number;
  readonly batchMax: number;
  score(n: number): void;
  distanceTo(slot: number): number;
}

const MODE_READ = 0;
const MODE_BUILD = 1;

/** One thread's handle on a shared graph: its kernels instance, views and scratch. */
export class SharedGraph {
  readonly layout: GraphLayout;
  readonly dim: number;
  readonly stride: number;
  readonly strideBytes: number;
  readonly M: number;
  readonly M0: number;
  readonly efConstruction: number;
  readonly kernels: Kernels;
  readonly vectorsPtr: number;
  /** This thread's scratch: query vector, slot list, distances (byte addresses). */
  readonly queryPtr: number;
  readonly slotsPtr: number;
  readonly outPtr: number;
  private readonly slotsIdx: number;
  private readonly outIdx: number;
  /** Slots this thread's scratch list holds. */
  private readonly batchSlots: number;
  private readonly pair: PairKernel;
  private readonly slotsKernel: SlotsKernel;
  readonly header: Int32Array;
  /** This thread's scratch block number (0: the owner). */
  readonly thread: number;
  private readonly held: Int32Array;
  /**
   * Fixed-length views of the growable buffers, replaced by {@link refreshViews} when they
   * grew: V8 reads a length-tracking view of a growable buffer about 2.5 times slower than a
   * fixed one (measured), and these are the hot arrays. Re-read them after any call that may
   * grow; never keep them across one.
   */
  links0!: Uint32Array;
  upper!: Uint32Array;
  upperOff!: Int32Array;
  levels!: Uint8Array;
  states!: Uint8Array;
  labels!: Uint32Array;
  seq!: Int32Array;
  /** Slots the per-slot views cover. */
  private viewSlots = -1;
  /** Views of the scratch (low addresses, so views made once stay valid after growth). */
  private readonly su32: Uint32Array;
  private readonly sf32: Float32Array;
  private visited = new Uint8Array(0);
  private epoch = 0;
  private readonly cand: MinHeap;
  private readonly res: MaxHeap;
  private readonly sel: MinHeap;
  private readonly selOut: Uint32Array;
  private readonly selDist: Float32Array;
  /** Private copies of link lists read under the seqlock, one per nesting depth. */
  private readonly listBuf: Uint32Array;
  private readonly newLinks: Uint32Array;
  private lastGreedyDist = 0;
  /** Candidates scored by the layer-0 walk of the last {@link search} (for metrics). */
  lastVisited = 0;
  /** Results of the last {@link search}. */
  readonly hits: GraphHits;

  /** `thread` is this thread's scratch block: 0 for the owner, 1.. for workers. */
  constructor(layout: GraphLayout, thread: number) {
    if (!Number.isInteger(thread) || thread < 0 || thread >= layout.threads) {
      throw new RangeError(
        `thread ${thread} must be an integer between 0 and ${layout.threads - 1}`,
      );
    }
    this.layout = layout;
    this.dim = layout.dim;
    this.stride = strideOf(layout.dim);
    this.strideBytes = this.stride * 4;
    this.M = layout.M;
    this.M0 = 2 * layout.M;
    this.efConstruction = layout.efConstruction;
    this.kernels = instantiateSharedKernels(layout.memory);
    const mk = metricKernels(this.kernels, layout.metric);
    this.pair = mk.pair;
    this.slotsKernel = mk.slots;
    const sc = scratchLayout(layout.dim, layout.M);
    if (this.kernels.heap_base() > 4096) throw new Error("kernel static data passes 4096 bytes");
    this.vectorsPtr = layout.vectorsPtr;
    this.queryPtr = layout.scratchPtr + thread * sc.blockBytes;
    this.slotsPtr = this.queryPtr + sc.queryBytes;
    this.outPtr = this.slotsPtr + sc.slots * 4;
    this.slotsIdx = this.slotsPtr >>> 2;
    this.outIdx = this.outPtr >>> 2;
    this.batchSlots = sc.slots;
    const buf = layout.memory.buffer;
    this.su32 = new Uint32Array(buf, 0, this.vectorsPtr >>> 2);
    this.sf32 = new Float32Array(buf, 0, this.vectorsPtr >>> 2);
    this.header = new Int32Array(layout.header);
    this.thread = thread;
    this.held = new Int32Array(layout.held);
    this.refreshViews();
    this.cand = new MinHeap(256);
    this.res = new MaxHeap(256);
    this.sel = new MinHeap(4 * this.M0);
    this.selOut = new Uint32Array(this.M0 + 1);
    this.selDist = new Float32Array(this.M0 + 1);
    this.listBuf = new Uint32Array(this.M0 + 1);
    this.newLinks = new Uint32Array(this.M0 + 1);
    this.hits = { count: 0, ids: new Uint32Array(16), distances: new Float32Array(16) };
  }

  /** Re-creates the views over the buffers' current lengths (after growth). */
  refreshViews(): void {
    const L = this.layout;
    const slots = L.states.byteLength;
    this.links0 = new Uint32Array(L.links0, 0, L.links0.byteLength >>> 2);
    this.upper = new Uint32Array(L.upper, 0, L.upper.byteLength >>> 2);
    this.upperOff = new Int32Array(L.upperOff, 0, slots);
    this.levels = new Uint8Array(L.levels, 0, slots);
    this.states = new Uint8Array(L.states, 0, slots);
    this.labels = new Uint32Array(L.labels, 0, slots);
    this.seq = new Int32Array(L.seq, 0, slots);
    this.viewSlots = slots;
  }

  /** Makes sure the views cover `slot` and the upper pool up to `word` (they grew meanwhile). */
  private cover(slot: number): void {
    if (slot >= this.viewSlots) this.refreshViews();
  }

  /** Byte address of a slot's vector. */
  ptr(slot: number): number {
    return this.vectorsPtr + slot * this.strideBytes;
  }

  /** This thread's float query: `dim` floats at `queryF32[queryPtr >>> 2 ..]` (stored form). */
  get queryF32(): Float32Array {
    return this.sf32;
  }

  /** Copies `vector` (dim floats from `offset`) into this thread's query (normalised for cosine). */
  setQuery(vector: ArrayLike<number>, offset = 0): void {
    const f32 = this.sf32;
    const q = this.queryPtr >>> 2;
    for (let i = 0; i < this.dim; i++) f32[q + i] = vector[offset + i];
    for (let i = this.dim; i < this.stride; i++) f32[q + i] = 0;
    if (this.layout.metric === "cosine") this.kernels.normalize(this.queryPtr, this.stride);
  }

  // ---- locks --------------------------------------------------------------------------

  /** Takes `slot`'s lock (its seq word odd): its link lists may be rewritten until {@link unlock}. */
  lock(slot: number): void {
    const seq = this.seq;
    // Announced before it is taken: a thread that dies holding it can be found (graph_pool.ts).
    Atomics.store(this.held, this.thread, slot);
    for (;;) {
      const v = Atomics.load(seq, slot);
      if ((v & 1) === 0 && Atomics.compareExchange(seq, slot, v, v + 1) === v) return;
    }
  }

  /** Releases `slot`'s lock (seq even again, one step on: readers that overlapped retry). */
  unlock(slot: number): void {
    Atomics.add(this.seq, slot, 1);
    Atomics.store(this.held, this.thread, -1);
  }

  /** Holds the global lock; its word is the holder's thread + 1 (found if the holder dies). */
  private lockGlobal(): void {
    const h = this.header;
    for (;;) {
      const v = Atomics.compareExchange(h, H_GLOBAL, 0, this.thread + 1);
      if (v === 0) break;
      // Long holds (a whole insert): sleep instead of spinning where the thread may block.
      Atomics.wait(h, H_GLOBAL, v, 1);
    }
    this.globalHeld = true;
  }

  private unlockGlobal(): void {
    this.globalHeld = false;
    Atomics.store(this.header, H_GLOBAL, 0);
    Atomics.notify(this.header, H_GLOBAL);
  }

  private globalHeld = false;

  /** Entry point and top layer, read consistently: `[entry, maxLevel]` into the fields. */
  private epEntry = -1;
  private epLevel = -1;
  private readEntry(): void {
    const h = this.header;
    for (;;) {
      const v = Atomics.load(h, H_EP_SEQ);
      if ((v & 1) !== 0) continue;
      const e = h[H_ENTRY];
      const l = h[H_MAX_LEVEL];
      if (Atomics.load(h, H_EP_SEQ) === v) {
        this.epEntry = e;
        this.epLevel = l;
        return;
      }
    }
  }

  /** Publishes a new entry point and top layer together (readers retry across the change). */
  writeEntry(entry: number, level: number): void {
    const h = this.header;
    Atomics.add(h, H_EP_SEQ, 1);
    Atomics.store(h, H_ENTRY, entry);
    Atomics.store(h, H_MAX_LEVEL, level);
    Atomics.add(h, H_EP_SEQ, 1);
  }

  /** Word offset of `slot`'s list on `level` (in links0 or upper). */
  private listOffset(slot: number, level: number): number {
    return level === 0 ? slot * (this.M0 + 1) : this.upperOff[slot] + (level - 1) * (this.M + 1);
  }

  /**
   * Copies the list of `slot` on `level` into `dst` under the seqlock; returns its length.
   * The count is clamped to the list's room so a torn read can never index past it.
   */
  private readList(slot: number, level: number, dst: Uint32Array): number {
    if (slot >= this.viewSlots) this.refreshViews();
    const max = level === 0 ? this.M0 : this.M;
    const off = this.listOffset(slot, level);
    if (level > 0 && off + max >= this.upper.length) this.refreshViews();
    const links = level === 0 ? this.links0 : this.upper;
    if (this.solo) {
      // The only writer reads its own lists: no torn read is possible, no copy needed.
      this.rlArr = links;
      this.rlOff = off + 1;
      const cnt = links[off];
      return cnt > max ? max : cnt;
    }
    this.rlArr = dst;
    this.rlOff = 0;
    const seq = this.seq;
    for (;;) {
      const v = Atomics.load(seq, slot);
      if ((v & 1) !== 0) continue;
      let cnt = links[off];
      if (cnt > max) cnt = max;
      for (let j = 0; j < cnt; j++) dst[j] = links[off + 1 + j];
      if (Atomics.load(seq, slot) === v) return cnt;
    }
  }

  /** Where the list {@link readList} returned lies: `rlArr[rlOff ..]`. */
  private rlArr: Uint32Array = new Uint32Array(0);
  private rlOff = 0;
  /** True during a {@link link} whose caller is the graph's only writer (see there). */
  private solo = false;

  private nextEpoch(): number {
    const cap = Atomics.load(this.header, H_CAPACITY);
    if (cap > this.viewSlots) this.refreshViews();
    if (this.visited.length < cap) {
      this.visited = new Uint8Array(cap);
      this.epoch = 0;
    }
    if (this.epoch === 255) {
      this.visited.fill(0);
      this.epoch = 0;
    }
    return ++this.epoch;
  }

  /** Marks `n` visited in this epoch; false when it already was. Grows the array when needed. */
  private visit(n: number, epoch: number): boolean {
    let v = this.visited;
    if (n >= v.length) {
      this.cover(n);
      // The graph grew during this search: a slot past the array seen at its start.
      const b = new Uint8Array(Math.max(n + 1, Atomics.load(this.header, H_CAPACITY)));
      b.set(v);
      this.visited = v = b;
    }
    if (v[n] === epoch) return false;
    v[n] = epoch;
    return true;
  }

  // ---- search -------------------------------------------------------------------------

  /** Whether a walk in `mode` may step on `n` (`self` is the slot being linked, or -1). */
  private walkable(n: number, mode: number, self: number): boolean {
    if (n >= this.viewSlots) this.refreshViews();
    const st = this.states[n];
    return mode === MODE_READ ? st >= STATE_LIVE : st >= STATE_PENDING && n !== self;
  }

  private greedy(
    q: number,
    start: number,
    level: number,
    mode: number,
    self: number,
    sc: SlotScorer | null = null,
  ): number {
    const u32 = sc === null ? this.su32 : sc.u32;
    const f32 = sc === null ? this.sf32 : sc.f32;
    const si = sc === null ? this.slotsIdx : sc.slotsIdx;
    const oi = sc === null ? this.outIdx : sc.outIdx;
    const buf = this.listBuf;
    let cur = start;
    let curDist = sc === null ? this.pair(q, this.ptr(cur), this.stride) : sc.distanceTo(cur);
    let changed = true;
    while (changed) {
      changed = false;
      const cnt = this.readList(cur, level, buf);
      const src = this.rlArr;
      const so = this.rlOff;
      let m = 0;
      for (let j = 0; j < cnt; j++) {
        const n = src[so + j];
        if (this.walkable(n, mode, self)) u32[si + m++] = n;
      }
      this.scoreSlots(q, m, sc);
      for (let j = 0; j < m; j++) {
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
   * Distances from query `q` (or `sc`'s prepared query) to the `m` slots in the slot buffer
   * (this thread's, or `sc`'s), into the matching output buffer.
   */
  private scoreSlots(q: number, m: number, sc: SlotScorer | null): void {
    if (sc !== null) sc.score(m);
    else this.floatScores(q, m);
  }

  /**
   * Float distances from the vector at byte address `q` to the `m` slots in this thread's slot
   * buffer, into its output buffer.
   */
  private floatScores(q: number, m: number): void {
    this.slotsKernel(
      q,
      this.vectorsPtr,
      this.strideBytes,
      this.slotsPtr,
      m,
      this.outPtr,
      this.stride,
    );
  }

  /**
   * Best-first search of one layer from `ep`, up to `ef` results left in `this.res`. READ:
   * walks live and deleted slots, keeps live ones. BUILD: walks every linked slot but `self`,
   * keeps them all (the caller drops tombstones, as HnswIndex does).
   */
  private searchLayer(
    q: number,
    ep: number,
    epDist: number,
    ef: number,
    level: number,
    mode: number,
    self: number,
    sc: SlotScorer | null = null,
  ): void {
    const u32 = sc === null ? this.su32 : sc.u32;
    const f32 = sc === null ? this.sf32 : sc.f32;
    const si = sc === null ? this.slotsIdx : sc.slotsIdx;
    const oi = sc === null ? this.outIdx : sc.outIdx;
    const epoch = this.nextEpoch();
    const cand = this.cand;
    const res = this.res;
    const buf = this.listBuf;
    cand.clear();
    res.clear();
    this.visit(ep, epoch);
    cand.push(epDist, ep);
    let bound = Infinity;
    let seen = 1;
    if (mode === MODE_BUILD || this.states[ep] === STATE_LIVE) {
      res.push(epDist, ep);
      bound = epDist;
    }
    while (cand.size > 0) {
      if (cand.topKey() > bound && res.size >= ef) break;
      const c = cand.pop();
      const cnt = this.readList(c, level, buf);
      const src = this.rlArr;
      const so = this.rlOff;
      let m = 0;
      // The visited test first (private, hot in cache), then the state (shared): a pending
      // node marked visited is not looked at again this search, which only skips it.
      let visited = this.visited;
      for (let j = 0; j < cnt; j++) {
        const n = src[so + j];
        if (n >= visited.length) {
          this.visit(n, epoch);
          visited = this.visited;
        } else {
          if (visited[n] === epoch) continue;
          visited[n] = epoch;
        }
        if (this.walkable(n, mode, self)) u32[si + m++] = n;
      }
      if (m === 0) continue;
      seen += m;
      this.scoreSlots(q, m, sc);
      for (let j = 0; j < m; j++) {
        const d = f32[oi + j];
        if (res.size < ef || d < bound) {
          const n = u32[si + j];
          cand.push(d, n);
          if (mode === MODE_READ && this.states[n] !== STATE_LIVE) continue;
          res.push(d, n);
          if (res.size > ef) res.pop();
          bound = res.topKey();
        }
      }
    }
    this.lastVisited = seen;
  }

  /**
   * The k nearest live points to this thread's query (set by {@link setQuery}) into
   * {@link hits}; returns how many. Safe while other threads insert.
   */
  search(k: number, ef: number): number {
    const hits = this.hits;
    hits.count = 0;
    this.readEntry();
    if (this.epEntry < 0) return 0;
    const q = this.queryPtr;
    let cur = this.epEntry;
    let curDist = this.pair(q, this.ptr(cur), this.stride);
    for (let l = this.epLevel; l > 0; l--) {
      cur = this.greedy(q, cur, l, MODE_READ, -1);
      curDist = this.lastGreedyDist;
    }
    this.searchLayer(q, cur, curDist, Math.max(ef, k), 0, MODE_READ, -1);
    const res = this.res;
    while (res.size > k) res.pop();
    return this.takeHits();
  }

  /**
   * The k nearest live points to this thread's query over int8 codes (`sc`, its query
   * prepared from this thread's float query): the walk of HnswIndex.search on a quantized
   * index (upper layers and layer 0 scored by `sc`; CodeStore.search0's best-first order, ties
   * included, for its heaps pop alike), then the best `r` candidates re-ranked exactly from the
   * float vectors, in the owner's order. Into {@link hits}; returns how many.
   */
  searchQ8(sc: SlotScorer, k: number, ef: number, r: number): number {
    const hits = this.hits;
    hits.count = 0;
    this.readEntry();
    if (this.epEntry < 0) return 0;
    const q = this.queryPtr;
    let cur = this.epEntry;
    let curDist = sc.distanceTo(cur);
    for (let l = this.epLevel; l > 0; l--) {
      cur = this.greedy(q, cur, l, MODE_READ, -1, sc);
      curDist = this.lastGreedyDist;
    }
    this.searchLayer(q, cur, curDist, Math.max(ef, k), 0, MODE_READ, -1, sc);
    const res = this.res;
    while (res.size > r) res.pop();
    const m = res.size;
    if (this.rerankBuf.length < m) {
      this.rerankBuf = new Uint32Array(Math.max(m, 2 * this.rerankBuf.length));
    }
    const rr = this.rerankBuf;
    // The candidates in heap order, as CodeStore.resultSlot lists them on the owner.
    for (let j = 0; j < m; j++) rr[j] = res.values[j];
    res.clear();
    const u32 = this.su32;
    const f32 = this.sf32;
    const si = this.slotsIdx;
    const oi = this.outIdx;
    for (let start = 0; start < m; start += this.batchSlots) {
      const n = Math.min(this.batchSlots, m - start);
      for (let j = 0; j < n; j++) u32[si + j] = rr[start + j];
      this.floatScores(q, n);
      for (let j = 0; j < n; j++) {
        const d = f32[oi + j];
        if (res.size < k || d < res.topKey()) {
          res.push(d, u32[si + j]);
          if (res.size > k) res.pop();
        }
      }
    }
    return this.takeHits();
  }

  /**
   * Empties the result heap into {@link hits}, nearest first, as point ids (the one result copy
   * of {@link search} and {@link searchQ8}); returns how many.
   */
  private takeHits(): number {
    const hits = this.hits;
    const res = this.res;
    const n = res.size;
    if (hits.ids.length < n) {
      hits.ids = new Uint32Array(n);
      hits.distances = new Float32Array(n);
    }
    for (let i = n - 1; i >= 0; i--) {
      hits.distances[i] = res.topKey();
      hits.ids[i] = this.labels[res.pop()];
    }
    hits.count = n;
    return n;
  }

  private rerankBuf = new Uint32Array(64);

  // ---- insert -------------------------------------------------------------------------

  /** Same heuristic as HnswIndex.selectNeighbors (the paper's Algorithm 4). */
  private selectNeighbors(max: number): number {
    const sel = this.sel;
    const out = this.selOut;
    const outDist = this.selDist;
    if (sel.size <= max) {
      let n = 0;
      while (sel.size > 0) {
        outDist[n] = sel.topKey();
        out[n++] = sel.pop();
      }
      return n;
    }
    const si = this.slotsIdx;
    const oi = this.outIdx;
    const u32 = this.su32;
    const f32 = this.sf32;
    let n = 0;
    while (sel.size > 0 && n < max) {
      const d = sel.topKey();
      const e = sel.pop();
      let good = true;
      if (n > 0) {
        for (let j = 0; j < n; j++) u32[si + j] = out[j];
        this.floatScores(this.ptr(e), n);
        for (let j = 0; j < n; j++) {
          if (f32[oi + j] < d) {
            good = false;
            break;
          }
        }
      }
      if (good) {
        outDist[n] = d;
        out[n++] = e;
      }
    }
    return n;
  }

  /** Adds `to` to the list of `from` on `level` under `from`'s lock, pruning when full. */
  private addLink(from: number, to: number, level: number): void {
    this.lock(from);
    try {
      this.addLinkLocked(from, to, level);
    } finally {
      // Also on an exception (the worker keeps serving): never a lock left taken.
      this.unlock(from);
    }
  }

  private addLinkLocked(from: number, to: number, level: number): void {
    const links = level === 0 ? this.links0 : this.upper;
    const max = level === 0 ? this.M0 : this.M;
    const off = this.listOffset(from, level);
    const cnt = links[off];
    if (cnt < max) {
      links[off + 1 + cnt] = to;
      links[off] = cnt + 1;
      return;
    }
    const u32 = this.su32;
    const si = this.slotsIdx;
    for (let j = 0; j < cnt; j++) u32[si + j] = links[off + 1 + j];
    u32[si + cnt] = to;
    this.floatScores(this.ptr(from), cnt + 1);
    const f32 = this.sf32;
    const oi = this.outIdx;
    const sel = this.sel;
    sel.clear();
    for (let j = 0; j <= cnt; j++) sel.push(f32[oi + j], u32[si + j]);
    const n = this.selectNeighbors(max);
    for (let j = 0; j < n; j++) links[off + 1 + j] = this.selOut[j];
    links[off] = n;
  }

  /**
   * Links `slot` into the graph at layers 0..levels[slot] (the paper's Algorithm 1), safe
   * beside other threads linking other slots and threads searching. Its vector, level, label
   * and upper block must be written and its state pending; it turns live at the end.
   *
   * `solo`: the caller's thread is the only one writing the graph meanwhile (other threads may
   * only search), so this thread reads lists in place instead of copying them under the
   * seqlock (HnswIndex.add; the result is the same).
   */
  link(slot: number, solo = false): void {
    this.solo = solo;
    try {
      this.linkSlot(slot);
    } finally {
      this.solo = false;
      if (this.globalHeld) this.unlockGlobal();
    }
  }

  private linkSlot(slot: number): void {
    // The owner grows buffers only before it hands slots out (never during a batch), so views
    // fresh at the start of an insert cover everything the insert touches.
    if (
      slot >= this.viewSlots || Atomics.load(this.header, H_CAPACITY) > this.viewSlots ||
      this.layout.upper.byteLength !== this.upper.byteLength
    ) {
      this.refreshViews();
    }
    const level = this.levels[slot];
    let global = false;
    this.readEntry();
    if (level > this.epLevel) {
      this.lockGlobal();
      global = true;
      this.readEntry();
      if (level <= this.epLevel) {
        this.unlockGlobal();
        global = false;
      }
    }
    const entry = this.epEntry;
    const maxLevel = this.epLevel;
    if (entry < 0) {
      Atomics.compareExchange(this.states, slot, STATE_PENDING, STATE_LIVE);
      this.writeEntry(slot, level);
      if (global) this.unlockGlobal();
      return;
    }
    const q = this.ptr(slot);
    let cur = entry;
    for (let l = maxLevel; l > level; l--) cur = this.greedy(q, cur, l, MODE_BUILD, slot);
    let curDist = this.pair(q, this.ptr(cur), this.stride);
    const chosen = this.newLinks;
    for (let l = Math.min(level, maxLevel); l >= 0; l--) {
      this.searchLayer(q, cur, curDist, this.efConstruction, l, MODE_BUILD, slot);
      const res = this.res;
      const sel = this.sel;
      sel.clear();
      while (res.size > 0) {
        const d = res.topKey();
        const s = res.pop();
        const st = this.states[s];
        if ((st === STATE_LIVE || st === STATE_PENDING) && s !== slot) sel.push(d, s);
      }
      if (sel.size === 0) continue;
      cur = sel.topValue();
      curDist = sel.topKey();
      const n = this.selectNeighbors(this.M);
      for (let j = 0; j < n; j++) chosen[j] = this.selOut[j];
      const links = l === 0 ? this.links0 : this.upper;
      const max = l === 0 ? this.M0 : this.M;
      this.lock(slot);
      const off = this.listOffset(slot, l);
      // Other threads may already have linked to this pending slot (and added themselves to
      // its list): keep those after the chosen ones while there is room, instead of
      // overwriting them. One build thread never finds anything here.
      try {
        const had = links[off];
        const keep = this.listBuf;
        let m = 0;
        for (let j = 0; j < had && j < max; j++) {
          const e = links[off + 1 + j];
          let dup = false;
          for (let i = 0; i < n; i++) {
            if (chosen[i] === e) {
              dup = true;
              break;
            }
          }
          if (!dup) keep[m++] = e;
        }
        for (let j = 0; j < n; j++) links[off + 1 + j] = chosen[j];
        let cnt = n;
        for (let j = 0; j < m && cnt < max; j++) links[off + 1 + cnt++] = keep[j];
        links[off] = cnt;
      } finally {
        this.unlock(slot);
      }
      for (let j = 0; j < n; j++) this.addLink(chosen[j], slot, l);
    }
    // Pending -> live, unless the owner deleted it meanwhile (an upsert or delete of its id
    // during the batch): then it stays a tombstone.
    Atomics.compareExchange(this.states, slot, STATE_PENDING, STATE_LIVE);
    if (global) {
      this.writeEntry(slot, level);
      this.unlockGlobal();
    }
  }

  /**
   * Links slots of the current batch (`batch[H_LINK_NEXT]` .. `batch[H_LINK_END - 1]`) until
   * none is left; returns how many this thread linked.
   */
  linkBatch(): number {
    const h = this.header;
    const end = Atomics.load(h, H_LINK_END);
    const batch = new Int32Array(this.layout.batch, 0, end);
    let done = 0;
    for (;;) {
      const i = Atomics.add(h, H_LINK_NEXT, 1);
      if (i >= end) return done;
      this.link(batch[i]);
      done++;
    }
  }
}

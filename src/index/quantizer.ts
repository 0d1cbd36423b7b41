/**
 * Scalar (int8) quantization of an index's vectors: one byte per dimension, searched with the
 * WASM int8 kernel (`q8_slots` in asm/kernels.ts), re-ranked exactly from the float vectors by
 * {@link HnswIndex}.
 *
 * **Codes.** Each dimension `i` has a range `[lo_i, lo_i + 255 * scale_i]` trained from the
 * data; a value `x` is stored as `c = clamp(round((x - lo_i) / scale_i), 0, 255)` and stands for
 * `x̂ = lo_i + scale_i * c`. The range is the `clip` and `1 - clip` quantiles of the training
 * sample per dimension, so a few outliers do not stretch it for everyone; values outside it
 * (outliers, or points inserted after training that fall outside the trained range) are
 * clipped to the nearest end. A dimension with no spread has scale 0 and decodes to `lo_i`.
 *
 * **Distances.** With the query `q` (the stored form: normalised for cosine), the inner product
 * is `q·x̂ = q·lo + Σ (q_i scale_i) c_i`. The per-query weights `w_i = q_i scale_i` are rounded
 * to i16 with one scale `s_w` (bounded so that `dim * 255 * max|w| < 2^31`: the integer sum
 * cannot overflow), so the kernel's integer sum `S = Σ w'_i c_i` gives
 *
 * | metric        | distance (what the index orders by)         | affine map `a + b S + c n(x)` |
 * |---------------|---------------------------------------------|-------------------------------|
 * | l2            | `|q|² - 2 q·x̂ + |x̂|²`                        | `a = |q|² - 2 q·lo, b = -2 s_w, c = 1` |
 * | dot, cosine   | `1 - q·x̂`                                    | `a = 1 - q·lo, b = -s_w, c = 0` |
 *
 * where `n(x) = |x̂|²` is stored in the code row. The query keeps ~15 bits, the data 8: the
 * error is the data's rounding, which the exact re-ranking removes from the final order.
 *
 * **Code rows** (in the code store's own WASM memory, so the float vectors, read only to
 * re-rank, stay out of the walk's caches):
 *
 * | bytes                          | content                                                |
 * |--------------------------------|--------------------------------------------------------|
 * | `0 .. dim - 1`                 | u8 codes                                               |
 * | `dim .. normOff - 1`           | zero                                                   |
 * | `normOff .. normOff + 3`       | f32 `|x̂|²`, `normOff = align(dim, 4)`                  |
 * | up to `codeRowBytes`           | zero; `codeRowBytes = align(max(codeBytes, normOff + 4), 16)` |
 * | `codeRowBytes ..`              | with a graph mirror: the layer-0 link row (u32 count,    |
 * |                                | then the links), `rowBytes = align(.., 64)`              |
 *
 * The kernel reads `codeBytes = align(dim, 16)` bytes of each row (the norm may lie inside
 * them); the query weights are zero past `dim`, so those bytes add nothing.
 *
 * @example
 * ```ts
 * import { ScalarQuantizer } from "./quantizer.ts";
 * const data = new Float32Array([0, 1, 2, 3, 4, 5]); // three 2-d points
 * const qz = ScalarQuantizer.train(data, 3, 2, 2, 0);
 * const codes = new Uint8Array(2);
 * qz.encode(data, 4, codes, 0);
 * console.log(Array.from(codes)); // [255, 255]
 * ```
 * @module
 */
import {
  createSharedMemory,
  instantiateSharedKernels,
  type Kernels,
  type Metric,
  SHARED_MAX_PAGES,
} from "../kernels/kernels.ts";
import { BATCH_MAX, growMemory } from "./vector_store.ts";
import { BinaryFormatError } from "../io/binary.ts";
import {
  DEFAULT_RESCORE,
  type Quantization,
  QUANTIZATIONS,
  RESCORE_MAX,
} from "../common/limits.ts";

/** Vector quantization (`none` or `int8`) and its limits: one definition, in common/limits.ts. */
export { DEFAULT_RESCORE, type Quantization, QUANTIZATIONS };
/** Points in the index when the quantizer trains, unless the caller says otherwise. */
export const DEFAULT_TRAIN_SIZE = 4096;
/** Fraction of each tail of a dimension's training values clipped away when choosing its range. */
export const DEFAULT_CLIP = 0.001;
/** Largest re-ranking factor accepted (a search re-ranks at most ef candidates anyway). */
export const MAX_RESCORE = RESCORE_MAX;
/** Most training points read (evenly spaced over the slots when there are more). */
export const TRAIN_SAMPLE_MAX = 65_536;

/** Mirrored flag of a slot not in use (the index's FLAG_FREE). */
const FREE_FLAG = 2;

/** Thrown for a quantization name that is not one of {@link QUANTIZATIONS}; quotes it. */
export class UnknownQuantizationError extends TypeError {
  constructor(value: string) {
    super(`quantization "${value.slice(0, 40)}" is not one of none, int8`);
    this.name = "UnknownQuantizationError";
  }
}

/** The quantization named by `value` ("" means none); throws {@link UnknownQuantizationError}. */
export function parseQuantization(value: string): Quantization {
  const v = value.toLowerCase();
  if (v === "" || v === "none") return "none";
  if (v === "int8") return "int8";
  throw new UnknownQuantizationError(value);
}

/** Per-dimension ranges of int8 codes (see the module doc). */
export class ScalarQuantizer {
  readonly dim: number;
  /** Lower end of each dimension's range. */
  readonly lo: Float32Array;
  /** Step per code of each dimension (0: the dimension decodes to `lo`). */
  readonly scale: Float32Array;
  private readonly inv: Float32Array;

  constructor(lo: Float32Array, scale: Float32Array) {
    if (lo.length !== scale.length || lo.length === 0) {
      throw new RangeError(`quantizer ranges have ${lo.length} and ${scale.length} dimensions`);
    }
    for (let i = 0; i < lo.length; i++) {
      if (!Number.isFinite(lo[i]) || !(scale[i] >= 0) || !Number.isFinite(scale[i])) {
        throw new RangeError(
          `quantizer range of dimension ${i} is invalid (${lo[i]}, ${scale[i]})`,
        );
      }
    }
    this.dim = lo.length;
    this.lo = lo;
    this.scale = scale;
    this.inv = new Float32Array(lo.length);
    for (let i = 0; i < lo.length; i++) this.inv[i] = scale[i] > 0 ? 1 / scale[i] : 0;
  }

  /**
   * Trains ranges from `n` vectors of `dim` floats, the i-th at `data[i * stride]`: per
   * dimension the `clip` and `1 - clip` quantiles (clip in [0, 0.5)).
   */
  static train(
    data: Float32Array,
    n: number,
    dim: number,
    stride: number,
    clip = DEFAULT_CLIP,
    offset = 0,
  ): ScalarQuantizer {
    if (!(clip >= 0 && clip < 0.5)) throw new RangeError(`clip ${clip} must be in [0, 0.5)`);
    if (n < 1) throw new RangeError(`training needs at least one vector, got ${n}`);
    const lo = new Float32Array(dim);
    const scale = new Float32Array(dim);
    const col = new Float32Array(n);
    const a = Math.floor(clip * (n - 1));
    const b = Math.ceil((1 - clip) * (n - 1));
    for (let d = 0; d < dim; d++) {
      for (let i = 0; i < n; i++) col[i] = data[offset + i * stride + d];
      col.sort();
      lo[d] = col[a];
      scale[d] = Math.max(0, (col[b] - col[a]) / 255);
    }
    return new ScalarQuantizer(lo, scale);
  }

  /**
   * Encodes the `dim` floats at `src[srcOff ..]` into `out[outOff ..]`, clipping to the range;
   * returns `|x̂|²`, the squared norm of the decoded vector.
   */
  encode(src: Float32Array, srcOff: number, out: Uint8Array, outOff: number): number {
    const lo = this.lo, scale = this.scale, inv = this.inv;
    let norm = 0;
    for (let i = 0; i < this.dim; i++) {
      let c = Math.round((src[srcOff + i] - lo[i]) * inv[i]);
      if (!(c > 0)) c = 0; // also NaN-safe; inputs are validated finite
      else if (c > 255) c = 255;
      out[outOff + i] = c;
      const x = lo[i] + scale[i] * c;
      norm += x * x;
    }
    return norm;
  }

  /** Decodes `dim` codes at `codes[off ..]` into `out` (the values the codes stand for). */
  decode(codes: Uint8Array, off: number, out: Float32Array): Float32Array {
    for (let i = 0; i < this.dim; i++) out[i] = this.lo[i] + this.scale[i] * codes[off + i];
    return out;
  }
}

/**
 * Int8 code rows of an index in a WASM memory of their own, addressed by the index's slots,
 * with the query weights and the batch buffers. Same batch interface as the float
 * {@link VectorStore}: write slots to `u32[slotsIdx ..]`, call {@link distancesToSlots}, read
 * `f32[outIdx ..]`.
 *
 * | region  | offset       | size                   | use                                 |
 * |---------|--------------|------------------------|-------------------------------------|
 * | query   | `queryPtr`   | `codeBytes * 2`        | i16 weights, zero past `dim`        |
 * | slots   | `slotsPtr`   | `BATCH_MAX * 4`        | u32 slot list for a batch           |
 * | out     | `outPtr`     | `BATCH_MAX * 4`        | f32 distances of a batch            |
 * | scratch | `scratchPtr` | `63 * blockBytes`      | one block per worker thread (CodeThread) |
 * | rows    | `codesPtr`   | `capacity * rowBytes`  | slot `s` at `+ s * rowBytes`: codes |
 * |         |              |                        | and, mirrored, its layer-0 links    |
 * | flags   | `flagsPtr`   | `capacity`             | mirror of the slot flags (0 live)   |
 * | visited | `visitedPtr` | `capacity / 8`         | visited bits of the WASM walk (clear between walks) |
 * | cand    | `candPtr`    | `(capacity + 1) * 8`   | candidate min-heap of the walk      |
 * | res     | `resPtr`     | `(capacity + 1) * 8`   | result max-heap of the walk         |
 * | vlog    | `vlogPtr`    | `(capacity + linkWords) * 4` | slots whose bit the walk set (it clears them) |
 *
 * The links and the regions from `flags` on exist only when the store mirrors a graph
 * (`linkWords` > 0): then {@link CodeStore.search0} walks layer 0 inside WASM (asm/kernels.ts,
 * q8_search0). A node's links sit right after its codes in one 64-byte-aligned row, so the
 * touch that brings a scored node's codes into cache brings the links its expansion reads
 * next. The index keeps the mirror current: a slot's links and flag after each insert (with
 * the links of its neighbours, whose lists the insert changed), a flag on delete, everything
 * after a compaction or a load. Growth moves the regions after the rows (copied, re-laid out).
 *
 * The memory is shared (the shared kernel build) and grows in place: everything below the rows
 * stays where it is, so worker threads score rows through a {@link CodeThread} (their own
 * kernel instance and scratch block; {@link CodeStore.layout}) while the owner inserts. Workers
 * walk the graph's own links, not the mirror (shared_graph.ts, `searchQ8`).
 */
export class CodeStore {
  readonly dim: number;
  readonly metric: Metric;
  readonly quantizer: ScalarQuantizer;
  /** Code bytes the kernel compares per row: dim rounded up to 16. */
  readonly codeBytes: number;
  /** Byte offset of the f32 `|x̂|²` in a row. */
  readonly normOff: number;
  /** Bytes of one code row: the codes, padding and the norm (what snapshots store per slot). */
  readonly codeRowBytes: number;
  /** Stride of a slot's row in memory: the code row, then the mirrored links when present. */
  readonly rowBytes: number;
  readonly kernels: Kernels;
  readonly queryPtr: number;
  readonly slotsPtr: number;
  readonly outPtr: number;
  readonly codesPtr: number;
  readonly slotsIdx: number;
  readonly outIdx: number;
  /** Largest |weight| of a query, so that `dim * 255 * qMax < 2^31`. */
  readonly qMax: number;
  f32: Float32Array;
  u32: Uint32Array;
  u8: Uint8Array;
  private i16: Int16Array;
  private dv: DataView;
  capacity = 0;
  private readonly w: Float64Array;

  /** Words per mirrored layer-0 link row (1 + 2M); 0 when no graph is mirrored. */
  readonly linkWords: number;
  linksPtr = 0;
  flagsPtr = 0;
  visitedPtr = 0;
  candPtr = 0;
  resPtr = 0;
  vlogPtr = 0;
  /** Bytes of the visited bitset. */
  private visitedBytes = 0;

  /** First worker scratch block (thread 1's; thread t's at `+ (t - 1) * blockBytes`). */
  readonly scratchPtr: number;
  /** Bytes of one worker scratch block (see {@link CodeLayout}). */
  readonly blockBytes: number;
  /** Slots one worker scratch block's list holds. */
  readonly blockSlots: number;

  /**
   * `maxCapacity`: the most slots the store may ever hold (its shared memory reserves that
   * much address space, at most 4 GiB).
   */
  constructor(
    dim: number,
    metric: Metric,
    quantizer: ScalarQuantizer,
    linkWords = 0,
    maxCapacity = 1 << 20,
  ) {
    if (quantizer.dim !== dim) {
      throw new RangeError(`quantizer has dimension ${quantizer.dim}; the index has ${dim}`);
    }
    this.dim = dim;
    this.metric = metric;
    this.quantizer = quantizer;
    this.linkWords = linkWords;
    const align = (x: number, a: number) => Math.ceil(x / a) * a;
    this.codeBytes = align(dim, 16);
    this.normOff = align(dim, 4);
    this.codeRowBytes = align(Math.max(this.codeBytes, this.normOff + 4), 16);
    this.rowBytes = linkWords > 0
      ? align(this.codeRowBytes + linkWords * 4, 64)
      : this.codeRowBytes;
    // Owner's query and batch buffers, then one scratch block per worker thread (query
    // weights, a slot list, distances), then the rows: all below the rows, so growth (in
    // place: a shared memory never moves) leaves every block where workers found it.
    this.queryPtr = 4096;
    this.slotsPtr = align(this.queryPtr + this.codeBytes * 2, 64);
    this.outPtr = this.slotsPtr + BATCH_MAX * 4;
    this.scratchPtr = align(this.outPtr + BATCH_MAX * 4, 64);
    this.blockSlots = align(Math.max(linkWords + 1, 64), 16);
    this.blockBytes = align(this.codeBytes * 2, 64) + this.blockSlots * 8;
    this.codesPtr = align(this.scratchPtr + (MAX_CODE_THREADS - 1) * this.blockBytes, 64);
    // Per slot with a mirror: a flag, a visited bit, two heap entries and a log entry.
    const maxBytes = this.codesPtr + maxCapacity * (this.rowBytes + (linkWords > 0 ? 22 : 0)) +
      linkWords * 4 + 1024;
    const maxPages = Math.max(2, Math.min(SHARED_MAX_PAGES, Math.ceil(maxBytes / 65536) + 1));
    const memory = createSharedMemory(Math.ceil(this.codesPtr / 65536) + 1, maxPages);
    this.kernels = instantiateSharedKernels(memory);
    if (this.kernels.heap_base() > 4096) throw new Error("kernel static data passes 4096 bytes");
    this.slotsIdx = this.slotsPtr >>> 2;
    this.outIdx = this.outPtr >>> 2;
    this.qMax = qMaxOf(dim);
    this.w = new Float64Array(dim);
    const buf = this.kernels.memory.buffer;
    this.f32 = new Float32Array(buf);
    this.u32 = new Uint32Array(buf);
    this.u8 = new Uint8Array(buf);
    this.i16 = new Int16Array(buf);
    this.dv = new DataView(buf);
    this.reserve(0);
  }

  /** What a worker thread needs to score this store's rows ({@link CodeThread}). */
  get layout(): CodeLayout {
    return {
      memory: this.kernels.memory,
      dim: this.dim,
      metric: this.metric,
      lo: this.quantizer.lo,
      scale: this.quantizer.scale,
      codeBytes: this.codeBytes,
      normOff: this.normOff,
      rowBytes: this.rowBytes,
      codesPtr: this.codesPtr,
      scratchPtr: this.scratchPtr,
      blockBytes: this.blockBytes,
      blockSlots: this.blockSlots,
    };
  }

  /** Bytes the memory holds now. */
  get memoryBytes(): number {
    return this.kernels.memory.buffer.byteLength;
  }

  /** Byte address of a slot's code row. */
  ptr(slot: number): number {
    return this.codesPtr + slot * this.rowBytes;
  }

  /**
   * Makes room for at least `slots` rows (views are replaced when the memory grows; the graph
   * regions move, keeping their contents).
   */
  reserve(slots: number): void {
    if (this.laidOut && slots <= this.capacity) return;
    const cap = Math.max(slots, this.capacity);
    const align = (x: number, a: number) => Math.ceil(x / a) * a;
    const lw = this.linkWords;
    const links = this.codesPtr + this.codeRowBytes;
    const flags = align(this.codesPtr + cap * this.rowBytes, 64);
    const visited = flags + (lw > 0 ? cap : 0);
    const visitedBytes = lw > 0 ? Math.ceil(cap / 8) : 0;
    const cand = align(visited + visitedBytes, 8);
    const res = cand + (lw > 0 ? (cap + 1) * 8 : 0);
    const vlog = res + (lw > 0 ? (cap + 1) * 8 : 0);
    const need = vlog + (lw > 0 ? (cap + lw) * 4 : 0);
    // Keep the graph mirror across the move (the heaps are scratch).
    const old = this.capacity;
    const keepFlags = lw > 0 && old > 0 ? this.u8.slice(this.flagsPtr, this.flagsPtr + old) : null;
    const mem = this.kernels.memory;
    growMemory(mem, need, `int8 codes of ${slots} vectors of dimension ${this.dim}`);
    if (this.u8.buffer !== mem.buffer) {
      const buf = mem.buffer;
      this.f32 = new Float32Array(buf);
      this.u32 = new Uint32Array(buf);
      this.u8 = new Uint8Array(buf);
      this.i16 = new Int16Array(buf);
      this.dv = new DataView(buf);
    }
    this.linksPtr = links;
    this.flagsPtr = flags;
    this.visitedPtr = visited;
    this.candPtr = cand;
    this.resPtr = res;
    this.vlogPtr = vlog;
    this.visitedBytes = visitedBytes;
    if (lw > 0) {
      for (let s = old; s < cap; s++) this.u32[(links + s * this.rowBytes) >>> 2] = 0;
      this.u8.fill(FREE_FLAG, flags, flags + cap);
      if (keepFlags !== null) this.u8.set(keepFlags, flags);
      this.u8.fill(0, visited, visited + visitedBytes);
    }
    this.capacity = cap;
    this.laidOut = true;
    this.kernels.q8_layout(
      this.codesPtr,
      this.rowBytes,
      this.codeBytes,
      links,
      this.rowBytes,
      flags,
      visited,
      cand,
      res,
      this.slotsPtr,
      vlog,
    );
  }
  private laidOut = false;

  /** Copies the layer-0 link row of `slot` (`linkWords` words of `links` at `off`). */
  setLinks(slot: number, links: Uint32Array, off: number): void {
    const lw = this.linkWords;
    this.u32.set(links.subarray(off, off + lw), (this.linksPtr + slot * this.rowBytes) >>> 2);
  }

  /** Sets the mirrored flag of `slot` (0 live, anything else: never a result). */
  setFlag(slot: number, flag: number): void {
    this.u8[this.flagsPtr + slot] = flag;
  }

  /** Mirrors the first `n` link rows and flags (after a load, a training or a compaction). */
  syncGraph(links: Uint32Array, flags: Uint8Array, n: number): void {
    const lw = this.linkWords;
    if (lw === 0) return;
    // Word by word: after every parallel batch this covers the whole index.
    const u32 = this.u32;
    const rw = this.rowBytes >>> 2;
    let d = this.linksPtr >>> 2;
    for (let s = 0, o = 0; s < n; s++, o += lw, d += rw) {
      for (let j = 0; j < lw; j++) u32[d + j] = links[o + j];
    }
    this.u8.set(flags.subarray(0, n), this.flagsPtr);
  }

  /**
   * Layer-0 search over the codes from slot `ep` with the prepared query, in WASM; leaves up
   * to `ef` results in the result heap (read with {@link resultSlot} after {@link trim}).
   * Returns how many.
   */
  search0(ep: number, ef: number): number {
    try {
      return this.kernels.q8_search0(this.queryPtr, ep, ef);
    } catch (e) {
      // A walk that did not finish left bits set: clear them all, or the next walk would
      // take those slots for visited.
      this.u8.fill(0, this.visitedPtr, this.visitedPtr + this.visitedBytes);
      throw e;
    }
  }

  /** Keeps the best `r` results of the last {@link search0}; returns how many remain. */
  trim(r: number): number {
    return this.kernels.q8_res_trim(r);
  }

  /** The slot of result `i` (in heap order) of the last {@link search0}. */
  resultSlot(i: number): number {
    return this.u32[(this.resPtr >>> 2) + 2 * i + 1];
  }

  /** Nodes the last {@link search0} scored. */
  get lastSeen(): number {
    return this.kernels.q8_seen();
  }

  /** Encodes the stored-form floats at `src[off ..]` into the row of `slot`. */
  write(slot: number, src: Float32Array, off: number): void {
    if (slot < 0 || slot >= this.capacity) {
      throw new RangeError(`Slot ${slot} is outside the code store's capacity ${this.capacity}`);
    }
    const p = this.ptr(slot);
    const norm = this.quantizer.encode(src, off, this.u8, p);
    this.u8.fill(0, p + this.dim, p + this.codeRowBytes);
    this.dv.setFloat32(p + this.normOff, norm, true);
  }

  /** The code bytes of `slot` (a copy), for tests and tools. */
  codes(slot: number): Uint8Array {
    const p = this.ptr(slot);
    return this.u8.slice(p, p + this.dim);
  }

  /**
   * Prepares a query (stored form: `dim` floats at `q[off ..]`, normalised for cosine): its i16
   * weights and the kernel's affine map (see the module doc).
   */
  setQuery(q: Float32Array, off: number): void {
    prepareQuery(
      this.quantizer,
      this.metric,
      this.codeBytes,
      this.normOff,
      this.qMax,
      this.w,
      this.i16,
      this.queryPtr >>> 1,
      this.kernels,
      q,
      off,
    );
  }

  /** Approximate distances from the prepared query to the `n` slots at `u32[slotsIdx ..]`. */
  distancesToSlots(_qPtr: number, n: number): void {
    this.kernels.q8_slots(
      this.queryPtr,
      this.codesPtr,
      this.rowBytes,
      this.slotsPtr,
      n,
      this.outPtr,
      this.codeBytes,
    );
  }

  /** Approximate distance from the prepared query to one slot. */
  distanceTo(_qPtr: number, slot: number): number {
    this.u32[this.slotsIdx] = slot;
    this.distancesToSlots(this.queryPtr, 1);
    return this.f32[this.outIdx];
  }

  /** The code rows of slots `0 .. n - 1`, `codeRowBytes` each, packed (for serialisation). */
  rows(n: number): Uint8Array {
    if (this.rowBytes === this.codeRowBytes) {
      return this.u8.subarray(this.codesPtr, this.codesPtr + n * this.rowBytes);
    }
    const out = new Uint8Array(n * this.codeRowBytes);
    for (let s = 0; s < n; s++) {
      const p = this.ptr(s);
      out.set(this.u8.subarray(p, p + this.codeRowBytes), s * this.codeRowBytes);
    }
    return out;
  }

  /** Loads rows written by {@link rows}; the length must be `n * codeRowBytes`. */
  loadRows(bytes: Uint8Array, n: number): void {
    const cb = this.codeRowBytes;
    if (bytes.length !== n * cb) {
      throw new BinaryFormatError(
        `int8 code table has ${bytes.length} bytes; ${n} rows of ${cb} expected`,
      );
    }
    this.reserve(n);
    for (let s = 0; s < n; s++) this.u8.set(bytes.subarray(s * cb, (s + 1) * cb), this.ptr(s));
  }
}

/** Worker scratch blocks a code store lays out: threads 1 .. 63 (0, the owner, has its own). */
export const MAX_CODE_THREADS = 64;

/** Largest |weight| of a query of dimension `dim`, so that `dim * 255 * qMax < 2^31`. */
function qMaxOf(dim: number): number {
  return Math.min(32767, Math.floor((2 ** 31 - 1) / (255 * dim)) - 1);
}

/**
 * The query weights (i16 at `i16[qi ..]`) and the kernel's affine map of a query (stored form
 * at `q[off ..]`), for the owner's {@link CodeStore} and a worker's {@link CodeThread}: one
 * function, so both score rows with the very same numbers.
 */
function prepareQuery(
  qz: ScalarQuantizer,
  metric: Metric,
  codeBytes: number,
  normOff: number,
  qMax: number,
  w: Float64Array,
  i16: Int16Array,
  qi: number,
  kernels: Kernels,
  q: ArrayLike<number>,
  off: number,
): void {
  const lo = qz.lo, scale = qz.scale, dim = qz.dim;
  let qlo = 0, qq = 0, wmax = 0;
  for (let i = 0; i < dim; i++) {
    const x = q[off + i];
    qlo += x * lo[i];
    qq += x * x;
    const wi = x * scale[i];
    w[i] = wi;
    const a = wi < 0 ? -wi : wi;
    if (a > wmax) wmax = a;
  }
  const sw = wmax > 0 ? wmax / qMax : 0;
  const inv = sw > 0 ? 1 / sw : 0;
  for (let i = 0; i < dim; i++) i16[qi + i] = Math.round(w[i] * inv);
  for (let i = dim; i < codeBytes; i++) i16[qi + i] = 0;
  if (metric === "l2") kernels.q8_set(qq - 2 * qlo, -2 * sw, 1, normOff);
  else kernels.q8_set(1 - qlo, -sw, 0, normOff);
}

/**
 * A code store as a worker thread sees it (structured-cloneable: the memory is shared, the
 * ranges are copied). Rows of slot `s` at `codesPtr + s * rowBytes`; worker `t`'s scratch
 * block at `scratchPtr + (t - 1) * blockBytes`: i16 query weights (`codeBytes`, padded to 64
 * bytes), then `blockSlots` u32 slots and as many f32 distances.
 */
export interface CodeLayout {
  memory: WebAssembly.Memory;
  dim: number;
  metric: Metric;
  lo: Float32Array;
  scale: Float32Array;
  codeBytes: number;
  normOff: number;
  rowBytes: number;
  codesPtr: number;
  scratchPtr: number;
  blockBytes: number;
  blockSlots: number;
}

/**
 * One worker thread's handle on a {@link CodeStore}: its own kernel instance over the shared
 * memory and its own scratch block, scoring rows exactly as the owner's store does (same
 * weights, same kernel). Reads rows only; the owner writes a slot's row before the slot is
 * linked, so every slot a walk reaches has its codes.
 */
export class CodeThread {
  readonly layout: CodeLayout;
  readonly kernels: Kernels;
  readonly queryPtr: number;
  readonly slotsPtr: number;
  readonly outPtr: number;
  readonly slotsIdx: number;
  readonly outIdx: number;
  /** Slots one call of {@link score} may take. */
  readonly batchMax: number;
  /** Views of the scratch (below the rows: valid whatever the memory grows to). */
  readonly u32: Uint32Array;
  readonly f32: Float32Array;
  private readonly i16: Int16Array;
  private readonly quantizer: ScalarQuantizer;
  private readonly qMax: number;
  private readonly w: Float64Array;

  constructor(layout: CodeLayout, thread: number) {
    if (!Number.isInteger(thread) || thread < 1 || thread >= MAX_CODE_THREADS) {
      throw new RangeError(`thread ${thread} must be an integer between 1 and 63`);
    }
    this.layout = layout;
    this.kernels = instantiateSharedKernels(layout.memory);
    this.quantizer = new ScalarQuantizer(layout.lo, layout.scale);
    this.qMax = qMaxOf(layout.dim);
    this.w = new Float64Array(layout.dim);
    this.queryPtr = layout.scratchPtr + (thread - 1) * layout.blockBytes;
    this.slotsPtr = this.queryPtr + Math.ceil((layout.codeBytes * 2) / 64) * 64;
    this.outPtr = this.slotsPtr + layout.blockSlots * 4;
    this.slotsIdx = this.slotsPtr >>> 2;
    this.outIdx = this.outPtr >>> 2;
    this.batchMax = layout.blockSlots;
    const buf = layout.memory.buffer;
    this.u32 = new Uint32Array(buf, 0, layout.codesPtr >>> 2);
    this.f32 = new Float32Array(buf, 0, layout.codesPtr >>> 2);
    this.i16 = new Int16Array(buf, 0, layout.codesPtr >>> 1);
  }

  /** Prepares the query (stored form: `dim` floats at `q[off ..]`, normalised for cosine). */
  setQuery(q: ArrayLike<number>, off: number): void {
    const L = this.layout;
    prepareQuery(
      this.quantizer,
      L.metric,
      L.codeBytes,
      L.normOff,
      this.qMax,
      this.w,
      this.i16,
      this.queryPtr >>> 1,
      this.kernels,
      q,
      off,
    );
  }

  /** Approximate distances to the `n` slots at `u32[slotsIdx ..]` into `f32[outIdx ..]`. */
  score(n: number): void {
    const L = this.layout;
    this.kernels.q8_slots(
      this.queryPtr,
      L.codesPtr,
      L.rowBytes,
      this.slotsPtr,
      n,
      this.outPtr,
      L.codeBytes,
    );
  }

  /** Approximate distance to one slot. */
  distanceTo(slot: number): number {
    this.u32[this.slotsIdx] = slot;
    this.score(1);
    return this.f32[this.outIdx];
  }
}

/**
 * Fixed-dimension f32 vectors held in one WebAssembly linear memory, addressed by slot.
 *
 * Memory layout (byte offsets into the kernels' memory):
 *
 * | region  | offset                     | size                        | use                          |
 * |---------|----------------------------|-----------------------------|------------------------------|
 * | static  | 0                          | `heap_base()`               | the module's own data        |
 * | query   | `queryPtr`                 | `strideBytes`               | the current query vector     |
 * | slots   | `slotsPtr`                 | `BATCH_MAX * 4`             | u32 slot list for a batch    |
 * | out     | `outPtr`                   | `BATCH_MAX * 4`             | f32 distances of a batch     |
 * | vectors | `vectorsPtr` (64-aligned)  | `capacity * strideBytes`    | slot `s` at `+ s*strideBytes`|
 *
 * Each vector is padded with zeros to a multiple of 4 floats (`stride`), so every vector is
 * 16-byte aligned and the kernels run without a scalar tail; zero padding changes neither
 * squared L2 nor the inner product.
 *
 * `memory.grow` detaches every typed-array view of the old buffer. The store therefore owns
 * its views (`f32`, `u32`) and replaces them inside {@link VectorStore.reserve}, the only method
 * that grows; callers must re-read `store.f32` / `store.u32` after calling it and must not keep
 * views across calls that may grow.
 *
 * @example
 * ```ts
 * import { VectorStore } from "./vector_store.ts";
 * const s = new VectorStore(3, "l2");
 * s.reserve(2);
 * s.write(0, [0, 0, 0]);
 * s.write(1, [3, 4, 0]);
 * console.log(s.distanceBetween(0, 1)); // 25 (squared L2)
 * ```
 * @module
 */
import {
  instantiateKernels,
  type Kernels,
  type Metric,
  metricKernels,
} from "../kernels/kernels.ts";
import type { PairKernel, RangeKernel, SlotsKernel } from "../kernels/kernels.ts";

/** Most distances one batch kernel call computes (the size of the slots and out buffers). */
export const BATCH_MAX = 4096;

const PAGE_BYTES = 65536;
/** wasm32 addresses at most 4 GiB; V8 allows 65536 pages. */
const MAX_PAGES = 65536;

/** Thrown when the index would outgrow the 4 GiB a wasm32 memory can address. */
export class CapacityError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "CapacityError";
  }
}

/** Vectors of one index in one WASM memory, with the metric's kernels chosen once. */
/**
 * Grows `mem` to hold at least `need` bytes (whole 64 KiB pages); a CapacityError names
 * `what` and `need` when that passes the 4 GiB a WASM memory can address.
 */
export function growMemory(mem: WebAssembly.Memory, need: number, what: string): void {
  const have = mem.buffer.byteLength;
  if (need <= have) return;
  const pages = Math.ceil((need - have) / PAGE_BYTES);
  if (have / PAGE_BYTES + pages > MAX_PAGES) {
    throw new CapacityError(`${what} need ${need} bytes; a WASM memory holds at most 4 GiB`);
  }
  mem.grow(pages);
}

export class VectorStore {
  readonly dim: number;
  /** Floats per stored vector (dim rounded up to a multiple of 4). */
  readonly stride: number;
  readonly strideBytes: number;
  readonly metric: Metric;
  readonly kernels: Kernels;
  readonly pair: PairKernel;
  readonly slotsKernel: SlotsKernel;
  readonly rangeKernel: RangeKernel;
  readonly queryPtr: number;
  readonly slotsPtr: number;
  readonly outPtr: number;
  readonly vectorsPtr: number;
  /** Index of `slotsPtr` in `u32` and of `outPtr` in `f32`, precomputed for the hot path. */
  readonly slotsIdx: number;
  readonly outIdx: number;
  readonly queryIdx: number;
  /** f32 view of the whole memory; replaced when memory grows. */
  f32: Float32Array;
  /** u32 view of the whole memory; replaced when memory grows. */
  u32: Uint32Array;
  /** Slots that fit in the memory as it is now. */
  capacity = 0;

  /**
   * `shared`: the store lives in a shared memory laid out by the caller (HnswIndex's graph
   * layout, shared_graph.ts): `kernels` is an instance over it, the store's own query and
   * batch buffers must end by `limitPtr` (where the threads' scratch starts), and the vectors
   * start at `vectorsPtr`.
   */
  constructor(
    dim: number,
    metric: Metric,
    shared?: { kernels: Kernels; limitPtr: number; vectorsPtr: number },
  ) {
    if (!Number.isInteger(dim) || dim < 1 || dim > 65536) {
      throw new RangeError(`Dimension ${dim} must be an integer between 1 and 65536`);
    }
    this.dim = dim;
    this.stride = (dim + 3) & ~3;
    this.strideBytes = this.stride * 4;
    this.metric = metric;
    this.kernels = shared?.kernels ?? instantiateKernels();
    const mk = metricKernels(this.kernels, metric);
    this.pair = mk.pair;
    this.slotsKernel = mk.slots;
    this.rangeKernel = mk.range;
    const align = (x: number, a: number) => Math.ceil(x / a) * a;
    this.queryPtr = align(this.kernels.heap_base(), 64);
    this.slotsPtr = align(this.queryPtr + this.strideBytes, 64);
    this.outPtr = this.slotsPtr + BATCH_MAX * 4;
    this.vectorsPtr = align(this.outPtr + BATCH_MAX * 4, 64);
    if (shared !== undefined) {
      if (this.vectorsPtr > shared.limitPtr) {
        throw new Error(`VectorStore buffers end at ${this.vectorsPtr}, past ${shared.limitPtr}`);
      }
      this.vectorsPtr = shared.vectorsPtr;
    }
    this.queryIdx = this.queryPtr >>> 2;
    this.slotsIdx = this.slotsPtr >>> 2;
    this.outIdx = this.outPtr >>> 2;
    this.f32 = new Float32Array(this.kernels.memory.buffer);
    this.u32 = new Uint32Array(this.kernels.memory.buffer);
    this.reserve(0);
  }

  /** Byte address of a slot's vector. */
  ptr(slot: number): number {
    return this.vectorsPtr + slot * this.strideBytes;
  }

  /** Bytes the memory holds now (all of it counts against the index). */
  get memoryBytes(): number {
    return this.kernels.memory.buffer.byteLength;
  }

  /**
   * Makes room for at least `slots` vectors, growing the memory if needed and replacing the
   * views. Grows to exactly what is asked: callers choose the growth policy.
   */
  reserve(slots: number): void {
    const need = this.vectorsPtr + slots * this.strideBytes;
    const mem = this.kernels.memory;
    growMemory(mem, need, `${slots} vectors of dimension ${this.dim}`);
    if (this.f32.buffer !== mem.buffer) {
      this.f32 = new Float32Array(mem.buffer);
      this.u32 = new Uint32Array(mem.buffer);
    }
    this.capacity = Math.floor((mem.buffer.byteLength - this.vectorsPtr) / this.strideBytes);
  }

  /**
   * Stores a vector at `slot` (which must be below `capacity`), zero-padding to the stride and
   * normalising it for the cosine metric. Values must already be validated.
   */
  write(slot: number, vector: ArrayLike<number>): void {
    if (slot < 0 || slot >= this.capacity) {
      throw new RangeError(`Slot ${slot} is outside the store's capacity ${this.capacity}`);
    }
    const base = this.ptr(slot) >>> 2;
    const f32 = this.f32;
    for (let i = 0; i < this.dim; i++) f32[base + i] = vector[i];
    for (let i = this.dim; i < this.stride; i++) f32[base + i] = 0;
    if (this.metric === "cosine") this.kernels.normalize(this.ptr(slot), this.stride);
  }

  /** Copies the query into the query buffer (normalised for cosine). */
  setQuery(vector: ArrayLike<number>): void {
    const f32 = this.f32;
    const q = this.queryIdx;
    for (let i = 0; i < this.dim; i++) f32[q + i] = vector[i];
    for (let i = this.dim; i < this.stride; i++) f32[q + i] = 0;
    if (this.metric === "cosine") this.kernels.normalize(this.queryPtr, this.stride);
  }

  /** A copy of the stored (for cosine: normalised) vector at `slot`. */
  read(slot: number): Float32Array {
    const base = this.ptr(slot) >>> 2;
    return this.f32.slice(base, base + this.dim);
  }

  /** Distance from the vector at byte address `qPtr` to the vector of `slot`. */
  distanceTo(qPtr: number, slot: number): number {
    return this.pair(qPtr, this.ptr(slot), this.stride);
  }

  /** Distance between two stored vectors. */
  distanceBetween(a: number, b: number): number {
    return this.pair(this.ptr(a), this.ptr(b), this.stride);
  }

  /**
   * Distances from the vector at byte address `qPtr` to the `n` slots already written to
   * `u32[slotsIdx ..]`; results land in `f32[outIdx ..]`. One WASM call.
   */
  distancesToSlots(qPtr: number, n: number): void {
    this.slotsKernel(
      qPtr,
      this.vectorsPtr,
      this.strideBytes,
      this.slotsPtr,
      n,
      this.outPtr,
      this.stride,
    );
  }

  /** Distances from `qPtr` to slots `start .. start + n - 1` (n <= BATCH_MAX) into the out buffer. */
  distancesToRange(qPtr: number, start: number, n: number): void {
    this.rangeKernel(qPtr, this.vectorsPtr, this.strideBytes, start, n, this.outPtr, this.stride);
  }
}

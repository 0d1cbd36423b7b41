/**
 * Loads the AssemblyScript distance kernels (`asm/kernels.ts`, built to `build/kernels.wasm` by
 * `deno task build:asm`).
 *
 * The module is compiled once per process; every vector index instantiates it again so that
 * each index owns exactly one linear memory. Pointers passed to the kernels are byte offsets
 * into that memory.
 *
 * @example
 * ```ts
 * import { instantiateKernels } from "./kernels.ts";
 * const k = instantiateKernels();
 * const f32 = new Float32Array(k.memory.buffer);
 * const a = k.heap_base();
 * f32.set([1, 2, 3], a / 4);
 * f32.set([1, 2, 4], a / 4 + 4);
 * console.log(k.l2sq(a, a + 16, 3)); // 1
 * ```
 * @module
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { type Metric, METRICS } from "../common/limits.ts";

/** The distance a metric orders by; smaller is closer (one definition, in common/limits.ts). */
export { type Metric, METRICS };

/**
 * Batch kernel: distances from the query at `q` to the vectors at `base + slot * stride` for the
 * `n` u32 slots at `slots`, written as f32 to `out`.
 */
export type SlotsKernel = (
  q: number,
  base: number,
  stride: number,
  slots: number,
  n: number,
  out: number,
  dim: number,
) => void;

/** Range kernel: like {@link SlotsKernel} for the contiguous slots `start .. start + n - 1`. */
export type RangeKernel = (
  q: number,
  base: number,
  stride: number,
  start: number,
  n: number,
  out: number,
  dim: number,
) => void;

/** Single pair kernel over two pointers. */
export type PairKernel = (a: number, b: number, dim: number) => number;

/** The exports of `build/kernels.wasm`. */
export interface Kernels {
  readonly memory: WebAssembly.Memory;
  l2sq: PairKernel;
  dot: PairKernel;
  ip: PairKernel;
  cosine: PairKernel;
  l2sq_slots: SlotsKernel;
  ip_slots: SlotsKernel;
  cosine_slots: SlotsKernel;
  l2sq_range: RangeKernel;
  ip_range: RangeKernel;
  cosine_range: RangeKernel;
  normalize(a: number, dim: number): number;
  heap_base(): number;
  /**
   * Sets the affine map the int8 batch kernel applies to each integer sum `s` of a code row at
   * `v`: distance = a + b * s + c * (f32 at v + normOff). See asm/kernels.ts.
   */
  q8_set(a: number, b: number, c: number, normOff: number): void;
  /** Integer dot product of `n` u8 codes at `v` with `n` i16 weights at `q` (i32 sum). */
  q8_dot(q: number, v: number, n: number): number;
  /** Int8 batch kernel over slots: `dim` is the code bytes compared per row (see q8_set). */
  q8_slots: SlotsKernel;
  /** Sets the regions of {@link Kernels.q8_search0} (see asm/kernels.ts for the table). */
  q8_layout(
    codes: number,
    rowBytes: number,
    codeBytes: number,
    links: number,
    linkRowBytes: number,
    flags: number,
    visited: number,
    cand: number,
    res: number,
    slots: number,
    vlog: number,
  ): void;
  /** Layer-0 best-first search over codes from slot `ep`; returns the results it left. */
  q8_search0(q: number, ep: number, ef: number): number;
  /** Keeps the best `r` results of the last q8_search0; returns how many remain. */
  q8_res_trim(r: number): number;
  /** Nodes the last q8_search0 scored. */
  q8_seen(): number;
}

/** Thrown when the compiled kernels are missing; names the file and the command that builds it. */
export class KernelsNotBuiltError extends Error {
  constructor(path: string, cause: unknown) {
    super(
      `WASM kernels not found at "${path}"; run "deno task build:asm" (tasks that need them run it)`,
      { cause },
    );
    this.name = "KernelsNotBuiltError";
  }
}

const wasmUrl = new URL("../../build/kernels.wasm", import.meta.url);
let compiled: WebAssembly.Module | null = null;

/** The compiled kernel module, compiled on first use and shared by all instances. */
export function kernelModule(): WebAssembly.Module {
  if (compiled === null) {
    const path = fileURLToPath(wasmUrl);
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = new Uint8Array(readFileSync(path));
    } catch (e) {
      throw new KernelsNotBuiltError(path, e);
    }
    compiled = new WebAssembly.Module(bytes);
  }
  return compiled;
}

/** A fresh kernel instance with its own linear memory. */
export function instantiateKernels(): Kernels {
  const instance = new WebAssembly.Instance(kernelModule(), {});
  return instance.exports as unknown as Kernels;
}

/** The metric named by `name`, or a TypeError that quotes it. */
export function parseMetric(name: string): Metric {
  const n = name.toLowerCase();
  if (n === "l2" || n === "euclidean") return "l2";
  if (n === "cosine") return "cosine";
  if (n === "dot" || n === "ip" || n === "dotproduct" || n === "inner_product") return "dot";
  throw new TypeError(`Unknown metric "${name}"; expected one of l2, cosine, dot`);
}

/** The kernels one metric uses, chosen once per index. */
export interface MetricKernels {
  pair: PairKernel;
  slots: SlotsKernel;
  range: RangeKernel;
}

/**
 * Picks the kernels for a metric. Cosine vectors are normalised when stored, so cosine is
 * searched with the inner-product kernels (1 - a.b), as the design asks.
 */
export function metricKernels(k: Kernels, metric: Metric): MetricKernels {
  switch (metric) {
    case "l2":
      return { pair: k.l2sq, slots: k.l2sq_slots, range: k.l2sq_range };
    case "cosine":
    case "dot":
      return { pair: k.ip, slots: k.ip_slots, range: k.ip_range };
  }
}

const sharedWasmUrl = new URL("../../build/kernels_shared.wasm", import.meta.url);
let compiledShared: WebAssembly.Module | null = null;

/**
 * The kernel module built over an imported shared memory (`build/kernels_shared.wasm`, from
 * the same source with `--importMemory --sharedMemory`): compiled on first use, once per
 * thread (a worker compiles its own copy; modules are not shared between isolates here).
 */
export function sharedKernelModule(): WebAssembly.Module {
  if (compiledShared === null) {
    const path = fileURLToPath(sharedWasmUrl);
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = new Uint8Array(readFileSync(path));
    } catch (e) {
      throw new KernelsNotBuiltError(path, e);
    }
    compiledShared = new WebAssembly.Module(bytes);
  }
  return compiledShared;
}

/** Pages (64 KiB) a shared kernel memory may declare at most: the 4 GiB of wasm32. */
export const SHARED_MAX_PAGES = 65536;

/**
 * A shared linear memory for {@link instantiateSharedKernels}: `initialPages` now, growable in
 * place up to `maxPages` (V8 reserves the maximum's address range up front, so growth never
 * moves it and every thread keeps valid pointers).
 */
export function createSharedMemory(initialPages: number, maxPages: number): WebAssembly.Memory {
  if (!Number.isInteger(maxPages) || maxPages < 2 || maxPages > SHARED_MAX_PAGES) {
    throw new RangeError(`maxPages ${maxPages} must be an integer between 2 and 65536`);
  }
  const initial = Math.min(maxPages, Math.max(2, initialPages));
  return new WebAssembly.Memory({ initial, maximum: maxPages, shared: true });
}

/**
 * A kernel instance over `memory` (a shared memory from {@link createSharedMemory}); several
 * instances, one per thread, may use the same memory at once. The module keeps no state in
 * memory below `heap_base()` that a second instantiation could disturb (it has no data
 * segments; its only globals, those of the int8 kernels, are per instance).
 */
export function instantiateSharedKernels(memory: WebAssembly.Memory): Kernels {
  const instance = new WebAssembly.Instance(sharedKernelModule(), { env: { memory } });
  return Object.assign(Object.create(null), instance.exports, { memory }) as Kernels;
}

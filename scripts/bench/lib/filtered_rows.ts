/**
 * Result rows of `deno task bench:filtered` and the recall measure both sides share.
 * Runtime-neutral.
 * @module
 */
import type { Matrix } from "./fvecs.ts";

/** One measurement: an implementation, a selectivity case (or "none") and an ef. */
export interface FilteredRow {
  impl: string;
  case: string;
  ef: number;
  recall_at_10: number;
  qps: number;
  /** Our plan counts over the run, e.g. `{exact: 1000}` (ours only). */
  plans?: Record<string, number>;
}

/**
 * Mean recall@k: the share of each query's true k nearest (fewer when fewer points match;
 * ground-truth rows are padded with -1) that the answer holds.
 */
export function recallOf(got: ArrayLike<number>[], gt: Matrix<Int32Array>, k: number): number {
  let hits = 0, want = 0;
  for (let q = 0; q < got.length; q++) {
    const truth = new Set<number>();
    for (let i = 0; i < Math.min(k, gt.dim); i++) {
      const id = gt.data[q * gt.dim + i];
      if (id >= 0) truth.add(id);
    }
    want += truth.size;
    const ids = got[q];
    for (let i = 0; i < ids.length; i++) if (truth.has(ids[i])) hits++;
  }
  return want === 0 ? 1 : hits / want;
}

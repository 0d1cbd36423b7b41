/**
 * Test support for the worker pool's tests (graph_pool_test.ts, graph_pool_int8_test.ts), which
 * each had a copy: seeded random vectors, a row of them, and a pool search that must be taken.
 *
 * @example
 * ```ts
 * const data = randomVectors(100, 8, 7);
 * const hits = await searchOn(pool, index, row(data, 0, 8), 5, 20);
 * ```
 * @module
 */
import assert from "node:assert/strict";
import type { GraphPool, PoolSearchResult } from "./graph_pool.ts";
import type { HnswIndex } from "./hnsw.ts";

/** A xorshift32 generator of floats in [0, 1), seeded (0 counts as 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/** `n` rows of `dim` floats in [-1, 1), one after another, from {@link rng}(`seed`). */
export function randomVectors(n: number, dim: number, seed: number): Float32Array {
  const r = rng(seed);
  const v = new Float32Array(n * dim);
  for (let i = 0; i < v.length; i++) v[i] = r() * 2 - 1;
  return v;
}

/** Row `i` of `v` (rows of `dim` floats), as a view. */
export const row = (v: Float32Array, i: number, dim: number): Float32Array =>
  v.subarray(i * dim, (i + 1) * dim);

/**
 * The hits of a search of `index` on the pool's workers (all its threads; `rescore` absent: the
 * index's own); fails the test when the pool does not take it (null).
 */
export async function searchOn(
  pool: GraphPool,
  index: HnswIndex,
  q: ArrayLike<number>,
  k: number,
  ef: number,
  rescore?: number,
): Promise<PoolSearchResult["hits"]> {
  const p = pool.search(index, q, k, ef, pool.threads, rescore);
  assert.ok(p !== null, "the pool takes the search");
  return (await p).hits;
}

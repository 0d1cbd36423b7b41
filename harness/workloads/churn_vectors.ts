/**
 * Deterministic vectors and a seeded PRNG shared by the churn, crash and restart tests.
 * @module
 */

/** mulberry32: a small seeded PRNG returning floats in [0, 1). */
export function churnRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A vector of `dim` finite values in [-1, 1) that depends only on `key` (a plain array). */
export function churnVector(key: number, dim: number): number[] {
  const random = churnRandom(key ^ 0x5bd1e995);
  const v = new Array<number>(dim);
  for (let i = 0; i < dim; i++) v[i] = Math.fround(random() * 2 - 1);
  return v;
}

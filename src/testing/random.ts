/**
 * Seeded random data for tests and benchmarks (mulberry32): the same seed gives the same
 * numbers in every runtime.
 *
 * @example
 * ```ts
 * import { Rng } from "./random.ts";
 * const r = new Rng(1);
 * const v = r.vector(8); // 8 floats in [-1, 1)
 * ```
 * @module
 */
export class Rng {
  private s: number;

  constructor(seed: number) {
    this.s = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) | 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** `dim` floats uniform in [-1, 1). */
  vector(dim: number): Float32Array {
    const v = new Float32Array(dim);
    for (let i = 0; i < dim; i++) v[i] = this.next() * 2 - 1;
    return v;
  }
}

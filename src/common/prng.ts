/**
 * Seeded pseudo-random number generator for deterministic simulations.
 *
 * xoshiro128** (Blackman & Vigna) with its 128-bit state expanded from a 32-bit seed by
 * splitmix32. Only 32-bit integer arithmetic (`Math.imul`, shifts, `>>> 0`) is used, so a seed
 * yields the same sequence on every JavaScript runtime.
 *
 * The class also satisfies the `random` dependency of the protocol state machines (they only
 * need `nextInt(n)`), so a simulation can hand each node its own `fork()`.
 */

/** A seed or state value that is not a usable 32-bit unsigned integer. */
export class PrngSeedError extends Error {
  override name = "PrngSeedError";
}

/** An argument outside the range a `Prng` method accepts. */
export class PrngRangeError extends RangeError {
  override name = "PrngRangeError";
}

const TWO_POW_32 = 0x1_0000_0000;
const TWO_POW_53 = 2 ** 53;

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** splitmix32 step: returns [next state, output]. */
function splitmix32(state: number): [number, number] {
  const next = (state + 0x9e3779b9) >>> 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  z = (z ^ (z >>> 16)) >>> 0;
  return [next, z];
}

function checkWord(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value >= TWO_POW_32) {
    throw new PrngSeedError(`${what} ${value} is not an unsigned 32-bit integer`);
  }
}

export class Prng {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;

  /** `seed` is an unsigned 32-bit integer; equal seeds give equal sequences. */
  constructor(seed: number) {
    checkWord(seed, "Seed");
    let state = seed;
    const words: number[] = [];
    for (let i = 0; i < 4; i++) {
      const [next, out] = splitmix32(state);
      state = next;
      words.push(out);
    }
    [this.#s0, this.#s1, this.#s2, this.#s3] = words as [number, number, number, number];
    if ((this.#s0 | this.#s1 | this.#s2 | this.#s3) === 0) this.#s0 = 1;
  }

  /** Rebuilds a generator from `state()`. */
  static fromState(state: readonly [number, number, number, number]): Prng {
    state.forEach((w, i) => checkWord(w, `State word ${i}`));
    if ((state[0] | state[1] | state[2] | state[3]) === 0) {
      throw new PrngSeedError("State [0, 0, 0, 0] is the one forbidden xoshiro128** state");
    }
    const p = new Prng(0);
    [p.#s0, p.#s1, p.#s2, p.#s3] = state;
    return p;
  }

  /** The four state words, for snapshots and `fromState`. */
  state(): [number, number, number, number] {
    return [this.#s0, this.#s1, this.#s2, this.#s3];
  }

  /** Next unsigned 32-bit integer. */
  next(): number {
    const result = Math.imul(rotl(Math.imul(this.#s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.#s1 << 9) >>> 0;
    this.#s2 = (this.#s2 ^ this.#s0) >>> 0;
    this.#s3 = (this.#s3 ^ this.#s1) >>> 0;
    this.#s1 = (this.#s1 ^ this.#s2) >>> 0;
    this.#s0 = (this.#s0 ^ this.#s3) >>> 0;
    this.#s2 = (this.#s2 ^ t) >>> 0;
    this.#s3 = rotl(this.#s3, 11);
    return result;
  }

  /** Uniform integer in [0, n) without modulo bias; `n` is an integer in [1, 2^32]. */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_POW_32) {
      throw new PrngRangeError(`Bound ${n} is not an integer in [1, 2^32]`);
    }
    const limit = TWO_POW_32 - (TWO_POW_32 % n);
    for (;;) {
      const r = this.next();
      if (r < limit) return r % n;
    }
  }

  /** Uniform integer in [min, max] (both inclusive). */
  intBetween(min: number, max: number): number {
    if (!Number.isInteger(min) || !Number.isInteger(max) || max < min) {
      throw new PrngRangeError(`Range [${min}, ${max}] is not an integer range with min <= max`);
    }
    return min + this.nextInt(max - min + 1);
  }

  /** Uniform float in [0, 1) with 53 bits of precision. */
  float(): number {
    const hi = this.next() >>> 5; // 27 bits
    const lo = this.next() >>> 6; // 26 bits
    return (hi * 0x400_0000 + lo) / TWO_POW_53;
  }

  /** True with probability `p` (p <= 0 never, p >= 1 always, consuming no randomness). */
  chance(p: number): boolean {
    if (!(p > 0)) return false;
    if (p >= 1) return true;
    return this.float() < p;
  }

  /** Shuffles `arr` in place (Fisher–Yates) and returns it. */
  shuffle<T>(arr: T[]): T[] {
    for (let i = arr.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      const tmp = arr[i] as T;
      arr[i] = arr[j] as T;
      arr[j] = tmp;
    }
    return arr;
  }

  /** A uniformly chosen element; throws on an empty array. */
  pick<T>(arr: readonly T[]): T {
    if (arr.length === 0) throw new PrngRangeError("Cannot pick from an empty array");
    return arr[this.nextInt(arr.length)] as T;
  }

  /**
   * An independent generator seeded from this one's next outputs; advances this generator by
   * four steps. Use one fork per simulated component so adding draws in one component does not
   * shift the sequence another sees.
   */
  fork(): Prng {
    let words = [this.next(), this.next(), this.next(), this.next()] as [
      number,
      number,
      number,
      number,
    ];
    // Mix once more so a fork's sequence is not a shifted copy of the parent's.
    words = words.map((w, i) => splitmix32((w ^ Math.imul(i + 1, 0x27d4eb2d)) >>> 0)[1]) as [
      number,
      number,
      number,
      number,
    ];
    if ((words[0] | words[1] | words[2] | words[3]) === 0) words[0] = 1;
    return Prng.fromState(words);
  }
}

/**
 * Binary heaps of (f32 key, u32 value) pairs over typed arrays: no object per entry, no
 * allocation per push once the capacity is reached.
 *
 * `MinHeap` pops the smallest key first (HNSW's candidate queue); `MaxHeap` the largest (the
 * result set, whose top is the current worst result).
 *
 * @example
 * ```ts
 * import { MinHeap } from "./heap.ts";
 * const h = new MinHeap(4);
 * h.push(0.5, 7);
 * h.push(0.1, 3);
 * console.log(h.topValue(), h.topKey()); // 3 0.1 (approximately; keys are f32)
 * ```
 * @module
 */

abstract class Heap {
  keys: Float32Array;
  values: Uint32Array;
  size = 0;

  constructor(capacity: number) {
    const c = Math.max(4, capacity | 0);
    this.keys = new Float32Array(c);
    this.values = new Uint32Array(c);
  }

  /** Bytes held by the backing arrays. */
  get bytes(): number {
    return this.keys.byteLength + this.values.byteLength;
  }

  clear(): void {
    this.size = 0;
  }

  topKey(): number {
    return this.keys[0];
  }

  topValue(): number {
    return this.values[0];
  }

  protected grow(): void {
    const c = this.keys.length * 2;
    const k = new Float32Array(c);
    k.set(this.keys);
    const v = new Uint32Array(c);
    v.set(this.values);
    this.keys = k;
    this.values = v;
  }
}

/** Smallest key on top. */
export class MinHeap extends Heap {
  push(key: number, value: number): void {
    if (this.size === this.keys.length) this.grow();
    const keys = this.keys;
    const values = this.values;
    let i = this.size++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pk = keys[p];
      if (pk <= key) break;
      keys[i] = pk;
      values[i] = values[p];
      i = p;
    }
    keys[i] = key;
    values[i] = value;
  }

  /** Removes the top entry and returns its value (read `topKey()` first for its key). */
  pop(): number {
    const keys = this.keys;
    const values = this.values;
    const top = values[0];
    const n = --this.size;
    if (n === 0) return top;
    const key = keys[n];
    const value = values[n];
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && keys[c + 1] < keys[c]) c++;
      if (keys[c] >= key) break;
      keys[i] = keys[c];
      values[i] = values[c];
      i = c;
    }
    keys[i] = key;
    values[i] = value;
    return top;
  }
}

/** Largest key on top. */
export class MaxHeap extends Heap {
  push(key: number, value: number): void {
    if (this.size === this.keys.length) this.grow();
    const keys = this.keys;
    const values = this.values;
    let i = this.size++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pk = keys[p];
      if (pk >= key) break;
      keys[i] = pk;
      values[i] = values[p];
      i = p;
    }
    keys[i] = key;
    values[i] = value;
  }

  /** Removes the top entry and returns its value (read `topKey()` first for its key). */
  pop(): number {
    const keys = this.keys;
    const values = this.values;
    const top = values[0];
    const n = --this.size;
    if (n === 0) return top;
    const key = keys[n];
    const value = values[n];
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && keys[c + 1] > keys[c]) c++;
      if (keys[c] <= key) break;
      keys[i] = keys[c];
      values[i] = values[c];
      i = c;
    }
    keys[i] = key;
    values[i] = value;
    return top;
  }
}

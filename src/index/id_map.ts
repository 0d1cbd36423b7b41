/**
 * Map from uint32 point ids to int32 slots: open addressing with linear probing over two typed
 * arrays (no object per entry). 8 bytes per bucket, load factor at most 0.75.
 *
 * @example
 * ```ts
 * import { IdMap } from "./id_map.ts";
 * const m = new IdMap();
 * m.set(4000000000, 7);
 * console.log(m.get(4000000000), m.get(1)); // 7 -1
 * ```
 * @module
 */

const EMPTY = -1;
const TOMBSTONE = -2;

/** Mixes an id into a well-spread 32-bit hash (murmur3's finaliser). */
export function mix(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

export class IdMap {
  private keys: Uint32Array;
  private vals: Int32Array;
  private mask: number;
  /** Live entries. */
  size = 0;
  /** Live entries plus tombstones: what the load factor counts. */
  private used = 0;

  constructor(expected = 16) {
    let cap = 16;
    while (cap * 0.75 < expected) cap *= 2;
    this.keys = new Uint32Array(cap);
    this.vals = new Int32Array(cap).fill(EMPTY);
    this.mask = cap - 1;
  }

  get bytes(): number {
    return this.keys.byteLength + this.vals.byteLength;
  }

  /** The slot of `id`, or -1. */
  get(id: number): number {
    const keys = this.keys;
    const vals = this.vals;
    let i = mix(id) & this.mask;
    for (;;) {
      const v = vals[i];
      if (v === EMPTY) return -1;
      if (v !== TOMBSTONE && keys[i] === id) return v;
      i = (i + 1) & this.mask;
    }
  }

  set(id: number, slot: number): void {
    if (slot < 0) throw new RangeError(`Slot ${slot} must be non-negative`);
    if ((this.used + 1) > this.keys.length * 0.75) this.rehash(this.size + 1);
    const keys = this.keys;
    const vals = this.vals;
    let i = mix(id) & this.mask;
    let firstTomb = -1;
    for (;;) {
      const v = vals[i];
      if (v === EMPTY) break;
      if (v === TOMBSTONE) {
        if (firstTomb < 0) firstTomb = i;
      } else if (keys[i] === id) {
        vals[i] = slot;
        return;
      }
      i = (i + 1) & this.mask;
    }
    if (firstTomb >= 0) {
      i = firstTomb;
    } else {
      this.used++;
    }
    keys[i] = id;
    vals[i] = slot;
    this.size++;
  }

  /** Removes `id`; returns its slot or -1. */
  delete(id: number): number {
    const keys = this.keys;
    const vals = this.vals;
    let i = mix(id) & this.mask;
    for (;;) {
      const v = vals[i];
      if (v === EMPTY) return -1;
      if (v !== TOMBSTONE && keys[i] === id) {
        vals[i] = TOMBSTONE;
        this.size--;
        return v;
      }
      i = (i + 1) & this.mask;
    }
  }

  private rehash(expected: number): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    let cap = 16;
    while (cap * 0.75 < expected * 1.25) cap *= 2;
    this.keys = new Uint32Array(cap);
    this.vals = new Int32Array(cap).fill(EMPTY);
    this.mask = cap - 1;
    this.size = 0;
    this.used = 0;
    for (let i = 0; i < oldVals.length; i++) {
      const v = oldVals[i];
      if (v >= 0) this.set(oldKeys[i], v);
    }
  }
}

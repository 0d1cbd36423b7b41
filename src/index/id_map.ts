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

  /**
   * The map's own arrays and counts (not copies), for a snapshot that stores the map as it is
   * (collection.ts, snapshot version 6): {@link assign} takes them back without a hash per id.
   * Bucket positions depend on {@link mix} and the capacity, so a stored image is only valid
   * for this hash function; a change of it needs a new snapshot version.
   */
  image(): { keys: Uint32Array; vals: Int32Array; size: number; used: number } {
    return { keys: this.keys, vals: this.vals, size: this.size, used: this.used };
  }

  /**
   * Replaces the contents with arrays an {@link image} gave (the caller checked each entry
   * against what it maps, e.g. hnsw.ts `readFrom`). Throws a RangeError when the shape cannot
   * be one of this map's (capacity not a power of two of at least 16, arrays of different
   * lengths, counts out of range, an empty marker other than -1 and -2).
   */
  assign(keys: Uint32Array, vals: Int32Array, size: number, used: number): void {
    const cap = keys.length;
    if (cap < 16 || (cap & (cap - 1)) !== 0 || vals.length !== cap) {
      throw new RangeError(`id map of ${cap} keys and ${vals.length} slots is not a table`);
    }
    if (!(size >= 0 && size <= used && used <= cap * 0.75)) {
      throw new RangeError(`id map counts ${size} / ${used} do not fit ${cap} buckets`);
    }
    this.keys = keys;
    this.vals = vals;
    this.mask = cap - 1;
    this.size = size;
    this.used = used;
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

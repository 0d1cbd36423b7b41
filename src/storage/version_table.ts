/**
 * The per-point version table of a collection (see "Versions" in collection.ts): uint32 pid →
 * version (a number; negative for a tombstone, 0 for a write from before versions), with the
 * part of `Map`'s interface the collection uses, kept in typed arrays: open addressing with
 * linear probing, load factor at most 0.75, no object per entry.
 *
 * | array  | per bucket | holds                                |
 * | ------ | ---------- | ------------------------------------ |
 * | keys   | u32        | the pid                              |
 * | vals   | f64        | the version (exact up to 2^53)       |
 * | states | u8         | 0 empty, 1 full, 2 removed (probing) |
 *
 * 13 bytes per bucket, ~17-35 bytes per entry with the load factor, against ~40-80 for a JS
 * `Map<number, number>` entry; and a snapshot's table loads without allocating per point.
 * Iteration order is the buckets' order, not insertion order (callers sort where they need).
 *
 * @example
 * ```ts
 * import { VersionTable } from "./version_table.ts";
 * const t = new VersionTable();
 * t.set(7, 12);
 * t.set(9, -3); // a tombstone
 * console.log(t.get(7), t.get(8), t.size); // 12 undefined 2
 * ```
 * @module
 */

import { mix } from "../index/id_map.ts";

const EMPTY = 0;
const FULL = 1;
const REMOVED = 2;
/** Bucket states in {@link VersionTable.image}'s `states`: empty, holding an entry, removed. */
export const BUCKET_EMPTY = EMPTY;
export const BUCKET_FULL = FULL;
export const BUCKET_REMOVED = REMOVED;

export class VersionTable {
  private keys: Uint32Array;
  private vals: Float64Array;
  private states: Uint8Array;
  private mask: number;
  /** Entries held. */
  size = 0;
  /** Full plus removed buckets: what the load factor counts. */
  private used = 0;

  constructor(expected = 16) {
    let cap = 16;
    while (cap * 0.75 < expected) cap *= 2;
    this.keys = new Uint32Array(cap);
    this.vals = new Float64Array(cap);
    this.states = new Uint8Array(cap);
    this.mask = cap - 1;
  }

  /** Bytes of the arrays. */
  get bytes(): number {
    return this.keys.byteLength + this.vals.byteLength + this.states.byteLength;
  }

  /** The bucket of `id`, or -1. */
  private find(id: number): number {
    const keys = this.keys;
    const states = this.states;
    let i = mix(id) & this.mask;
    for (;;) {
      const s = states[i];
      if (s === EMPTY) return -1;
      if (s === FULL && keys[i] === id) return i;
      i = (i + 1) & this.mask;
    }
  }

  has(id: number): boolean {
    return this.find(id) >= 0;
  }

  /** The bucket a lookup of `id` finds it in, or -1 (a load's check of a stored table). */
  bucketOf(id: number): number {
    return this.find(id);
  }

  get(id: number): number | undefined {
    const i = this.find(id);
    return i < 0 ? undefined : this.vals[i];
  }

  set(id: number, version: number): this {
    const found = this.find(id);
    if (found >= 0) {
      this.vals[found] = version;
      return this;
    }
    if (this.used + 1 > this.states.length * 0.75) this.rehash(this.size + 1);
    const keys = this.keys;
    const states = this.states;
    let i = mix(id) & this.mask;
    let reuse = -1;
    for (;;) {
      const s = states[i];
      if (s === EMPTY) break;
      if (s === REMOVED && reuse < 0) reuse = i;
      i = (i + 1) & this.mask;
    }
    if (reuse >= 0) i = reuse;
    else this.used++;
    keys[i] = id;
    this.vals[i] = version;
    states[i] = FULL;
    this.size++;
    return this;
  }

  /** Makes room for `expected` entries at once (a snapshot load: no rehash per doubling). */
  reserve(expected: number): void {
    if (expected * 1.25 > this.states.length * 0.75) this.rehash(expected);
  }

  /**
   * Adds `id`, which the caller knows is not held (a snapshot load: ascending, distinct ids), in
   * one probe sequence (no lookup first, as {@link set} does).
   */
  insertAbsent(id: number, version: number): void {
    if (this.used + 1 > this.states.length * 0.75) this.rehash(this.size + 1);
    const states = this.states;
    const mask = this.mask;
    let i = mix(id) & mask;
    while (states[i] === FULL) i = (i + 1) & mask;
    if (states[i] === EMPTY) this.used++;
    this.keys[i] = id;
    this.vals[i] = version;
    states[i] = FULL;
    this.size++;
  }

  /**
   * The table's own arrays and counts (not copies), for a snapshot that stores the table as it
   * is (collection.ts, snapshot version 6): {@link assign} takes them back without a hash per
   * pid. Bucket positions depend on `mix` (id_map.ts) and the capacity, so a stored image is
   * only valid for this hash function; a change of it needs a new snapshot version.
   */
  image(): {
    keys: Uint32Array;
    vals: Float64Array;
    states: Uint8Array;
    size: number;
    used: number;
  } {
    return {
      keys: this.keys,
      vals: this.vals,
      states: this.states,
      size: this.size,
      used: this.used,
    };
  }

  /**
   * Replaces the contents with arrays an {@link image} gave, whose states and counts the caller
   * checked in its own pass over them (collection.ts `takeVersions`: every state empty, full or
   * removed; `size` full buckets, `used` full or removed). Throws a RangeError when the shape
   * cannot be one of this table's: capacity not a power of two of at least 16, arrays of
   * different lengths, counts above the load factor.
   */
  assign(
    keys: Uint32Array,
    vals: Float64Array,
    states: Uint8Array,
    size: number,
    used: number,
  ): void {
    const cap = states.length;
    if (cap < 16 || (cap & (cap - 1)) !== 0 || keys.length !== cap || vals.length !== cap) {
      throw new RangeError(
        `version table of ${keys.length} keys, ${vals.length} versions and ${cap} states is ` +
          `not a table`,
      );
    }
    if (!(size >= 0 && size <= used && used <= cap * 0.75)) {
      throw new RangeError(`version table counts ${size} / ${used} do not fit ${cap} buckets`);
    }
    this.keys = keys;
    this.vals = vals;
    this.states = states;
    this.mask = cap - 1;
    this.size = size;
    this.used = used;
  }

  /** Removes `id`; returns whether it was there. */
  delete(id: number): boolean {
    const i = this.find(id);
    if (i < 0) return false;
    this.states[i] = REMOVED;
    this.size--;
    return true;
  }

  /** The pids held, in bucket order (as `Map.keys`). */
  *pids(): IterableIterator<number> {
    const states = this.states;
    for (let i = 0; i < states.length; i++) if (states[i] === FULL) yield this.keys[i];
  }

  /** Calls `fn(pid, version)` for every entry, in bucket order, without allocating. */
  forEach(fn: (version: number, pid: number) => void): void {
    const states = this.states;
    for (let i = 0; i < states.length; i++) {
      if (states[i] === FULL) fn(this.vals[i], this.keys[i]);
    }
  }

  /** `[pid, version]` pairs, in bucket order (as iterating a `Map`). */
  *[Symbol.iterator](): IterableIterator<[number, number]> {
    const states = this.states;
    for (let i = 0; i < states.length; i++) {
      if (states[i] === FULL) yield [this.keys[i], this.vals[i]];
    }
  }

  private rehash(expected: number): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    const oldStates = this.states;
    let cap = 16;
    while (cap * 0.75 < expected * 1.25) cap *= 2;
    this.keys = new Uint32Array(cap);
    this.vals = new Float64Array(cap);
    this.states = new Uint8Array(cap);
    this.mask = cap - 1;
    this.size = 0;
    this.used = 0;
    for (let i = 0; i < oldStates.length; i++) {
      if (oldStates[i] === FULL) this.set(oldKeys[i], oldVals[i]);
    }
  }
}

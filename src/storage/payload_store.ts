/**
 * The payloads of a collection's points, out of the JS heap: each payload's canonical JSON bytes
 * (src/common/payload.ts) in one growing byte arena, found through typed arrays.
 *
 * | structure            | what                                                          |
 * |----------------------|---------------------------------------------------------------|
 * | `arena` Uint8Array   | payload bytes, appended; a replaced or deleted one is garbage |
 * | `ids` Uint32Array    | per dense entry: the point id                                 |
 * | `offsets` Float64Array | per dense entry: where its bytes start in the arena         |
 * | `lengths` Uint32Array | per dense entry: how many bytes                              |
 * | `slots` IdMap        | point id -> dense entry                                       |
 *
 * Entries stay dense: a delete moves the last entry into the freed one. A set always appends
 * (the old bytes become garbage); once garbage is over half the arena and over
 * {@link COMPACT_MIN_BYTES}, the live payloads are copied into a fresh arena in entry order.
 * No JS object is kept per point.
 *
 * {@link PayloadStore.get} returns a view into the arena: valid until the next `set`, `delete`
 * or `clear` (which may grow or compact the arena); copy it to keep it.
 *
 * Snapshot table ({@link PayloadStore.writeTo}; ids ascending):
 *
 * | field   | encoding                                         |
 * |---------|--------------------------------------------------|
 * | ids     | u32Array                                         |
 * | lengths | u32Array (one per id)                            |
 * | bytes   | u32 length, then the payloads concatenated, in id order |
 *
 * @module
 */
import { IdMap } from "../index/id_map.ts";
import type { BinaryReader, BinaryWriter } from "../io/binary.ts";
import { PAYLOAD_BYTES_MAX } from "../common/limits.ts";

/** Garbage below this is never compacted away (not worth the copy). */
export const COMPACT_MIN_BYTES = 1 << 20;

/** Largest arena: a typed array's length bound in V8, and what `offsets` can address exactly. */
export const ARENA_BYTES_MAX = 2 ** 32 - 1;
/** Arena size up to which it doubles when full; above, it grows by a quarter. */
export const ARENA_DOUBLING_MAX_BYTES = 16 << 20;

/** A snapshot's payload table does not fit the rules of the module comment. */
export class PayloadTableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PayloadTableError";
  }
}

/** The arena would pass {@link ARENA_BYTES_MAX}. */
export class PayloadCapacityError extends RangeError {
  constructor(readonly bytes_wanted: number) {
    super(
      `Payload storage would need ${bytes_wanted} bytes; the limit per collection is ` +
        `${ARENA_BYTES_MAX}`,
    );
    this.name = "PayloadCapacityError";
  }
}

export class PayloadStore {
  private arena = new Uint8Array(1024);
  /** Bytes of the arena in use (live and garbage). */
  private end = 0;
  private ids = new Uint32Array(16);
  private offsets = new Float64Array(16);
  private lengths = new Uint32Array(16);
  private slots = new IdMap();
  /** Entries (points with a payload). */
  private count = 0;
  /** Bytes of live payloads. */
  private live = 0;

  /** Points with a payload. */
  get size(): number {
    return this.count;
  }

  /** Bytes of the live payloads. */
  get liveBytes(): number {
    return this.live;
  }

  /** Bytes of the arena no payload uses any more (reclaimed by compaction). */
  get garbageBytes(): number {
    return this.end - this.live;
  }

  /** Memory held: the arena, the per-entry arrays and the id map. */
  get memoryBytes(): number {
    return this.arena.byteLength + this.ids.byteLength + this.offsets.byteLength +
      this.lengths.byteLength + this.slots.bytes;
  }

  has(id: number): boolean {
    return this.slots.get(id) >= 0;
  }

  /** The payload bytes of `id` (a view, see the module comment), or null when it has none. */
  get(id: number): Uint8Array | null {
    const slot = this.slots.get(id);
    if (slot < 0) return null;
    const at = this.offsets[slot];
    return this.arena.subarray(at, at + this.lengths[slot]);
  }

  /** Sets the payload of `id`; null or empty bytes remove it. */
  set(id: number, bytes: Uint8Array | null): void {
    if (bytes === null || bytes.length === 0) {
      this.delete(id);
      return;
    }
    if (bytes.length > PAYLOAD_BYTES_MAX) {
      throw new RangeError(
        `Payload of point ${id} is ${bytes.length} bytes; the limit is ${PAYLOAD_BYTES_MAX}`,
      );
    }
    let slot = this.slots.get(id);
    if (slot >= 0) {
      this.live -= this.lengths[slot];
    } else {
      slot = this.count++;
      this.growEntries(this.count);
      this.ids[slot] = id;
      this.slots.set(id, slot);
    }
    // Mark the slot empty before a compaction the append may run, so it copies no stale bytes.
    this.lengths[slot] = 0;
    const at = this.reserve(bytes.length);
    // `bytes` may be a view of this arena (a payload copied onto another id): copy first.
    this.arena.set(bytes.buffer === this.arena.buffer ? bytes.slice() : bytes, at);
    this.offsets[slot] = at;
    this.lengths[slot] = bytes.length;
    this.live += bytes.length;
    this.end = at + bytes.length;
  }

  /** Removes the payload of `id`; returns whether it had one. */
  delete(id: number): boolean {
    const slot = this.slots.delete(id);
    if (slot < 0) return false;
    this.live -= this.lengths[slot];
    const last = --this.count;
    if (slot !== last) {
      this.ids[slot] = this.ids[last];
      this.offsets[slot] = this.offsets[last];
      this.lengths[slot] = this.lengths[last];
      this.slots.set(this.ids[slot], slot);
    }
    if (this.count === 0) this.clear();
    else this.maybeCompact(0);
    return true;
  }

  /** Removes every payload and returns the memory. */
  clear(): void {
    this.arena = new Uint8Array(1024);
    this.end = 0;
    this.ids = new Uint32Array(16);
    this.offsets = new Float64Array(16);
    this.lengths = new Uint32Array(16);
    this.slots = new IdMap();
    this.count = 0;
    this.live = 0;
  }

  /** Copies the live payloads into a fresh arena of just their size (plus `spare` bytes). */
  compact(spare = 0): void {
    const next = new Uint8Array(Math.max(1024, this.live + spare));
    let at = 0;
    for (let i = 0; i < this.count; i++) {
      const from = this.offsets[i];
      const n = this.lengths[i];
      next.set(this.arena.subarray(from, from + n), at);
      this.offsets[i] = at;
      at += n;
    }
    this.arena = next;
    this.end = at;
  }

  /** Every id with a payload, ascending. */
  idsSorted(): Uint32Array {
    return this.ids.slice(0, this.count).sort();
  }

  /** Writes the snapshot table of the module comment. */
  writeTo(w: BinaryWriter): void {
    const ids = this.idsSorted();
    const lengths = new Uint32Array(ids.length);
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      lengths[i] = this.lengths[this.slots.get(ids[i])];
      total += lengths[i];
    }
    w.u32Array(ids);
    w.u32Array(lengths);
    w.u32(total);
    for (let i = 0; i < ids.length; i++) w.raw(this.get(ids[i])!);
  }

  /**
   * Reads a table written by {@link writeTo} into this (empty) store; `known(id)` says whether
   * the collection holds a live point `id` (a payload of anything else is refused).
   */
  readFrom(r: BinaryReader, known: (id: number) => boolean): void {
    const ids = r.u32Array();
    const lengths = r.u32Array();
    const total = r.u32();
    const fail = (why: string): never => {
      throw new PayloadTableError(`Snapshot payload table: ${why}`);
    };
    if (lengths.length !== ids.length) {
      fail(`${ids.length} ids come with ${lengths.length} lengths`);
    }
    let sum = 0;
    for (let i = 0; i < ids.length; i++) {
      if (i > 0 && ids[i] <= ids[i - 1]) fail(`id ${ids[i]} follows ${ids[i - 1]} (not ascending)`);
      if (lengths[i] === 0 || lengths[i] > PAYLOAD_BYTES_MAX) {
        fail(`payload of point ${ids[i]} is ${lengths[i]} bytes (1 .. ${PAYLOAD_BYTES_MAX})`);
      }
      if (!known(ids[i])) fail(`payload of point ${ids[i]}, which is not a live point`);
      sum += lengths[i];
    }
    if (sum !== total) fail(`lengths add up to ${sum} bytes, the table holds ${total}`);
    const bytes = r.raw(total);
    this.clear();
    this.arena = new Uint8Array(Math.max(1024, total));
    this.arena.set(bytes);
    this.growEntries(ids.length);
    let at = 0;
    for (let i = 0; i < ids.length; i++) {
      this.ids[i] = ids[i];
      this.offsets[i] = at;
      this.lengths[i] = lengths[i];
      this.slots.set(ids[i], i);
      at += lengths[i];
    }
    this.count = ids.length;
    this.live = total;
    this.end = total;
  }

  /** Makes room for `n` bytes at the arena's end (compacting or growing); returns where. */
  private reserve(n: number): number {
    this.maybeCompact(n);
    const need = this.end + n;
    if (need > ARENA_BYTES_MAX) throw new PayloadCapacityError(need);
    if (need > this.arena.length) {
      // Doubling while small; beyond ARENA_DOUBLING_MAX_BYTES a quarter more each time, so a
      // large arena carries at most ~25% slack instead of up to 100% (copies stay amortised O(1)).
      const len = this.arena.length;
      const grown = len < ARENA_DOUBLING_MAX_BYTES ? len * 2 : Math.ceil(len * 1.25);
      const next = new Uint8Array(Math.min(ARENA_BYTES_MAX, Math.max(need, grown)));
      next.set(this.arena.subarray(0, this.end));
      this.arena = next;
    }
    return this.end;
  }

  private maybeCompact(spare: number): void {
    const garbage = this.end - this.live;
    if (garbage > COMPACT_MIN_BYTES && garbage * 2 > this.end) this.compact(spare);
  }

  private growEntries(n: number): void {
    if (n <= this.ids.length) return;
    const cap = Math.max(n, this.ids.length * 2);
    const ids = new Uint32Array(cap);
    ids.set(this.ids);
    const offsets = new Float64Array(cap);
    offsets.set(this.offsets);
    const lengths = new Uint32Array(cap);
    lengths.set(this.lengths);
    this.ids = ids;
    this.offsets = offsets;
    this.lengths = lengths;
  }
}

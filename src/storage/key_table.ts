/**
 * The key table of a collection: maps point ids (`PointId`: uint64 integers and strings, see
 * src/common/point_id.ts) to the dense uint32 "pids" everything inside a collection works on
 * (the HNSW index, the version table, the payload store and payload indexes, filter plans).
 *
 * | Id                                   | Pid                                              |
 * | ------------------------------------ | ------------------------------------------------ |
 * | uint32 `x`, pid `x` free or its own  | `x` (identity: nothing stored)                   |
 * | uint32 `x`, pid `x` owned by another | allocated, explicit entry                        |
 * | integer above 2^32 - 1, string       | allocated, explicit entry                        |
 *
 * Allocation counts down from 0xFFFF_FFFE (wrapping below 0), skipping pids that hold an
 * explicit entry or that the collection says are in use (its version table: identity ids), so
 * allocated pids rarely meet the small uint32 ids applications use. The cursor is part of the
 * snapshot section, so replaying the same records in the same order from the same state gives
 * the same pids. A released pid just above the cursor is handed out again first.
 *
 * A collection of uint32 ids only has an empty table: no memory, no lookups, nothing written
 * beyond the section's 8 zero bytes.
 *
 * Memory per explicit entry (no JS object per entry): 4 (pid) + 4 (arena offset) + 1 (key
 * length) bytes of entry arrays, 2 to 4 slots of 4 bytes in each of the two open-addressing
 * hash tables (key → entry, pid → entry; load at most 1/2), and the key's bytes in the arena
 * (9 for an integer, 1 + UTF-8 length for a string): about 33 to 49 bytes plus the key, e.g.
 * ~75 bytes for a 36-character UUID. Listing (sorted keys, cached until the table changes) adds
 * one JS value per entry while cached.
 *
 * Snapshot section ({@link KeyTable.writeTo}):
 *
 * | Field   | Encoding                                                            |
 * | ------- | ------------------------------------------------------------------- |
 * | count   | u32: explicit entries                                               |
 * | cursor  | u32: PID_ALLOCATE_MAX minus the allocation cursor (0 for a new one) |
 * | entries | per entry, pids ascending: pid u32, key as `writeId` writes it      |
 *
 * @module
 */
import { BinaryFormatError, type BinaryReader, type BinaryWriter } from "../io/binary.ts";
import {
  compareIds,
  formatId,
  ID_STRING_BYTES_MAX,
  isU32Id,
  type PointId,
  readId,
  writeId,
} from "../common/point_id.ts";

/** Highest pid the table allocates (0xFFFF_FFFF stays for an identity id). */
export const PID_ALLOCATE_MAX = 0xffff_fffe;

/** Raised when no pid is left to allocate (2^32 entries in one collection). */
export class KeyTableFullError extends RangeError {
  constructor(id: PointId) {
    super(`No internal slot is left for point ${formatId(id)}: the collection is full`);
    this.name = "KeyTableFullError";
  }
}

/** Raised for a snapshot section that does not describe a valid table. */
export class KeyTableFormatError extends BinaryFormatError {
  constructor(message: string) {
    super(`Key table: ${message}`);
    this.name = "KeyTableFormatError";
  }
}

const KIND_INTEGER = 0;
const KIND_STRING = 1;
const EMPTY = -1;
const utf8 = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** FNV-1a over `bytes[0 .. n)`. */
function hashBytes(bytes: Uint8Array, at: number, n: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ bytes[at + i], 0x01000193);
  return h >>> 0;
}

/** A mixing hash of a pid. */
function hashPid(pid: number): number {
  return Math.imul(pid ^ (pid >>> 16), 0x45d9f3b) >>> 0;
}

/** Maps point ids to uint32 pids (see the module comment). */
export class KeyTable {
  /** Explicit entries. */
  #n = 0;
  #pid = new Uint32Array(0);
  #off = new Uint32Array(0);
  #len = new Uint8Array(0);
  /** Key bytes of the entries (kind byte, then u64 LE or UTF-8); holes after releases. */
  #arena = new Uint8Array(0);
  #arenaUsed = 0;
  #arenaLive = 0;
  /** key → entry and pid → entry (entry index or EMPTY), linear probing, power-of-2 sizes. */
  #byKey = new Int32Array(0);
  #byPid = new Int32Array(0);
  #next = PID_ALLOCATE_MAX;
  /** Scratch encoding of a key being looked up. */
  readonly #scratch = new Uint8Array(1 + 4 * ID_STRING_BYTES_MAX);
  readonly #view = new DataView(this.#scratch.buffer);
  #sorted: { keys: PointId[]; pids: Uint32Array } | null = null;

  /** Explicit entries held. */
  get size(): number {
    return this.#n;
  }

  /** The allocation cursor (the next pid tried). */
  get nextPid(): number {
    return this.#next;
  }

  /** Bytes of memory the table holds. */
  get memoryBytes(): number {
    return this.#pid.byteLength + this.#off.byteLength + this.#len.byteLength +
      this.#arena.byteLength + this.#byKey.byteLength + this.#byPid.byteLength;
  }

  /** Encodes `id` into the scratch buffer; its length, or -1 when it cannot be a key. */
  #encode(id: PointId): number {
    if (typeof id === "string") {
      this.#scratch[0] = KIND_STRING;
      const r = utf8.encodeInto(id, this.#scratch.subarray(1));
      if (r.read !== id.length || r.written > ID_STRING_BYTES_MAX) return -1;
      return 1 + r.written;
    }
    this.#scratch[0] = KIND_INTEGER;
    if (typeof id === "number") {
      this.#view.setUint32(1, id % 0x1_0000_0000, true);
      this.#view.setUint32(5, Math.floor(id / 0x1_0000_0000), true);
    } else {
      this.#view.setBigUint64(1, id, true);
    }
    return 9;
  }

  /** Entry holding the key in the scratch buffer (`n` bytes), or EMPTY. */
  #findKey(n: number): number {
    if (this.#n === 0) return EMPTY;
    const mask = this.#byKey.length - 1;
    for (let s = hashBytes(this.#scratch, 0, n) & mask;; s = (s + 1) & mask) {
      const e = this.#byKey[s];
      if (e === EMPTY) return EMPTY;
      if (this.#len[e] === n && this.#sameKey(e, n)) return e;
    }
  }

  #sameKey(e: number, n: number): boolean {
    const at = this.#off[e];
    for (let i = 0; i < n; i++) if (this.#arena[at + i] !== this.#scratch[i]) return false;
    return true;
  }

  /** Entry holding `pid`, or EMPTY. */
  #findPid(pid: number): number {
    if (this.#n === 0) return EMPTY;
    const mask = this.#byPid.length - 1;
    for (let s = hashPid(pid) & mask;; s = (s + 1) & mask) {
      const e = this.#byPid[s];
      if (e === EMPTY) return EMPTY;
      if (this.#pid[e] === pid) return e;
    }
  }

  /**
   * The pid of `id` (a canonical id), or -1 when it has none: an id that is not a uint32 one
   * and has no entry, or a uint32 id whose pid another key owns. An identity pid is returned
   * whether or not the collection holds the id (its version table says).
   */
  lookup(id: PointId): number {
    if (this.#n === 0) return isU32Id(id) ? id : -1;
    const n = this.#encode(id);
    if (n < 0) return -1;
    const e = this.#findKey(n);
    if (e !== EMPTY) return this.#pid[e];
    if (isU32Id(id) && this.#findPid(id) === EMPTY) return id;
    return -1;
  }

  /**
   * The pid of `id`, allocating one (see the module comment) when it has none. `inUse(pid)`
   * says whether the collection holds an entry at a pid (its version table).
   */
  assign(id: PointId, inUse: (pid: number) => boolean): number {
    const found = this.lookup(id);
    if (found >= 0) return found;
    const n = this.#encode(id);
    if (n < 0) throw new RangeError(`Point id ${formatId(id)} cannot be a key`);
    for (let tries = 0; tries <= PID_ALLOCATE_MAX; tries++) {
      const p = this.#next;
      this.#next = p === 0 ? PID_ALLOCATE_MAX : p - 1;
      if (this.#findPid(p) === EMPTY && !inUse(p)) {
        this.#insert(p, n);
        return p;
      }
    }
    throw new KeyTableFullError(id);
  }

  /** The id held at `pid`: its explicit key, else `pid` itself (identity). */
  keyOf(pid: number): PointId {
    const e = this.#findPid(pid);
    return e === EMPTY ? pid : this.#keyAt(e);
  }

  /** Whether `pid` holds an explicit entry. */
  isExplicit(pid: number): boolean {
    return this.#findPid(pid) !== EMPTY;
  }

  /** Drops the explicit entry of `pid` (the collection forgot its id entirely); no-op if none. */
  release(pid: number): void {
    const e = this.#findPid(pid);
    if (e === EMPTY) return;
    this.#sorted = null;
    this.#copyKey(e);
    this.#unlinkKey(e, this.#len[e]);
    this.#unlinkPid(e);
    this.#arenaLive -= this.#len[e];
    const last = this.#n - 1;
    if (e !== last) {
      // Move the last entry into the hole, re-pointing its two hash slots.
      this.#copyKey(last);
      this.#relink(this.#byKey, this.#slotOfKey(last, this.#len[last]), e);
      this.#relink(this.#byPid, this.#slotOfPid(last), e);
      this.#pid[e] = this.#pid[last];
      this.#off[e] = this.#off[last];
      this.#len[e] = this.#len[last];
    }
    this.#n = last;
    if (pid === this.#next + 1 && pid <= PID_ALLOCATE_MAX) this.#next = pid;
    if (this.#n === 0) {
      this.#arenaUsed = 0;
    } else if (this.#arenaUsed > 65_536 && this.#arenaLive * 2 < this.#arenaUsed) {
      this.#compact();
    }
  }

  /** Explicit entries sorted by key (`compareIds`), cached until the table changes. */
  sorted(): { readonly keys: readonly PointId[]; readonly pids: Uint32Array } {
    if (this.#sorted !== null) return this.#sorted;
    const order = new Array<number>(this.#n);
    const keys = new Array<PointId>(this.#n);
    for (let e = 0; e < this.#n; e++) {
      order[e] = e;
      keys[e] = this.#keyAt(e);
    }
    order.sort((a, b) => compareIds(keys[a], keys[b]));
    const sorted = { keys: order.map((e) => keys[e]), pids: new Uint32Array(this.#n) };
    for (let i = 0; i < order.length; i++) sorted.pids[i] = this.#pid[order[i]];
    this.#sorted = sorted;
    return sorted;
  }

  /** Writes the snapshot section (see the module comment). */
  writeTo(w: BinaryWriter): void {
    w.u32(this.#n);
    w.u32(PID_ALLOCATE_MAX - this.#next);
    const order = Array.from({ length: this.#n }, (_, e) => e).sort((a, b) =>
      this.#pid[a] - this.#pid[b]
    );
    for (const e of order) {
      w.u32(this.#pid[e]);
      writeId(w, this.#keyAt(e));
    }
  }

  /**
   * Reads a section written by {@link writeTo} into an empty table. `inUse(pid)` must hold for
   * every entry's pid (the collection's version table, read before).
   */
  readFrom(r: BinaryReader, inUse: (pid: number) => boolean): void {
    if (this.#n !== 0) throw new Error("KeyTable.readFrom needs an empty table");
    const n = r.u32();
    const next = PID_ALLOCATE_MAX - r.u32();
    // An entry takes at least 4 (pid) + 6 (a one-byte string id) bytes.
    if (n * 10 > r.remaining) {
      throw new KeyTableFormatError(`${n} entries need ${n * 10}+ bytes; ${r.remaining} remain`);
    }
    if (next < 0) throw new KeyTableFormatError(`cursor ${next} is below 0`);
    let prev = -1;
    for (let i = 0; i < n; i++) {
      const pid = r.u32();
      const key = readId(r);
      if (pid <= prev) throw new KeyTableFormatError(`pid ${pid} follows ${prev}`);
      prev = pid;
      if (isU32Id(key) && key === pid) {
        throw new KeyTableFormatError(`entry ${i} maps ${key} to itself (identity)`);
      }
      if (!inUse(pid)) {
        throw new KeyTableFormatError(`pid ${pid} of ${formatId(key)} holds no entry`);
      }
      const len = this.#encode(key);
      if (this.#findKey(len) !== EMPTY) {
        throw new KeyTableFormatError(`key ${formatId(key)} appears twice`);
      }
      this.#insert(pid, len);
    }
    // A uint32 key with an identity pid next to an explicit entry of the same number would be
    // ambiguous: an identity id's pid is never another key's.
    for (let e = 0; e < this.#n; e++) {
      const key = this.#keyAt(e);
      if (isU32Id(key) && this.#findPid(key) === EMPTY && inUse(key)) {
        throw new KeyTableFormatError(`${key} is both mapped to ${this.#pid[e]} and held as is`);
      }
    }
    this.#next = next;
  }

  // ---- internals ----

  #keyAt(e: number): PointId {
    const at = this.#off[e];
    const n = this.#len[e];
    if (this.#arena[at] === KIND_STRING) {
      return decoder.decode(this.#arena.subarray(at + 1, at + n));
    }
    const v = new DataView(this.#arena.buffer, this.#arena.byteOffset + at + 1, 8).getBigUint64(
      0,
      true,
    );
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  /** Puts entry `e`'s key bytes into the scratch buffer. */
  #copyKey(e: number): void {
    const at = this.#off[e];
    this.#scratch.set(this.#arena.subarray(at, at + this.#len[e]));
  }

  #insert(pid: number, n: number): void {
    this.#sorted = null;
    this.#grow(this.#n + 1, n);
    const e = this.#n++;
    this.#arena.set(this.#scratch.subarray(0, n), this.#arenaUsed);
    this.#pid[e] = pid;
    this.#off[e] = this.#arenaUsed;
    this.#len[e] = n;
    this.#arenaUsed += n;
    this.#arenaLive += n;
    this.#link(e, n);
  }

  #link(e: number, n: number): void {
    let mask = this.#byKey.length - 1;
    let s = hashBytes(this.#arena, this.#off[e], n) & mask;
    while (this.#byKey[s] !== EMPTY) s = (s + 1) & mask;
    this.#byKey[s] = e;
    mask = this.#byPid.length - 1;
    s = hashPid(this.#pid[e]) & mask;
    while (this.#byPid[s] !== EMPTY) s = (s + 1) & mask;
    this.#byPid[s] = e;
  }

  #slotOfKey(e: number, n: number): number {
    const mask = this.#byKey.length - 1;
    let s = hashBytes(this.#scratch, 0, n) & mask;
    while (this.#byKey[s] !== e) s = (s + 1) & mask;
    return s;
  }

  #slotOfPid(e: number): number {
    const mask = this.#byPid.length - 1;
    let s = hashPid(this.#pid[e]) & mask;
    while (this.#byPid[s] !== e) s = (s + 1) & mask;
    return s;
  }

  #relink(table: Int32Array, slot: number, e: number): void {
    table[slot] = e;
  }

  /** Removes entry `e` (key bytes in the scratch buffer) from the key hash (backward shift). */
  #unlinkKey(e: number, n: number): void {
    this.#unlink(this.#byKey, this.#slotOfKey(e, n), (x) => {
      return hashBytes(this.#arena, this.#off[x], this.#len[x]);
    });
  }

  #unlinkPid(e: number): void {
    this.#unlink(this.#byPid, this.#slotOfPid(e), (x) => hashPid(this.#pid[x]));
  }

  /** Backward-shift deletion of `slot` in a linear-probing table. */
  #unlink(table: Int32Array, slot: number, hashOf: (e: number) => number): void {
    const mask = table.length - 1;
    let hole = slot;
    table[hole] = EMPTY;
    for (let s = (hole + 1) & mask; table[s] !== EMPTY; s = (s + 1) & mask) {
      const home = hashOf(table[s]) & mask;
      // Move the entry into the hole unless its home lies cyclically in (hole, s].
      const between = hole <= s ? home > hole && home <= s : home > hole || home <= s;
      if (!between) {
        table[hole] = table[s];
        table[s] = EMPTY;
        hole = s;
      }
    }
  }

  /** Room for `entries` entries and `n` more arena bytes. */
  #grow(entries: number, n: number): void {
    if (entries > this.#pid.length) {
      const cap = Math.max(16, this.#pid.length * 2);
      const pid = new Uint32Array(cap);
      pid.set(this.#pid);
      const off = new Uint32Array(cap);
      off.set(this.#off);
      const len = new Uint8Array(cap);
      len.set(this.#len);
      this.#pid = pid;
      this.#off = off;
      this.#len = len;
    }
    if (this.#arenaUsed + n > this.#arena.length) {
      const arena = new Uint8Array(Math.max(1024, (this.#arenaUsed + n) * 2));
      arena.set(this.#arena.subarray(0, this.#arenaUsed));
      this.#arena = arena;
    }
    if (entries * 2 > this.#byKey.length) {
      const size = Math.max(32, this.#byKey.length * 2);
      this.#byKey = new Int32Array(size).fill(EMPTY);
      this.#byPid = new Int32Array(size).fill(EMPTY);
      for (let e = 0; e < this.#n; e++) this.#link(e, this.#len[e]);
    }
  }

  /** Rewrites the arena without the holes releases left. */
  #compact(): void {
    const arena = new Uint8Array(Math.max(1024, this.#arenaLive * 2));
    let at = 0;
    for (let e = 0; e < this.#n; e++) {
      const from = this.#off[e];
      arena.set(this.#arena.subarray(from, from + this.#len[e]), at);
      this.#off[e] = at;
      at += this.#len[e];
    }
    this.#arena = arena;
    this.#arenaUsed = at;
  }
}

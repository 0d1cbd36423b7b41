/**
 * Payload indexes: per indexed field, which points hold which values, so the filter planner
 * (storage/filter_plan.ts) can turn a condition into a sorted id list without reading payloads.
 *
 * | type      | indexes (each value at the key, arrays flattened as filters see them) | answers                         |
 * |-----------|----------------------------------------------------------------------|---------------------------------|
 * | `keyword` | strings up to FILTER_STRING_CHARS_MAX characters                     | `match` value / `any` of strings |
 * | `integer` | integral numbers                                                     | `match` / `any` of integers; `range` while the field holds no fractional number |
 * | `float`   | numbers                                                              | `range`; `match` / `any` of integers |
 * | `bool`    | booleans                                                             | `match` / `any` of booleans      |
 *
 * A value of another type is not indexed for that field; an index answers a condition only when
 * its answer is exactly the set of points the condition matches ({@link PayloadIndexes.supports}).
 *
 * Layout: no object per point. Each posting (keyword value, bool) and each numeric field is a
 * {@link SortedPairs}: a sorted, duplicate-free run of ids (and for numbers, values, in
 * `Float64Array`), plus two small unsorted logs of pending additions and removals. Writes append
 * to the logs in O(1); the next query that reads the run merges the logs in (one linear pass
 * plus sorting the logs), so a burst of writes costs one merge.
 *
 * Forward lookup ({@link ForwardMap}): per index, each point's value by id, for
 * {@link PayloadIndexes.tester} — a per-id check that costs a hash probe instead of a payload
 * parse, so the planner need not gather the ids of a term that matches many points.
 *
 * | column value | point holds (distinct indexed values at the field)                  |
 * |--------------|----------------------------------------------------------------------|
 * | absent       | none: no condition the index supports matches it                     |
 * | a number     | exactly one: the number (numeric), its keyword's code, or 0/1 (bool) |
 * | NaN          | several: the tester falls back to the condition on the payload       |
 *
 * The collection keeps the indexes current by calling {@link PayloadIndexes.remove} with a
 * point's old payload and {@link PayloadIndexes.add} with its new one on every applied write;
 * {@link PayloadIndexes.build} rebuilds from all payloads (at open, after `define`).
 *
 * @module
 */
import {
  canonicalKey,
  compileFilter,
  type Condition,
  type FieldCondition,
  type MatchValue,
  parseKey,
  payloadValues,
  type Predicate,
  sortUnique,
} from "../common/filter.ts";
import {
  FILTER_STRING_CHARS_MAX,
  PAYLOAD_FIELD_TYPES,
  PAYLOAD_INDEXES_MAX,
} from "../common/limits.ts";
import { IdMap } from "../index/id_map.ts";

export { PAYLOAD_FIELD_TYPES };
/** An index type. */
export type PayloadFieldType = typeof PAYLOAD_FIELD_TYPES[number];

/** A refused index definition: unknown type, bad field name, too many indexes. */
export class PayloadIndexError extends Error {
  override name = "PayloadIndexError";
}

/** An estimate of how many points a condition matches: lowest, expected, highest. */
export interface Cardinality {
  min: number;
  exp: number;
  max: number;
}

/** One index, as `list()` reports it. */
export interface PayloadIndexInfo {
  field: string;
  type: PayloadFieldType;
  /** Points with at least one indexed value. */
  points: number;
  /** Bytes the index's arrays take (typed arrays, and keys for keyword indexes). */
  memory_bytes: number;
}

const EMPTY_IDS = new Uint32Array(0);

function grownU32(a: Uint32Array, n: number): Uint32Array {
  if (n < a.length) return a;
  const b = new Uint32Array(Math.max(8, a.length * 2));
  b.set(a);
  return b;
}

function grownF64(a: Float64Array, n: number): Float64Array {
  if (n < a.length) return a;
  const b = new Float64Array(Math.max(8, a.length * 2));
  b.set(a);
  return b;
}

/**
 * A sorted, duplicate-free run of (value, id) pairs (ids only when built without values), with
 * logs of pending additions and removals that {@link materialize} merges in.
 *
 * The logs are multisets: after a merge a pair is present when it was present or added more
 * often than it was removed. With the collection's contract (remove exactly the old values
 * before adding new ones, each pair once per point) that is exactly the current state.
 */
export class SortedPairs {
  readonly #numeric: boolean;
  #vals: Float64Array;
  #ids: Uint32Array;
  #n = 0;
  #addVals: Float64Array | null = null;
  #addIds: Uint32Array = EMPTY_IDS;
  #adds = 0;
  #remVals: Float64Array | null = null;
  #remIds: Uint32Array = EMPTY_IDS;
  #rems = 0;

  constructor(numeric: boolean) {
    this.#numeric = numeric;
    this.#vals = new Float64Array(0);
    this.#ids = EMPTY_IDS;
  }

  /** Pairs after pending logs are applied (exact under the collection's contract). */
  get size(): number {
    return Math.max(0, this.#n + this.#adds - this.#rems);
  }

  add(value: number, id: number): void {
    this.#addIds = grownU32(this.#addIds, this.#adds);
    this.#addIds[this.#adds] = id;
    if (this.#numeric) {
      this.#addVals = grownF64(this.#addVals ?? new Float64Array(0), this.#adds);
      this.#addVals[this.#adds] = value;
    }
    this.#adds++;
  }

  remove(value: number, id: number): void {
    this.#remIds = grownU32(this.#remIds, this.#rems);
    this.#remIds[this.#rems] = id;
    if (this.#numeric) {
      this.#remVals = grownF64(this.#remVals ?? new Float64Array(0), this.#rems);
      this.#remVals[this.#rems] = value;
    }
    this.#rems++;
  }

  /** Merges the pending logs; afterwards {@link ids} and {@link values} are the run. */
  materialize(): void {
    if (this.#adds === 0 && this.#rems === 0) return;
    const numeric = this.#numeric;
    const [av, ai] = sortedLog(this.#addVals, this.#addIds, this.#adds, numeric);
    const [rv, ri] = sortedLog(this.#remVals, this.#remIds, this.#rems, numeric);
    const mv = this.#vals;
    const mi = this.#ids;
    const n = this.#n;
    const na = this.#adds;
    const nr = this.#rems;
    const cap = n + na;
    const outIds = new Uint32Array(cap);
    const outVals = numeric ? new Float64Array(cap) : mv;
    // cmp(va, ia, vb, ib) < 0 when pair a sorts first.
    const cmp = numeric
      ? (va: number, ia: number, vb: number, ib: number) => va < vb ? -1 : va > vb ? 1 : ia - ib
      : (_va: number, ia: number, _vb: number, ib: number) => ia - ib;
    let i = 0;
    let j = 0;
    let k = 0;
    let out = 0;
    // The logs are small next to the run: walk their pairs in order ("events"), copy the run
    // between events in bulk, and settle each event pair by counting its occurrences.
    while (j < na || k < nr) {
      let pv: number;
      let pi: number;
      if (k >= nr || (j < na && cmp(av[j], ai[j], rv[k], ri[k]) <= 0)) {
        pv = numeric ? av[j] : 0;
        pi = ai[j];
      } else {
        pv = numeric ? rv[k] : 0;
        pi = ri[k];
      }
      // First run pair at or after the event, from i.
      let lo = i;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (cmp(mv[mid], mi[mid], pv, pi) < 0) lo = mid + 1;
        else hi = mid;
      }
      if (lo > i) {
        outIds.set(mi.subarray(i, lo), out);
        if (numeric) outVals.set(mv.subarray(i, lo), out);
        out += lo - i;
        i = lo;
      }
      let count = 0;
      while (i < n && cmp(mv[i], mi[i], pv, pi) === 0) {
        i++;
        count++;
      }
      while (j < na && cmp(av[j], ai[j], pv, pi) === 0) {
        j++;
        count++;
      }
      while (k < nr && cmp(rv[k], ri[k], pv, pi) === 0) {
        k++;
        count--;
      }
      if (count > 0) {
        outIds[out] = pi;
        if (numeric) outVals[out] = pv;
        out++;
      }
    }
    if (i < n) {
      outIds.set(mi.subarray(i, n), out);
      if (numeric) outVals.set(mv.subarray(i, n), out);
      out += n - i;
    }
    this.#ids = outIds;
    this.#vals = outVals;
    this.#n = out;
    this.#adds = 0;
    this.#rems = 0;
    // Logs shrink back after a burst so an idle index does not keep a large buffer.
    if (this.#addIds.length > 1024) this.#addIds = EMPTY_IDS;
    if (this.#remIds.length > 1024) this.#remIds = EMPTY_IDS;
    if ((this.#addVals?.length ?? 0) > 1024) this.#addVals = null;
    if ((this.#remVals?.length ?? 0) > 1024) this.#remVals = null;
  }

  /** Count of pairs in the run (call {@link materialize} first). */
  get length(): number {
    return this.#n;
  }

  /** The run's ids, in pair order (call {@link materialize} first; do not modify). */
  get ids(): Uint32Array {
    return this.#ids.subarray(0, this.#n);
  }

  /** The run's values, ascending (numeric runs; call {@link materialize} first). */
  get values(): Float64Array {
    return this.#vals.subarray(0, this.#n);
  }

  /** First run index whose value is not below `lower` (with `gt`/`gte`), after materialize. */
  lowerIndex(gt: number, gte: number): number {
    let lo = 0;
    let hi = this.#n;
    const v = this.#vals;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (v[mid] > gt && v[mid] >= gte) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** First run index whose value is above `lt`/`lte` (the end of a range), after materialize. */
  upperIndex(lt: number, lte: number): number {
    let lo = 0;
    let hi = this.#n;
    const v = this.#vals;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (v[mid] < lt && v[mid] <= lte) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Bytes held by the run and the logs. */
  get bytes(): number {
    return (this.#numeric ? this.#vals.byteLength : 0) + this.#ids.byteLength +
      this.#addIds.byteLength + (this.#addVals?.byteLength ?? 0) + this.#remIds.byteLength +
      (this.#remVals?.byteLength ?? 0);
  }
}

/** A log's first `n` pairs sorted by (value, id), as new arrays. */
function sortedLog(
  vals: Float64Array | null,
  ids: Uint32Array,
  n: number,
  numeric: boolean,
): [Float64Array, Uint32Array] {
  if (!numeric || vals === null) return [new Float64Array(0), ids.slice(0, n).sort()];
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => vals[a] < vals[b] ? -1 : vals[a] > vals[b] ? 1 : ids[a] - ids[b]);
  const sv = new Float64Array(n);
  const si = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    sv[i] = vals[order[i]];
    si[i] = ids[order[i]];
  }
  return [sv, si];
}

/** Concatenates id lists and sorts them without duplicates. */
function union(lists: readonly Uint32Array[]): Uint32Array {
  if (lists.length === 1) return lists[0].slice();
  let total = 0;
  for (const l of lists) total += l.length;
  const out = new Uint32Array(total);
  let at = 0;
  for (const l of lists) {
    out.set(l, at);
    at += l.length;
  }
  return sortUnique(out);
}

/** The match values a condition names, or null for a condition that is not a match/any. */
function matchValues(c: FieldCondition): readonly MatchValue[] | null {
  if (c.kind === "match") return [c.value];
  if (c.kind === "match_any") return c.values;
  return null;
}

/**
 * Point id → its one indexed value, in typed arrays (no object per point): an {@link IdMap}
 * from id to a dense row, a `Float64Array` column of values and a free list of rows. NaN marks
 * a point with several distinct values (JSON has no NaN, so the mark cannot collide).
 */
export class ForwardMap {
  readonly #rows = new IdMap();
  #vals: Float64Array = new Float64Array(0);
  #free: Uint32Array = EMPTY_IDS;
  #freeCount = 0;
  #next = 0;

  /** Points held. */
  get size(): number {
    return this.#rows.size;
  }

  /** Sets the value of `id` (NaN: several values). */
  set(id: number, value: number): void {
    let row = this.#rows.get(id);
    if (row < 0) {
      row = this.#freeCount > 0 ? this.#free[--this.#freeCount] : this.#next++;
      this.#vals = grownF64(this.#vals, row);
      this.#rows.set(id, row);
    }
    this.#vals[row] = value;
  }

  /** Forgets `id`. */
  delete(id: number): void {
    const row = this.#rows.delete(id);
    if (row < 0) return;
    this.#free = grownU32(this.#free, this.#freeCount);
    this.#free[this.#freeCount++] = row;
  }

  /** The value of `id`: a number, NaN for several values, undefined when it holds none. */
  get(id: number): number | undefined {
    const row = this.#rows.get(id);
    return row < 0 ? undefined : this.#vals[row];
  }

  /** Bytes held. */
  get bytes(): number {
    return this.#rows.bytes + this.#vals.byteLength + this.#free.byteLength;
  }
}

/** One field's index. */
interface FieldIndex {
  readonly type: PayloadFieldType;
  /** Points holding at least one indexed value. */
  points: number;
  add(id: number, values: readonly unknown[]): void;
  remove(id: number, values: readonly unknown[]): void;
  supports(c: FieldCondition): boolean;
  matchIds(c: FieldCondition): Uint32Array;
  estimate(c: FieldCondition): Cardinality;
  /**
   * A test of `c` (which the index {@link supports}) by id from the forward map, exact for
   * points with one value; `several` is called for points with several.
   */
  tester(c: FieldCondition, several: Predicate): Predicate;
  bytes(): number;
}

/** `test` over the forward map's value of an id: false when absent, `several` when NaN. */
function forwardTester(
  fwd: ForwardMap,
  test: (v: number) => boolean,
  several: Predicate,
): Predicate {
  return (id, payload) => {
    const v = fwd.get(id);
    if (v === undefined) return false;
    if (v !== v) return several(id, payload);
    return test(v);
  };
}

/** A test of membership in `values` (a short list compared in turn, else a set). */
function memberOf(values: readonly number[]): (v: number) => boolean {
  if (values.length === 0) return () => false;
  if (values.length === 1) {
    const only = values[0];
    return (v) => v === only;
  }
  if (values.length <= 8) return (v) => values.includes(v);
  const set = new Set(values);
  return (v) => set.has(v);
}

/** Distinct values of `values` that `keep` accepts, in first-seen order. */
function distinct<T>(values: readonly unknown[], keep: (v: unknown) => v is T): T[] {
  if (values.length > 16) return [...new Set(values.filter(keep))];
  const out: T[] = [];
  for (const v of values) if (keep(v) && !out.includes(v)) out.push(v);
  return out;
}

const isKeyword = (v: unknown): v is string =>
  typeof v === "string" && v.length <= FILTER_STRING_CHARS_MAX;
const isBool = (v: unknown): v is boolean => typeof v === "boolean";
const isNumber = (v: unknown): v is number => typeof v === "number";
const isInteger = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v);

/** Postings keyed by string (keyword) or by boolean. */
class PostingIndex<K extends string | boolean> implements FieldIndex {
  readonly type: PayloadFieldType;
  points = 0;
  readonly #postings = new Map<K, SortedPairs>();
  readonly #keep: (v: unknown) => v is K;
  #keyBytes = 0;
  /** Id → the code of its one value (see {@link #codeOf}). */
  readonly #fwd = new ForwardMap();
  /** Keyword codes: one per keyword that has a posting; a code is freed with its posting. */
  readonly #codes = new Map<K, number>();
  #freeCodes: number[] = [];
  #nextCode = 0;

  constructor(type: "keyword" | "bool", keep: (v: unknown) => v is K) {
    this.type = type;
    this.#keep = keep;
  }

  /** The forward code of `key`: 0/1 for booleans, a small integer for keywords; -1 if none. */
  #codeOf(key: K | MatchValue): number {
    if (typeof key === "boolean") return key ? 1 : 0;
    return this.#codes.get(key as K) ?? -1;
  }

  add(id: number, values: readonly unknown[]): void {
    const keys = distinct(values, this.#keep);
    if (keys.length > 0) this.points++;
    for (const key of keys) {
      let p = this.#postings.get(key);
      if (p === undefined) {
        p = new SortedPairs(false);
        this.#postings.set(key, p);
        this.#keyBytes += typeof key === "string" ? 2 * key.length + 48 : 48;
        if (typeof key === "string") {
          this.#codes.set(key, this.#freeCodes.pop() ?? this.#nextCode++);
        }
      }
      p.add(0, id);
    }
    if (keys.length === 1) this.#fwd.set(id, this.#codeOf(keys[0]));
    else if (keys.length > 1) this.#fwd.set(id, NaN);
  }

  remove(id: number, values: readonly unknown[]): void {
    const keys = distinct(values, this.#keep);
    if (keys.length > 0) this.points--;
    for (const key of keys) {
      const p = this.#postings.get(key);
      if (p === undefined) continue;
      p.remove(0, id);
      if (p.size === 0) {
        this.#postings.delete(key);
        this.#keyBytes -= typeof key === "string" ? 2 * key.length + 48 : 48;
        const code = this.#codes.get(key);
        if (code !== undefined) {
          // No point holds the key any more, so no forward row carries its code.
          this.#codes.delete(key);
          this.#freeCodes.push(code);
        }
      }
    }
    if (keys.length > 0) this.#fwd.delete(id);
  }

  tester(c: FieldCondition, several: Predicate): Predicate {
    // Codes of keywords no point holds are -1, which no row carries.
    const codes = (matchValues(c) ?? []).map((v) => this.#codeOf(v)).filter((x) => x >= 0);
    return forwardTester(this.#fwd, memberOf(codes), several);
  }

  supports(c: FieldCondition): boolean {
    const values = matchValues(c);
    return values !== null && values.every((v) => this.#keep(v));
  }

  #posting(key: MatchValue): Uint32Array {
    const p = this.#postings.get(key as K);
    if (p === undefined) return EMPTY_IDS;
    p.materialize();
    return p.ids;
  }

  matchIds(c: FieldCondition): Uint32Array {
    const values = matchValues(c) ?? [];
    return union(values.map((v) => this.#posting(v)));
  }

  estimate(c: FieldCondition): Cardinality {
    let sum = 0;
    let most = 0;
    for (const v of matchValues(c) ?? []) {
      const n = this.#postings.get(v as K)?.size ?? 0;
      sum += n;
      most = Math.max(most, n);
    }
    const max = Math.min(sum, this.points);
    return { min: most, exp: max, max };
  }

  bytes(): number {
    let b = this.#keyBytes + this.#fwd.bytes + 16 * this.#codes.size;
    for (const p of this.#postings.values()) b += p.bytes + 64;
    return b;
  }
}

/** Numbers of one field in one (value, id) run. */
class NumericIndex implements FieldIndex {
  readonly type: "integer" | "float";
  points = 0;
  /** Fractional numbers seen at the field that an integer index left out. */
  #fractional = 0;
  /** The most indexed values one point has had (a high-water mark, for estimates). */
  #perPointMax = 1;
  readonly #pairs = new SortedPairs(true);
  /** Id → its one value (NaN: several). */
  readonly #fwd = new ForwardMap();

  constructor(type: "integer" | "float") {
    this.type = type;
  }

  #values(values: readonly unknown[], sign: 1 | -1): number[] {
    const keep = this.type === "integer" ? isInteger : isNumber;
    const nums = distinct(values, keep);
    if (this.type === "integer") {
      for (const v of values) {
        if (typeof v === "number" && !Number.isInteger(v)) this.#fractional += sign;
      }
    }
    return nums;
  }

  add(id: number, values: readonly unknown[]): void {
    const nums = this.#values(values, 1);
    if (nums.length > 0) this.points++;
    if (nums.length > this.#perPointMax) this.#perPointMax = nums.length;
    for (const v of nums) this.#pairs.add(v, id);
    if (nums.length === 1) this.#fwd.set(id, nums[0]);
    else if (nums.length > 1) this.#fwd.set(id, NaN);
  }

  remove(id: number, values: readonly unknown[]): void {
    const nums = this.#values(values, -1);
    if (nums.length > 0) this.points--;
    for (const v of nums) this.#pairs.remove(v, id);
    if (nums.length > 0) this.#fwd.delete(id);
  }

  tester(c: FieldCondition, several: Predicate): Predicate {
    if (c.kind === "range") {
      const gt = c.range.gt ?? -Infinity;
      const gte = c.range.gte ?? -Infinity;
      const lt = c.range.lt ?? Infinity;
      const lte = c.range.lte ?? Infinity;
      return forwardTester(this.#fwd, (v) => v > gt && v >= gte && v < lt && v <= lte, several);
    }
    return forwardTester(this.#fwd, memberOf((matchValues(c) ?? []) as number[]), several);
  }

  supports(c: FieldCondition): boolean {
    if (c.kind === "range") return this.type === "float" || this.#fractional === 0;
    const values = matchValues(c);
    return values !== null && values.every(isInteger);
  }

  /** Run indexes [from, to) of the pairs a condition selects, one span per match value. */
  #spans(c: FieldCondition): Array<[number, number]> {
    const p = this.#pairs;
    p.materialize();
    if (c.kind === "range") {
      const r = c.range;
      return [[
        p.lowerIndex(r.gt ?? -Infinity, r.gte ?? -Infinity),
        p.upperIndex(r.lt ?? Infinity, r.lte ?? Infinity),
      ]];
    }
    return (matchValues(c) ?? []).map((v) => [
      p.lowerIndex(-Infinity, v as number),
      p.upperIndex(Infinity, v as number),
    ]);
  }

  matchIds(c: FieldCondition): Uint32Array {
    const spans = this.#spans(c); // materializes first: the run's arrays change on a merge
    const ids = this.#pairs.ids;
    let total = 0;
    for (const [a, b] of spans) total += Math.max(0, b - a);
    const out = new Uint32Array(total);
    let at = 0;
    for (const [a, b] of spans) {
      if (b > a) {
        out.set(ids.subarray(a, b), at);
        at += b - a;
      }
    }
    return sortUnique(out);
  }

  estimate(c: FieldCondition): Cardinality {
    let pairs = 0;
    for (const [a, b] of this.#spans(c)) pairs += Math.max(0, b - a);
    const all = this.#pairs.length;
    const max = Math.min(pairs, this.points);
    const min = Math.min(max, Math.ceil(pairs / this.#perPointMax));
    const exp = all === 0 ? 0 : Math.min(max, Math.max(min, Math.round(pairs * this.points / all)));
    return { min, exp, max };
  }

  bytes(): number {
    return this.#pairs.bytes + this.#fwd.bytes;
  }
}

function newIndex(type: PayloadFieldType): FieldIndex {
  switch (type) {
    case "keyword":
      return new PostingIndex<string>("keyword", isKeyword);
    case "bool":
      return new PostingIndex<boolean>("bool", isBool);
    case "integer":
    case "float":
      return new NumericIndex(type);
  }
}

interface Entry {
  path: string[];
  index: FieldIndex;
}

/** A collection's payload indexes, one per field (canonical key). */
export class PayloadIndexes {
  readonly #fields = new Map<string, Entry>();

  /**
   * Defines an empty index of `type` on `field` (replacing one of another type); fill it with
   * {@link build}. Throws {@link PayloadIndexError} for an unknown type, a bad field name or
   * more than PAYLOAD_INDEXES_MAX indexes.
   */
  define(field: string, type: string): void {
    if (!(PAYLOAD_FIELD_TYPES as readonly string[]).includes(type)) {
      throw new PayloadIndexError(
        `Unknown payload index type ${JSON.stringify(type)} (expected ${
          PAYLOAD_FIELD_TYPES.join(", ")
        })`,
      );
    }
    let path: string[];
    try {
      path = parseKey(field, "field");
    } catch (e) {
      throw new PayloadIndexError(`Bad payload index field: ${(e as Error).message}`);
    }
    const key = canonicalKey(path);
    if (!this.#fields.has(key) && this.#fields.size >= PAYLOAD_INDEXES_MAX) {
      throw new PayloadIndexError(
        `A collection has at most ${PAYLOAD_INDEXES_MAX} payload indexes; drop one before indexing ${
          JSON.stringify(key)
        }`,
      );
    }
    this.#fields.set(key, { path, index: newIndex(type as PayloadFieldType) });
  }

  /** Drops the index on `field`; whether there was one. */
  drop(field: string): boolean {
    let key: string;
    try {
      key = canonicalKey(parseKey(field, "field"));
    } catch {
      return false;
    }
    return this.#fields.delete(key);
  }

  /** The indexes, by field name. */
  list(): PayloadIndexInfo[] {
    return [...this.#fields].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map((
      [field, { index }],
    ) => ({ field, type: index.type, points: index.points, memory_bytes: index.bytes() }));
  }

  /** The type of the index on `field`, or null. */
  typeOf(field: string): PayloadFieldType | null {
    const key = safeCanonical(field);
    return key === null ? null : this.#fields.get(key)?.index.type ?? null;
  }

  /** Indexes the values of `payload` for point `id` (call after {@link remove} of the old one). */
  add(id: number, payload: object | null): void {
    if (payload === null) return;
    for (const { path, index } of this.#fields.values()) {
      index.add(id, payloadValues(payload, path));
    }
  }

  /** Unindexes the values `payload` (the point's current payload) holds for point `id`. */
  remove(id: number, payload: object | null): void {
    if (payload === null) return;
    for (const { path, index } of this.#fields.values()) {
      index.remove(id, payloadValues(payload, path));
    }
  }

  /**
   * Rebuilds from every point's payload: all indexes, or only `fields` (e.g. one just defined).
   */
  build(source: Iterable<readonly [number, object | null]>, fields?: readonly string[]): void {
    const entries: Entry[] = [];
    for (const [key, e] of this.#fields) {
      if (fields !== undefined && !fields.some((f) => safeCanonical(f) === key)) continue;
      e.index = newIndex(e.index.type);
      entries.push(e);
    }
    if (entries.length === 0) return;
    for (const [id, payload] of source) {
      if (payload === null) continue;
      for (const { path, index } of entries) index.add(id, payloadValues(payload, path));
    }
  }

  #indexFor(c: Condition): FieldIndex | null {
    if (!("path" in c)) return null;
    const e = this.#fields.get(canonicalKey(c.path));
    return e !== undefined && e.index.supports(c) ? e.index : null;
  }

  /** Whether an index answers `c` exactly (its ids are exactly the points `c` matches). */
  supports(c: Condition): boolean {
    return this.#indexFor(c) !== null;
  }

  /**
   * The ids of the points `c` matches, sorted and unique, a new array; null when no index
   * answers `c` (see {@link supports}).
   */
  matchIds(c: Condition): Uint32Array | null {
    const index = this.#indexFor(c);
    return index === null ? null : index.matchIds(c as FieldCondition);
  }

  /**
   * A test of whether point `id` matches `c`, from the index's forward map (a hash probe; the
   * payload is read only for a point with several values at the field); null when no index
   * answers `c`. Exact like {@link matchIds}; valid until the next write.
   */
  tester(c: Condition): Predicate | null {
    const index = this.#indexFor(c);
    if (index === null) return null;
    const several = compileFilter({ must: [c], should: [], must_not: [], min_should: null });
    return index.tester(c as FieldCondition, several);
  }

  /** An estimate of the points `c` matches, from its index; null when no index answers `c`. */
  estimate(c: Condition): Cardinality | null {
    const index = this.#indexFor(c);
    return index === null ? null : index.estimate(c as FieldCondition);
  }

  /** Bytes all indexes hold (for stats). */
  memoryBytes(): number {
    let b = 0;
    for (const { index } of this.#fields.values()) b += index.bytes();
    return b;
  }
}

function safeCanonical(field: string): string | null {
  try {
    return canonicalKey(parseKey(field, "field"));
  } catch {
    return null;
  }
}

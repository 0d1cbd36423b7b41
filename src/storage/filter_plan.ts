/**
 * The filter planner: how to find the points a filter matches, from the payload indexes and
 * the collection's size, before a filtered search or count runs.
 *
 * | plan        | when                                               | the caller                                              |
 * |-------------|----------------------------------------------------|---------------------------------------------------------|
 * | `all`       | the filter has no condition                        | searches unfiltered                                     |
 * | `ids`       | some top-level `must` condition (or the whole `should`) is answered by an index or is `has_id` | takes `ids` as the candidates; checks each with `check` unless `exact` |
 * | `predicate` | nothing indexed narrows the filter, or even the narrowest indexed `must` term may match more than {@link forwardPlanThreshold} points (then indexed terms are tested per id from the indexes' forward maps) | checks points with `check`; `cardinality` says how many may match (`known` false: a guess, see {@link sampleCardinality}) |
 *
 * `ids` is the intersection of the answers of every indexed `must` term (nested filters of only
 * `must` are flattened into terms), intersected with the union of `should` when every `should`
 * condition is indexed; `check` is the rest of the filter compiled (null when nothing is left).
 * `ids` may name points that do not exist when it comes from `has_id`: the caller skips them.
 *
 * Choosing a search ({@link chooseSearch}), after Qdrant's planner: exact scoring of the
 * candidates costs one distance per candidate and always finds the true top k; a filtered graph
 * traversal costs roughly `ef · m / selectivity` distance computations and loses recall when few
 * points pass (the graph falls apart into islands the traversal cannot cross). So: when the most
 * points that can match is at most the plain-search threshold, score them exactly; when the
 * fewest is above it, traverse the graph with the filter; in between, sample to decide. The
 * threshold is a volume of vectors, {@link PLAIN_SEARCH_VECTOR_BYTES} (Qdrant's default
 * `full_scan_threshold` is 10,000 KB for the same reason): 10 MiB of float32 vectors is 26,214
 * points at dimension 100 and 1,706 at 1,536 — a batch kernel scores that in about a millisecond,
 * on par with a traversal that visits a few thousand nodes.
 *
 * @module
 */
import {
  compileFilter,
  type Condition,
  type Filter,
  isEmptyFilter,
  mustTerms,
  type Predicate,
} from "../common/filter.ts";
import type { PointId } from "../common/point_id.ts";
import type { Prng } from "../common/prng.ts";
import type { Cardinality, PayloadIndexes } from "./payload_index.ts";

export type { Cardinality } from "./payload_index.ts";

/** Vectors' bytes up to which exact scoring of the candidates beats a filtered traversal. */
export const PLAIN_SEARCH_VECTOR_BYTES = 10 * 1024 * 1024;

/**
 * The floor of {@link forwardPlanThreshold}: below a few thousand candidates gathering them is
 * cheap (a copy of a posting, or sorting a short run) and buys exact scoring, which at dimension
 * 100 pays off up to ~26,000 points ({@link plainSearchPoints}), so small sets keep the id plan.
 */
export const FORWARD_PLAN_POINTS_MIN = 4096;

/**
 * The fraction of live points above which the narrowest indexed term is tested per id: a
 * graph walk visits on the order of `ef · m / selectivity` nodes, a few thousand, which is far
 * fewer than the candidates gathering (and sorting, intersecting) would touch at 20% and above.
 * Not lower: between a few percent and ~20% the index often still scores the matches exactly
 * (HnswIndex.filteredSearch's cost model), and exact scoring over a per-id predicate must test
 * every slot of the index (100,000 JS calls: 22 ms a query at 10% of 100K GloVe points,
 * against 5 ms with the 10,000 ids gathered; at 0.05, bench:filtered's 10% case fell to
 * 32 queries/s).
 */
export const FORWARD_PLAN_FRACTION = 0.2;

/** Points {@link sampleCardinality} checks by default: ±5% at 3 sigma on the selectivity. */
export const SAMPLE_POINTS_DEFAULT = 1000;

/** No condition: every point matches. */
export interface AllPlan {
  kind: "all";
  cardinality: Cardinality;
}

/** Candidates from the indexes. */
export interface IdsPlan {
  kind: "ids";
  /** Candidate ids, sorted and unique; a superset of the matches (exactly them when `exact`). */
  ids: Uint32Array;
  /** Whether `ids` are exactly the matching points (among existing points). */
  exact: boolean;
  /** The conditions the indexes did not cover, to check per candidate; null when `exact`. */
  check: Predicate | null;
  /** How many candidates match: `ids.length` when exact, an estimate otherwise. */
  cardinality: Cardinality;
}

/** No index narrows the filter: check points one by one. */
export interface PredicatePlan {
  kind: "predicate";
  /** The whole filter, compiled. */
  check: Predicate;
  /** Estimated matches among the live points. */
  cardinality: Cardinality;
  /** Whether every condition was estimated from an index (false: parts are guesses). */
  known: boolean;
}

/** A plan for one filter. */
export type FilterPlan = AllPlan | IdsPlan | PredicatePlan;

/** The search a plan's cardinality suggests (see the module comment). */
export type SearchChoice = "exact" | "graph" | "sample";

// ----- Cardinality arithmetic (as fractions of `n` points) -----

function clampCard(c: Cardinality, n: number): Cardinality {
  const max = Math.min(n, Math.max(0, c.max));
  const min = Math.min(max, Math.max(0, c.min));
  return { min, exp: Math.min(max, Math.max(min, c.exp)), max };
}

/** All of `cs` hold. */
function intersect(cs: readonly Cardinality[], n: number): Cardinality {
  if (cs.length === 0) return { min: n, exp: n, max: n };
  let min = n;
  let max = n;
  let frac = 1;
  let missed = 0;
  for (const c of cs) {
    max = Math.min(max, c.max);
    missed += n - c.min;
    frac *= n === 0 ? 0 : c.exp / n;
  }
  min = Math.max(0, n - missed);
  return clampCard({ min, exp: Math.round(frac * n), max }, n);
}

/** At least one of `cs` holds. */
function unite(cs: readonly Cardinality[], n: number): Cardinality {
  let min = 0;
  let max = 0;
  let none = 1;
  for (const c of cs) {
    min = Math.max(min, c.min);
    max += c.max;
    none *= n === 0 ? 1 : 1 - c.exp / n;
  }
  return clampCard({ min, exp: Math.round((1 - none) * n), max }, n);
}

function invert(c: Cardinality, n: number): Cardinality {
  return { min: n - c.max, exp: n - c.exp, max: n - c.min };
}

class Estimator {
  known = true;
  constructor(readonly indexes: PayloadIndexes, readonly n: number) {}

  condition(c: Condition): Cardinality {
    if (c.kind === "filter") return this.filter(c.filter);
    if (c.kind === "has_id") {
      const k = Math.min(c.ids.length, this.n);
      return { min: 0, exp: k, max: k };
    }
    const e = this.indexes.estimate(c);
    if (e !== null) return clampCard(e, this.n);
    // Unindexed: anything from none to all; half as the expectation.
    this.known = false;
    return { min: 0, exp: Math.round(this.n / 2), max: this.n };
  }

  filter(f: Filter): Cardinality {
    const n = this.n;
    const parts = [
      ...f.must.map((c) => this.condition(c)),
      ...f.must_not.map((c) => invert(this.condition(c), n)),
    ];
    if (f.should.length > 0) parts.push(unite(f.should.map((c) => this.condition(c)), n));
    if (f.min_should !== null && f.min_should.min_count > 0) {
      // At least one of them holds: an upper bound, honest about the lower.
      const u = unite(f.min_should.conditions.map((c) => this.condition(c)), n);
      parts.push({ min: 0, exp: u.exp, max: u.max });
    }
    return intersect(parts, n);
  }
}

/** An estimate of how many of `live_points` points match `filter`, and whether it is known. */
export function estimateFilter(
  filter: Filter,
  indexes: PayloadIndexes,
  live_points: number,
): { cardinality: Cardinality; known: boolean } {
  const e = new Estimator(indexes, live_points);
  const cardinality = e.filter(filter);
  return { cardinality, known: e.known };
}

/** Sorted unique `a ∩ b`, a new array (or `a`/`b` itself when one is empty). */
/** The ids of sorted `a` that are not in sorted `b`, sorted (a new array, or `a` itself). */
export function differenceIds(a: Uint32Array, b: Uint32Array): Uint32Array {
  if (a.length === 0 || b.length === 0) return a;
  const out = new Uint32Array(a.length);
  let n = 0;
  let j = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    while (j < b.length && b[j] < x) j++;
    if (j < b.length && b[j] === x) continue;
    out[n++] = x;
  }
  return out.subarray(0, n);
}

export function intersectIds(a: Uint32Array, b: Uint32Array): Uint32Array {
  if (a.length === 0) return a;
  if (b.length === 0) return b;
  if (a.length > b.length) [a, b] = [b, a];
  const out = new Uint32Array(a.length);
  let n = 0;
  if (a.length * 16 < b.length) {
    // Much smaller: binary search each of `a` in the remaining part of `b`.
    let from = 0;
    for (let i = 0; i < a.length; i++) {
      const x = a[i];
      let lo = from;
      let hi = b.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (b[mid] < x) lo = mid + 1;
        else hi = mid;
      }
      if (lo < b.length && b[lo] === x) out[n++] = x;
      from = lo;
    }
  } else {
    let j = 0;
    for (let i = 0; i < a.length && j < b.length; i++) {
      const x = a[i];
      while (j < b.length && b[j] < x) j++;
      if (j < b.length && b[j] === x) out[n++] = x;
    }
  }
  return out.subarray(0, n);
}

/** Sorted unique `∪ lists`. */
function unionIds(lists: readonly Uint32Array[]): Uint32Array {
  let total = 0;
  for (const l of lists) total += l.length;
  const out = new Uint32Array(total);
  let at = 0;
  for (const l of lists) {
    out.set(l, at);
    at += l.length;
  }
  out.sort();
  let n = 0;
  for (let i = 0; i < out.length; i++) if (n === 0 || out[i] !== out[n - 1]) out[n++] = out[i];
  return out.subarray(0, n);
}

/** Ids a condition selects from an index or its own id list; null when neither answers it. */
function answer(c: Condition, indexes: PayloadIndexes): Uint32Array | null {
  // A copy of has_id's list: the plan's ids are the caller's to keep, the filter is shared.
  return c.kind === "has_id" ? c.ids.slice() : indexes.matchIds(c);
}

function answerable(c: Condition, indexes: PayloadIndexes): boolean {
  return c.kind === "has_id" || indexes.supports(c);
}

/**
 * Candidates above which the planner tests ids against the indexes' forward maps instead of
 * gathering them: the larger of {@link FORWARD_PLAN_POINTS_MIN} and
 * {@link FORWARD_PLAN_FRACTION} of the live points.
 */
export function forwardPlanThreshold(live_points: number): number {
  return Math.max(FORWARD_PLAN_POINTS_MIN, Math.ceil(FORWARD_PLAN_FRACTION * live_points));
}

/**
 * A `predicate` plan that tests each id against the indexes (a hash probe per indexed term)
 * when even the narrowest indexed `must` term may match more than
 * {@link forwardPlanThreshold} points; null when a small candidate set is worth gathering (or
 * a `has_id` term, which has no index to probe, is among the indexed terms).
 */
function forwardPlan(
  filter: Filter,
  terms: ReadonlyArray<{ c: Condition; max: number }>,
  rest: Condition[],
  shouldIndexed: boolean,
  indexes: PayloadIndexes,
  n: number,
): PredicatePlan | null {
  if (terms.length === 0 || terms[0].max <= forwardPlanThreshold(n)) return null;
  if (terms.some((t) => t.c.kind === "has_id")) return null;
  if (shouldIndexed) {
    // An indexed `should` may narrow a lot on its own: then gathering it is the better plan.
    const e = new Estimator(indexes, n);
    const u = unite(filter.should.map((c) => e.condition(c)), n);
    if (u.max <= forwardPlanThreshold(n)) return null;
  }
  const must: Predicate[] = [];
  for (const { c } of terms) must.push(indexes.tester(c)!);
  const not: Predicate[] = [];
  const mustNotRest: Condition[] = [];
  for (const c of filter.must_not) {
    const t = indexes.tester(c);
    if (t !== null) not.push(t);
    else mustNotRest.push(c);
  }
  // An indexed `should` (no has_id) is tested from the indexes too: any one of them passes.
  const any = shouldIndexed && filter.should.every((c) => c.kind !== "has_id")
    ? filter.should.map((c) => indexes.tester(c)!)
    : null;
  const residual: Filter = {
    must: rest,
    should: any === null ? filter.should : [],
    must_not: mustNotRest,
    min_should: filter.min_should,
  };
  const other = isEmptyFilter(residual) ? null : compileFilter(residual);
  // The payload is read at most once per id, whichever tests fall back to it.
  let get: () => object | null = () => null;
  let loaded = false;
  let payload: object | null = null;
  const once = () => {
    if (!loaded) {
      payload = get();
      loaded = true;
    }
    return payload;
  };
  const check: Predicate = (id, read) => {
    get = read;
    loaded = false;
    payload = null;
    for (let i = 0; i < must.length; i++) if (!must[i](id, once)) return false;
    for (let i = 0; i < not.length; i++) if (not[i](id, once)) return false;
    if (any !== null) {
      let one = false;
      for (let i = 0; i < any.length && !one; i++) one = any[i](id, once);
      if (!one) return false;
    }
    return other === null || other(id, once);
  };
  const { cardinality, known } = estimateFilter(filter, indexes, n);
  return { kind: "predicate", check, cardinality, known };
}

/**
 * Plans `filter` over a collection of `live_points` points with `indexes` (see the module
 * comment for the plans).
 */
export function planFilter(
  filter: Filter,
  indexes: PayloadIndexes,
  live_points: number,
): FilterPlan {
  const n = live_points;
  if (isEmptyFilter(filter)) return { kind: "all", cardinality: { min: n, exp: n, max: n } };

  const used: Condition[] = [];
  const rest: Condition[] = [];
  for (const t of mustTerms(filter)) {
    (answerable(t.condition, indexes) ? used : rest).push(t.condition);
  }
  const shouldIndexed = filter.should.length > 0 &&
    filter.should.every((c) => answerable(c, indexes));
  if (used.length === 0 && !shouldIndexed) {
    const { cardinality, known } = estimateFilter(filter, indexes, n);
    return { kind: "predicate", check: compileFilter(filter), cardinality, known };
  }

  // Smallest first, so every later intersection is bounded by the running result.
  const est = new Estimator(indexes, n);
  const terms = used.map((c) => ({ c, max: est.condition(c).max }));
  terms.sort((a, b) => a.max - b.max);
  const large = forwardPlan(filter, terms, rest, shouldIndexed, indexes, n);
  if (large !== null) return large;
  let ids: Uint32Array | null = null;
  for (const { c } of terms) {
    const a = answer(c, indexes)!;
    ids = ids === null ? a : intersectIds(ids, a);
    if (ids.length === 0) break;
  }
  if (shouldIndexed && (ids === null || ids.length > 0)) {
    const u = unionIds(filter.should.map((c) => answer(c, indexes)!));
    ids = ids === null ? u : intersectIds(ids, u);
  }
  ids = ids!;
  // An indexed must_not term is exact too: its matches are taken out of the candidates, so the
  // residual check (which parses payloads) is left only what no index answers.
  const mustNotRest: Condition[] = [];
  for (const c of filter.must_not) {
    if (ids.length > 0 && answerable(c, indexes)) ids = differenceIds(ids, answer(c, indexes)!);
    else mustNotRest.push(c);
  }

  const residual: Filter = {
    must: rest,
    should: shouldIndexed ? [] : filter.should,
    must_not: mustNotRest,
    min_should: filter.min_should,
  };
  const exact = isEmptyFilter(residual) || ids.length === 0;
  const k = ids.length;
  if (exact) {
    return { kind: "ids", ids, exact: true, check: null, cardinality: { min: k, exp: k, max: k } };
  }
  const r = new Estimator(indexes, n).filter(residual);
  const fraction = n === 0 ? 0 : r.exp / n;
  return {
    kind: "ids",
    ids,
    exact: false,
    check: compileFilter(residual),
    cardinality: clampCard({
      min: Math.max(0, k - (n - r.min)),
      exp: Math.round(k * fraction),
      max: Math.min(k, r.max),
    }, k),
  };
}

/**
 * Points up to which exact scoring is preferred, for vectors of `dimension` float32s: the
 * threshold volume over one vector's bytes, at least 1.
 */
export function plainSearchPoints(dimension: number, bytes = PLAIN_SEARCH_VECTOR_BYTES): number {
  return Math.max(1, Math.floor(bytes / (4 * Math.max(1, dimension))));
}

/**
 * The search a cardinality suggests at `dimension`: `exact` when at most
 * {@link plainSearchPoints} can match, `graph` when more than that surely match, `sample` when
 * the estimate straddles the threshold (then {@link sampleCardinality} and choose again).
 */
export function chooseSearch(
  cardinality: Cardinality,
  dimension: number,
  bytes = PLAIN_SEARCH_VECTOR_BYTES,
): SearchChoice {
  const t = plainSearchPoints(dimension, bytes);
  if (cardinality.max <= t) return "exact";
  if (cardinality.min > t) return "graph";
  return "sample";
}

/**
 * Estimates how many of `population` (ids of live points, or a plan's candidates) pass `check`
 * by testing up to `samples` of them drawn at random (with replacement) — the interval is the
 * sample fraction ± 3 standard errors, scaled to the population.
 */
export function sampleCardinality(
  check: Predicate,
  population: ArrayLike<number>,
  payloadOf: (id: number) => object | null,
  r: Prng,
  samples = SAMPLE_POINTS_DEFAULT,
): Cardinality {
  const n = population.length;
  if (n === 0) return { min: 0, exp: 0, max: 0 };
  const s = Math.min(samples, n);
  let hits = 0;
  let id = 0;
  const get = () => payloadOf(id);
  for (let i = 0; i < s; i++) {
    id = population[s === n ? i : r.nextInt(n)];
    if (check(id, get)) hits++;
  }
  if (s === n) return { min: hits, exp: hits, max: hits };
  const p = hits / s;
  // Wilson-style floor on the spread so 0 or s hits do not claim certainty.
  const spread = 3 * Math.sqrt(Math.max(p * (1 - p), 1 / s) / s);
  return {
    min: Math.max(0, Math.floor((p - spread) * n)),
    exp: Math.round(p * n),
    max: Math.min(n, Math.ceil((p + spread) * n)),
  };
}

/** Whether `f` has a `has_id` condition naming an id that is not a uint32 one. */
function hasOtherIds(f: Filter): boolean {
  const any = (cs: readonly Condition[]) =>
    cs.some((c) =>
      c.kind === "has_id"
        ? (c.other_ids?.length ?? 0) > 0
        : c.kind === "filter" && hasOtherIds(c.filter)
    );
  return any(f.must) || any(f.should) || any(f.must_not) ||
    (f.min_should !== null && any(f.min_should.conditions));
}

/**
 * `filter` with every `has_id` rewritten into the collection's internal pids (`pidOf`: the pid
 * of an id, or -1 when the collection has none, see key_table.ts): ids the collection does not
 * hold simply match nothing. Returns `filter` itself when nothing needs rewriting (the key
 * table is `identity` and every has_id id is a uint32 one), so its compiled form stays cached.
 */
export function resolveHasIds(
  filter: Filter,
  pidOf: (id: PointId) => number,
  identity: boolean,
): Filter {
  if (identity && !hasOtherIds(filter)) return filter;
  const condition = (c: Condition): Condition => {
    if (c.kind === "filter") return { kind: "filter", filter: rewrite(c.filter) };
    if (c.kind !== "has_id") return c;
    const pids: number[] = [];
    for (let i = 0; i < c.ids.length; i++) {
      const p = pidOf(c.ids[i]);
      if (p >= 0) pids.push(p);
    }
    for (const id of c.other_ids ?? []) {
      const p = pidOf(id);
      if (p >= 0) pids.push(p);
    }
    const ids = Uint32Array.from(pids).sort();
    return { kind: "has_id", ids: ids.filter((x, i) => i === 0 || x !== ids[i - 1]) };
  };
  const rewrite = (f: Filter): Filter => ({
    must: f.must.map(condition),
    should: f.should.map(condition),
    must_not: f.must_not.map(condition),
    min_should: f.min_should === null
      ? null
      : { ...f.min_should, conditions: f.min_should.conditions.map(condition) },
  });
  return rewrite(filter);
}

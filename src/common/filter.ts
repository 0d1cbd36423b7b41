/**
 * Payload filters: the JSON form Qdrant users write, parsed into a checked AST, and compiled
 * into closures that decide one point at a time.
 *
 * Grammar (a filter is an object; every list may also be a single condition or null):
 *
 * | part                         | form                                                        |
 * |------------------------------|-------------------------------------------------------------|
 * | filter                       | `{ must?, should?, must_not?, min_should? }`                 |
 * | `must` / `should` / `must_not` | `[condition, …]`                                          |
 * | `min_should`                 | `{ conditions: [condition, …], min_count: n }`               |
 * | condition: nested filter     | a filter object (`{ must: […] }` …)                          |
 * | condition: match             | `{ key, match: { value: v } }`, v a string, integer or bool  |
 * | condition: match any         | `{ key, match: { any: [v, …] } }`                            |
 * | condition: match except      | `{ key, match: { except: [v, …] } }`                         |
 * | condition: range             | `{ key, range: { gt?, gte?, lt?, lte? } }` (numbers)         |
 * | condition: values count      | `{ key, values_count: { gt?, gte?, lt?, lte? } }` (integers) |
 * | condition: has id            | `{ has_id: [id, …] }` (point ids: integers or strings)      |
 * | condition: is empty          | `{ is_empty: { key } }`                                      |
 * | condition: is null           | `{ is_null: { key } }`                                       |
 *
 * Semantics (a point matches a filter when):
 *
 * | part         | rule                                                                    |
 * |--------------|-------------------------------------------------------------------------|
 * | `must`       | every condition holds                                                   |
 * | `should`     | when non-empty, at least one holds                                      |
 * | `must_not`   | none holds                                                              |
 * | `min_should` | at least `min_count` of its conditions hold                             |
 * | key          | dot-separated names into the payload object (`meta.lang`); a part may end in `[]` (Qdrant's array marker, accepted and implied). An array met on the way is entered: each element (one level) is looked into. |
 * | values       | the value at the key; an array there contributes each element           |
 * | match        | some value equals `value` (strict: `1` is not `"1"`) / is in `any` / is a string, number or bool not in `except` |
 * | range        | some value is a number inside every given bound                         |
 * | values_count | the key exists and its count of non-null values is inside the bounds    |
 * | is_empty     | the key is missing, null, `[]`, or holds only nulls                     |
 * | is_null      | some value is null (`null` or an array holding null)                    |
 * | missing key  | matches nothing but `is_empty` (and so satisfies `must_not`)            |
 *
 * Bounds (src/common/limits.ts), checked while parsing, before anything is trusted: JSON text
 * size (FILTER_BYTES_MAX), nesting depth (FILTER_DEPTH_MAX), conditions (FILTER_CONDITIONS_MAX),
 * list lengths (FILTER_VALUES_MAX per list, FILTER_VALUES_TOTAL_MAX in all), key length and parts
 * (FILTER_KEY_CHARS_MAX, FILTER_KEY_PARTS_MAX), string values (FILTER_STRING_CHARS_MAX). An
 * already-parsed object is not measured in bytes: its caller bounds the JSON body it came from.
 *
 * Evaluation: {@link compileFilter} turns a filter into one predicate `(id, payload) => boolean`
 * built of closures, keys split once; a call allocates nothing. `payload` is a getter called at
 * most once per call and only when a payload condition is reached: `has_id` conditions run first,
 * so a filter decided by the id alone never reads (or parses) the payload.
 *
 * @module
 */
import { utf8Length } from "./utf8.ts";
import {
  FILTER_BYTES_MAX,
  FILTER_CONDITIONS_MAX,
  FILTER_DEPTH_MAX,
  FILTER_KEY_CHARS_MAX,
  FILTER_KEY_PARTS_MAX,
  FILTER_STRING_CHARS_MAX,
  FILTER_VALUES_MAX,
  FILTER_VALUES_TOTAL_MAX,
} from "./limits.ts";
import {
  compareIds,
  ID_STRING_BYTES_MAX,
  idFromJson,
  isU32Id,
  type PointId,
  PointIdError,
} from "./point_id.ts";

/** A malformed or oversized filter; `path` is the JSON path of the bad part (`filter.must[1]`). */
export class FilterError extends Error {
  override name = "FilterError";
  /** JSON path of the bad part, e.g. `filter.must[1].range.gt`. */
  readonly path: string;

  constructor(path: string, detail: string) {
    super(`${path}: ${detail}`);
    this.path = path;
  }
}

/** A value a `match` condition compares with: a string, a safe integer or a boolean. */
export type MatchValue = string | number | boolean;

/** Bounds of a `range` or `values_count` condition; an absent bound is undefined. */
export interface Bounds {
  gt?: number;
  gte?: number;
  lt?: number;
  lte?: number;
}

interface Keyed {
  /** The key as written (`meta.tags[].name`). */
  key: string;
  /** The key split into names, `[]` markers dropped (`["meta", "tags", "name"]`). */
  path: readonly string[];
}

/** A condition on one payload key. */
export type FieldCondition =
  | Keyed & { kind: "match"; value: MatchValue }
  | Keyed & { kind: "match_any"; values: readonly MatchValue[] }
  | Keyed & { kind: "match_except"; values: readonly MatchValue[] }
  | Keyed & { kind: "range"; range: Bounds }
  | Keyed & { kind: "values_count"; count: Bounds }
  | Keyed & { kind: "is_empty" }
  | Keyed & { kind: "is_null" };

/**
 * `has_id`: the point id is one of `ids` (uint32 ids, sorted ascending, no duplicates) or of
 * `other_ids` (integers above 2^32 - 1 and string ids, in `compareIds` order, no duplicates;
 * absent when none). A compiled filter tests `ids` against the number it is given: a storage
 * collection first rewrites every `has_id` into its internal pids (`resolveHasIds`,
 * src/storage/filter_plan.ts), which is what its compiled filters see.
 */
export interface HasIdCondition {
  kind: "has_id";
  ids: Uint32Array;
  other_ids?: readonly PointId[];
}

/** A filter used as a condition. */
export interface NestedCondition {
  kind: "filter";
  filter: Filter;
}

/** One condition of a filter. */
export type Condition = FieldCondition | HasIdCondition | NestedCondition;

/** The kinds of conditions, as `Condition["kind"]`. */
export type ConditionKind = Condition["kind"];

/** `min_should`: at least `min_count` of `conditions` hold. */
export interface MinShould {
  conditions: Condition[];
  min_count: number;
}

/** A parsed, checked filter. Empty lists mean "no constraint". */
export interface Filter {
  must: Condition[];
  should: Condition[];
  must_not: Condition[];
  min_should: MinShould | null;
}

/** A compiled filter: whether point `id` (its payload read lazily through `payload`) matches. */
export type Predicate = (id: number, payload: () => object | null) => boolean;

// ----------------------------------------------------------------------------------------------
// Parsing

const QUOTE_CHARS_MAX = 60;

/** `value` as JSON for a message, shortened when long. */
function quote(value: unknown): string {
  let text: string;
  try {
    text = value === undefined ? "undefined" : JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > QUOTE_CHARS_MAX ? `${text.slice(0, QUOTE_CHARS_MAX)}…` : text;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function own(o: Record<string, unknown>, k: string): unknown {
  return Object.hasOwn(o, k) ? o[k] : undefined;
}

const FILTER_FIELDS = ["must", "should", "must_not", "min_should"];
const FIELD_OPERATORS = ["match", "range", "values_count"];
const KEYLESS = ["has_id", "is_empty", "is_null"];
/** Qdrant conditions this filter language does not implement, for a clearer refusal. */
const UNSUPPORTED = [
  "nested",
  "geo_bounding_box",
  "geo_radius",
  "geo_polygon",
  "datetime_range",
  "has_vector",
];
const BOUNDS = ["gt", "gte", "lt", "lte"];

/**
 * Splits and checks a payload key (`meta.lang`, `tags[].name`): 1 to FILTER_KEY_CHARS_MAX
 * characters, at most FILTER_KEY_PARTS_MAX non-empty dot-separated names, each optionally ending
 * in `[]`. Throws {@link FilterError} at `path`. Payload indexes name their fields the same way.
 */
export function parseKey(key: unknown, path: string): string[] {
  if (typeof key !== "string") {
    throw new FilterError(path, `expected a key string, got ${quote(key)}`);
  }
  if (key.length === 0) throw new FilterError(path, "expected a non-empty key");
  if (key.length > FILTER_KEY_CHARS_MAX) {
    throw new FilterError(
      path,
      `key of ${key.length} characters is longer than ${FILTER_KEY_CHARS_MAX}: ${quote(key)}`,
    );
  }
  const parts = key.split(".");
  if (parts.length > FILTER_KEY_PARTS_MAX) {
    throw new FilterError(
      path,
      `key has ${parts.length} parts, more than ${FILTER_KEY_PARTS_MAX}: ${quote(key)}`,
    );
  }
  for (let i = 0; i < parts.length; i++) {
    let p = parts[i];
    if (p.endsWith("[]")) p = p.slice(0, -2);
    if (p.length === 0 || p.includes("[") || p.includes("]")) {
      throw new FilterError(
        path,
        `expected dot-separated names (each may end in []), got ${quote(key)}`,
      );
    }
    parts[i] = p;
  }
  return parts;
}

/** The canonical spelling of a key: its names joined by dots (`a[].b` → `a.b`). */
export function canonicalKey(path: readonly string[]): string {
  return path.join(".");
}

class Parser {
  conditions = 0;
  values = 0;

  filter(v: unknown, path: string, depth: number): Filter {
    if (!isObject(v)) throw new FilterError(path, `expected a filter object, got ${quote(v)}`);
    if (depth > FILTER_DEPTH_MAX) {
      throw new FilterError(path, `filters nested deeper than ${FILTER_DEPTH_MAX}`);
    }
    for (const k in v) {
      if (!FILTER_FIELDS.includes(k)) {
        throw new FilterError(
          `${path}.${k}`,
          `unknown field ${quote(k)} (a filter has must, should, must_not, min_should)`,
        );
      }
    }
    const f: Filter = {
      must: this.list(own(v, "must"), `${path}.must`, depth),
      should: this.list(own(v, "should"), `${path}.should`, depth),
      must_not: this.list(own(v, "must_not"), `${path}.must_not`, depth),
      min_should: null,
    };
    const ms = own(v, "min_should");
    if (ms !== undefined && ms !== null) {
      const p = `${path}.min_should`;
      if (!isObject(ms)) throw new FilterError(p, `expected an object, got ${quote(ms)}`);
      for (const k in ms) {
        if (k !== "conditions" && k !== "min_count") {
          throw new FilterError(
            `${p}.${k}`,
            `unknown field ${quote(k)} (expected conditions, min_count)`,
          );
        }
      }
      const count = own(ms, "min_count");
      if (typeof count !== "number" || !Number.isSafeInteger(count) || count < 0) {
        throw new FilterError(`${p}.min_count`, `expected an integer >= 0, got ${quote(count)}`);
      }
      f.min_should = {
        conditions: this.list(own(ms, "conditions"), `${p}.conditions`, depth),
        min_count: count,
      };
    }
    return f;
  }

  list(v: unknown, path: string, depth: number): Condition[] {
    if (v === undefined || v === null) return [];
    const items = Array.isArray(v) ? v : [v];
    const single = !Array.isArray(v);
    if (this.conditions + items.length > FILTER_CONDITIONS_MAX) {
      throw new FilterError(path, `more than ${FILTER_CONDITIONS_MAX} conditions in the filter`);
    }
    this.conditions += items.length;
    const out: Condition[] = [];
    for (let i = 0; i < items.length; i++) {
      out.push(this.condition(items[i], single ? path : `${path}[${i}]`, depth));
    }
    return out;
  }

  condition(v: unknown, path: string, depth: number): Condition {
    if (!isObject(v)) throw new FilterError(path, `expected a condition object, got ${quote(v)}`);
    if (Object.hasOwn(v, "key")) return this.field(v, path);
    for (const k of KEYLESS) {
      if (Object.hasOwn(v, k)) {
        for (const other in v) {
          if (other !== k) {
            throw new FilterError(
              `${path}.${other}`,
              `unexpected field ${quote(other)} beside ${k}`,
            );
          }
        }
        const p = `${path}.${k}`;
        if (k === "has_id") return { kind: "has_id", ...this.ids(v[k], p) };
        const inner = v[k];
        if (!isObject(inner)) {
          throw new FilterError(p, `expected { "key": … }, got ${quote(inner)}`);
        }
        for (const other in inner) {
          if (other !== "key") {
            throw new FilterError(`${p}.${other}`, `unknown field ${quote(other)} (expected key)`);
          }
        }
        const key = inner.key as string;
        const parts = parseKey(own(inner, "key"), `${p}.key`);
        return k === "is_empty"
          ? { kind: "is_empty", key, path: parts }
          : { kind: "is_null", key, path: parts };
      }
    }
    for (const k of UNSUPPORTED) {
      if (Object.hasOwn(v, k)) {
        throw new FilterError(`${path}.${k}`, `unsupported condition ${quote(k)}`);
      }
    }
    return { kind: "filter", filter: this.filter(v, path, depth + 1) };
  }

  field(v: Record<string, unknown>, path: string): FieldCondition {
    const parts = parseKey(v.key, `${path}.key`);
    const key = v.key as string;
    let op: string | null = null;
    for (const k in v) {
      if (k === "key") continue;
      if (!FIELD_OPERATORS.includes(k)) {
        throw new FilterError(
          `${path}.${k}`,
          `${UNSUPPORTED.includes(k) ? "unsupported" : "unknown"} condition ${quote(k)} (expected ${
            FIELD_OPERATORS.join(", ")
          })`,
        );
      }
      if (op !== null) {
        throw new FilterError(
          `${path}.${k}`,
          `a condition takes one of ${FIELD_OPERATORS.join(", ")}, got ${op} and ${k}`,
        );
      }
      op = k;
    }
    if (op === null) {
      throw new FilterError(path, `expected one of ${FIELD_OPERATORS.join(", ")} beside key`);
    }
    const p = `${path}.${op}`;
    const body = v[op];
    if (!isObject(body)) throw new FilterError(p, `expected an object, got ${quote(body)}`);
    if (op === "range") {
      return { kind: "range", key, path: parts, range: this.bounds(body, p, false) };
    }
    if (op === "values_count") {
      return { kind: "values_count", key, path: parts, count: this.bounds(body, p, true) };
    }
    let kind: string | null = null;
    for (const k in body) {
      if (k !== "value" && k !== "any" && k !== "except") {
        throw new FilterError(
          `${p}.${k}`,
          `unknown match ${quote(k)} (expected value, any or except)`,
        );
      }
      if (kind !== null) {
        throw new FilterError(
          `${p}.${k}`,
          `a match takes one of value, any, except, got ${kind} and ${k}`,
        );
      }
      kind = k;
    }
    if (kind === null) throw new FilterError(p, "expected one of value, any, except");
    if (kind === "value") {
      return { kind: "match", key, path: parts, value: this.value(body.value, `${p}.value`) };
    }
    const list = this.valueList(body[kind], `${p}.${kind}`);
    return kind === "any"
      ? { kind: "match_any", key, path: parts, values: list }
      : { kind: "match_except", key, path: parts, values: list };
  }

  value(v: unknown, path: string): MatchValue {
    if (typeof v === "string") {
      if (v.length > FILTER_STRING_CHARS_MAX) {
        throw new FilterError(
          path,
          `string of ${v.length} characters is longer than ${FILTER_STRING_CHARS_MAX}: ${quote(v)}`,
        );
      }
      return v;
    }
    if (typeof v === "boolean" || (typeof v === "number" && Number.isSafeInteger(v))) return v;
    throw new FilterError(path, `expected a string, an integer or a boolean, got ${quote(v)}`);
  }

  counted(v: unknown, path: string): unknown[] {
    if (!Array.isArray(v)) throw new FilterError(path, `expected a list, got ${quote(v)}`);
    if (v.length > FILTER_VALUES_MAX) {
      throw new FilterError(path, `list of ${v.length} values is longer than ${FILTER_VALUES_MAX}`);
    }
    if (this.values + v.length > FILTER_VALUES_TOTAL_MAX) {
      throw new FilterError(path, `more than ${FILTER_VALUES_TOTAL_MAX} list values in the filter`);
    }
    this.values += v.length;
    return v;
  }

  valueList(v: unknown, path: string): MatchValue[] {
    const list = this.counted(v, path);
    return list.map((x, i) => this.value(x, `${path}[${i}]`));
  }

  ids(v: unknown, path: string): { ids: Uint32Array; other_ids?: PointId[] } {
    const list = this.counted(v, path);
    const ids: number[] = [];
    const others: PointId[] = [];
    for (let i = 0; i < list.length; i++) {
      let id: PointId;
      try {
        id = idFromJson(list[i], `${path}[${i}]`);
      } catch (e) {
        if (!(e instanceof PointIdError)) throw e;
        throw new FilterError(
          `${path}[${i}]`,
          `expected a point id (an integer from 0 to ${Number.MAX_SAFE_INTEGER} or a string of ` +
            `1 to ${ID_STRING_BYTES_MAX} bytes), got ${quote(list[i])}`,
        );
      }
      if (isU32Id(id)) ids.push(id);
      else others.push(id);
    }
    const out: { ids: Uint32Array; other_ids?: PointId[] } = {
      ids: sortUnique(Uint32Array.from(ids)),
    };
    if (others.length > 0) {
      others.sort(compareIds);
      out.other_ids = others.filter((x, i) => i === 0 || x !== others[i - 1]);
    }
    return out;
  }

  bounds(v: Record<string, unknown>, path: string, counts: boolean): Bounds {
    const out: Bounds = {};
    for (const k in v) {
      if (!BOUNDS.includes(k)) {
        throw new FilterError(
          `${path}.${k}`,
          `unknown bound ${quote(k)} (expected gt, gte, lt, lte)`,
        );
      }
      const b = v[k];
      if (b === null) continue;
      if (counts) {
        if (typeof b !== "number" || !Number.isSafeInteger(b) || b < 0) {
          throw new FilterError(`${path}.${k}`, `expected an integer >= 0, got ${quote(b)}`);
        }
      } else if (typeof b !== "number" || !Number.isFinite(b)) {
        throw new FilterError(`${path}.${k}`, `expected a number, got ${quote(b)}`);
      }
      out[k as keyof Bounds] = b;
    }
    return out;
  }
}

/** Sorts `ids` ascending in place and returns the prefix without duplicates. */
export function sortUnique(ids: Uint32Array): Uint32Array {
  if (ids.length < 2) return ids;
  ids.sort();
  let n = 1;
  for (let i = 1; i < ids.length; i++) if (ids[i] !== ids[n - 1]) ids[n++] = ids[i];
  return n === ids.length ? ids : ids.slice(0, n);
}

/**
 * Parses and checks a filter: a JSON text (at most FILTER_BYTES_MAX bytes) or an already-parsed
 * value. `field` names the root in error paths. Throws {@link FilterError}.
 */
export function parseFilter(input: unknown, field = "filter"): Filter {
  let value = input;
  if (typeof input === "string") {
    // A UTF-16 unit is at most 3 UTF-8 bytes, so short texts need no counting.
    const bytes = input.length * 3 <= FILTER_BYTES_MAX ? input.length : utf8Length(input);
    if (bytes > FILTER_BYTES_MAX) {
      throw new FilterError(field, `filter of ${bytes} bytes is larger than ${FILTER_BYTES_MAX}`);
    }
    try {
      value = JSON.parse(input);
    } catch (e) {
      throw new FilterError(field, `not valid JSON: ${(e as Error).message}`);
    }
  }
  return new Parser().filter(value, field, 1);
}

/** Whether `f` has no condition at all (it matches every point). */
export function isEmptyFilter(f: Filter): boolean {
  return f.must.length === 0 && f.should.length === 0 && f.must_not.length === 0 &&
    f.min_should === null;
}

/** A conjunction term: one condition every matching point satisfies, with its key and kind. */
export interface ConjunctionTerm {
  /** The key's canonical spelling (see {@link canonicalKey}), null for `has_id` and nested. */
  key: string | null;
  kind: ConditionKind;
  condition: Condition;
}

/**
 * The top-level `must` conditions as (key, kind) terms, for the planner: nested filters that
 * hold only `must` are flattened into them (they are the same conjunction); other nested
 * filters are one term of kind `filter`.
 */
export function mustTerms(f: Filter): ConjunctionTerm[] {
  const out: ConjunctionTerm[] = [];
  const walk = (conds: readonly Condition[]) => {
    for (const c of conds) {
      if (
        c.kind === "filter" && c.filter.should.length === 0 && c.filter.must_not.length === 0 &&
        c.filter.min_should === null
      ) {
        walk(c.filter.must);
      } else {
        out.push({ key: "path" in c ? canonicalKey(c.path) : null, kind: c.kind, condition: c });
      }
    }
  };
  walk(f.must);
  return out;
}

// ----------------------------------------------------------------------------------------------
// Payload walking, shared with the payload indexes so that both see the same values

/** A test on one value found at a key. */
type Leaf = (value: unknown) => boolean;

/**
 * Whether `test` holds for some value at `path[i..]` under `v`. Arrays met before the end are
 * entered one level (elements that are arrays themselves are skipped), which bounds the
 * recursion by the key's parts; an array at the end contributes each element.
 */
function anyLeaf(v: unknown, path: readonly string[], i: number, test: Leaf): boolean {
  for (;;) {
    if (i === path.length) {
      if (Array.isArray(v)) {
        for (let j = 0; j < v.length; j++) if (test(v[j])) return true;
        return false;
      }
      return v !== undefined && test(v);
    }
    if (Array.isArray(v)) {
      for (let j = 0; j < v.length; j++) {
        const e = v[j];
        if (!Array.isArray(e) && anyLeaf(e, path, i, test)) return true;
      }
      return false;
    }
    if (typeof v !== "object" || v === null || !Object.hasOwn(v, path[i])) return false;
    v = (v as Record<string, unknown>)[path[i]];
    i++;
  }
}

/** Count of non-null values at `path[i..]` under `v`, or -1 when the key is missing. */
function countLeaves(v: unknown, path: readonly string[], i: number): number {
  for (;;) {
    if (i === path.length) {
      if (v === undefined) return -1;
      if (Array.isArray(v)) {
        let n = 0;
        for (let j = 0; j < v.length; j++) if (v[j] !== null) n++;
        return n;
      }
      return v === null ? 0 : 1;
    }
    if (Array.isArray(v)) {
      let n = -1;
      for (let j = 0; j < v.length; j++) {
        const e = v[j];
        if (Array.isArray(e)) continue;
        const c = countLeaves(e, path, i);
        if (c >= 0) n = n < 0 ? c : n + c;
      }
      return n;
    }
    if (typeof v !== "object" || v === null || !Object.hasOwn(v, path[i])) return -1;
    v = (v as Record<string, unknown>)[path[i]];
    i++;
  }
}

/**
 * Every value at `path` in `payload` (arrays flattened as the filter sees them), in order. For
 * the payload indexes, so they index exactly what conditions test.
 */
export function payloadValues(payload: object | null, path: readonly string[]): unknown[] {
  const out: unknown[] = [];
  if (payload !== null) {
    anyLeaf(payload, path, 0, (v) => {
      out.push(v);
      return false;
    });
  }
  return out;
}

// ----------------------------------------------------------------------------------------------
// Compilation

/** Per-predicate state: the current payload getter and its cached result. */
interface Env {
  get: () => object | null;
  loaded: boolean;
  payload: object | null;
}

type Node = (id: number) => boolean;

function load(env: Env): object | null {
  if (!env.loaded) {
    env.payload = env.get();
    env.loaded = true;
  }
  return env.payload;
}

const notNull: Leaf = (v) => v !== null;
const isNull: Leaf = (v) => v === null;

function isScalar(v: unknown): boolean {
  const t = typeof v;
  return t === "string" || t === "number" || t === "boolean";
}

/** A test that `x` is inside `b` (absent bounds are infinite). */
function inBounds(b: Bounds): (x: number) => boolean {
  const gt = b.gt ?? -Infinity;
  const gte = b.gte ?? -Infinity;
  const lt = b.lt ?? Infinity;
  const lte = b.lte ?? Infinity;
  return (x) => x > gt && x >= gte && x < lt && x <= lte;
}

function compileCondition(c: Condition, env: Env): Node {
  switch (c.kind) {
    case "has_id": {
      const ids = c.ids;
      return (id) => {
        let lo = 0;
        let hi = ids.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if (ids[mid] < id) lo = mid + 1;
          else hi = mid;
        }
        return lo < ids.length && ids[lo] === id;
      };
    }
    case "filter":
      return compileNode(c.filter, env);
    case "is_empty": {
      const path = c.path;
      return () => {
        const p = load(env);
        return p === null || !anyLeaf(p, path, 0, notNull);
      };
    }
    case "values_count": {
      const path = c.path;
      const ok = inBounds(c.count);
      return () => {
        const p = load(env);
        if (p === null) return false;
        const n = countLeaves(p, path, 0);
        return n >= 0 && ok(n);
      };
    }
    default:
      break;
  }
  let test: Leaf;
  switch (c.kind) {
    case "match": {
      const value = c.value;
      test = (x) => x === value;
      break;
    }
    case "match_any": {
      const set = new Set<unknown>(c.values);
      test = (x) => set.has(x);
      break;
    }
    case "match_except": {
      const set = new Set<unknown>(c.values);
      test = (x) => isScalar(x) && !set.has(x);
      break;
    }
    case "range": {
      const ok = inBounds(c.range);
      test = (x) => typeof x === "number" && ok(x);
      break;
    }
    case "is_null":
      test = isNull;
      break;
  }
  const path = c.path;
  return () => {
    const p = load(env);
    return p !== null && anyLeaf(p, path, 0, test);
  };
}

/** Cost rank for ordering: id-only conditions first, so they can decide before a payload read. */
function cost(c: Condition): number {
  return c.kind === "has_id" ? 0 : c.kind === "filter" ? 2 : 1;
}

function compileList(conds: readonly Condition[], env: Env): Node[] {
  return [...conds].sort((a, b) => cost(a) - cost(b)).map((c) => compileCondition(c, env));
}

function compileNode(f: Filter, env: Env): Node {
  const must = compileList(f.must, env);
  const should = compileList(f.should, env);
  const mustNot = compileList(f.must_not, env);
  const minShould = f.min_should === null ? [] : compileList(f.min_should.conditions, env);
  const minCount = f.min_should?.min_count ?? 0;
  return (id) => {
    for (let i = 0; i < must.length; i++) if (!must[i](id)) return false;
    for (let i = 0; i < mustNot.length; i++) if (mustNot[i](id)) return false;
    if (should.length > 0) {
      let any = false;
      for (let i = 0; i < should.length && !any; i++) any = should[i](id);
      if (!any) return false;
    }
    if (minCount > 0) {
      let n = 0;
      for (let i = 0; i < minShould.length && n < minCount; i++) if (minShould[i](id)) n++;
      if (n < minCount) return false;
    }
    return true;
  };
}

const NO_PAYLOAD = () => null;

/**
 * Compiles `f` into a predicate. Compile once per request and call it per point; the predicate
 * is not re-entrant (its payload getter must not call the same predicate).
 */
export function compileFilter(f: Filter): Predicate {
  const env: Env = { get: NO_PAYLOAD, loaded: false, payload: null };
  const node = compileNode(f, env);
  return (id, payload) => {
    env.get = payload;
    env.loaded = false;
    env.payload = null;
    const out = node(id);
    env.get = NO_PAYLOAD;
    env.payload = null;
    return out;
  };
}

const compiled = new WeakMap<Filter, Predicate>();

/**
 * Whether point `id` with the payload `payload()` returns matches `f`. The compiled form is
 * cached per filter object; hot loops may hold {@link compileFilter}'s result instead.
 */
export function evaluate(f: Filter, id: number, payload: () => object | null): boolean {
  let p = compiled.get(f);
  if (p === undefined) {
    p = compileFilter(f);
    compiled.set(f, p);
  }
  return p(id, payload);
}

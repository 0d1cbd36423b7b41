/**
 * Validation of public API requests, shared by storage nodes, the router and the client CLI so
 * that a bad request gets the same message wherever it is caught.
 *
 * Every function is pure: it returns the value (normalised: "" collection → "default", 0 → the
 * documented default) or throws a {@link ValidationError} naming the field and quoting the value,
 * e.g. `vector[3] is NaN` or `k 0 must be between 1 and 10000`. Servers map it to gRPC
 * INVALID_ARGUMENT with the message as details.
 *
 * Dimension checks need the collection, so the request validators take it as an optional
 * argument: the router and the CLI, which do not know it, skip that check.
 *
 * @module
 */

import { idFromWire, idsFromWire, type PointId, PointIdError } from "../common/point_id.ts";
import { collectionNameProblem } from "../common/collection_name.ts";
import { VERSION_FUTURE_MAX_MS, versionCeiling } from "../common/version.ts";
import { parsePayload, PayloadError } from "../common/payload.ts";
import { type Filter, FilterError, isEmptyFilter, parseFilter } from "../common/filter.ts";
import {
  BATCH_POINTS_MAX,
  type Consistency,
  CONSISTENCY_LEVELS,
  DEFAULT_COLLECTION,
  DEFAULT_EF_CONSTRUCTION,
  DEFAULT_M,
  DEFAULT_METRIC,
  DIMENSION_MAX,
  EF_CONSTRUCTION_MAX,
  EF_MAX,
  ID_MAX,
  K_MAX,
  M_MAX,
  M_MIN,
  type Metric,
  METRICS,
  VERSION_MAX,
} from "../common/limits.ts";
import {
  DEFAULT_RESCORE,
  type Quantization,
  QUANTIZATIONS,
  REPLICATION_FACTOR_MAX,
  RESCORE_MAX,
  SHARDS_MAX,
} from "../common/limits.ts";

/** A request field breaks a rule of the API; `field` is its path, e.g. `points[3].vector[7]`. */
export class ValidationError extends Error {
  constructor(readonly field: string, readonly value: unknown, message: string) {
    super(message);
    this.name = "ValidationError";
  }
}

/** Quotes a value for an error message: strings in JSON quotes, the rest as String() does. */
export function quote(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value !== null && typeof value === "object") return "an object";
  return String(value);
}

function integerIn(
  value: unknown,
  field: string,
  min: number,
  max: number,
  note = "",
): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new ValidationError(
      field,
      value,
      `${field} ${quote(value)} must be ${
        typeof value === "number" && Number.isInteger(value) ? "" : "an integer "
      }between ${min} and ${max}${note}`,
    );
  }
  return value;
}

/** A point id: an integer 0 … 4294967295. */
export function validateId(id: unknown, field = "id"): number {
  return integerIn(id, field, 0, ID_MAX);
}

/**
 * A message's point id: its (`id`, `string_id`) pair (see "Ids" in proto/vector_db.proto) as a
 * canonical PointId. `prefix` names the message (`points[3].`); a bad id is a ValidationError
 * naming the field (`points[3].string_id`) and the value.
 */
export function validatePointId(id: unknown, stringId: unknown, prefix = ""): PointId {
  try {
    return idFromWire(id, stringId, prefix);
  } catch (e) {
    if (e instanceof PointIdError) throw new ValidationError(e.field, e.value, e.message);
    throw e;
  }
}

/**
 * A message's id lists (`ids`, `string_ids`) as PointIds, integers first: 1 .. `max` ids in
 * both lists together (`min` 0 allows none). `field` names the integer list.
 */
export function validatePointIds(
  ids: unknown,
  stringIds: unknown,
  max: number,
  field = "ids",
  min = 1,
): PointId[] {
  const a = ids ?? [];
  const b = stringIds ?? [];
  if (!Array.isArray(a)) throw new ValidationError(field, a, `${field} must be a list`);
  if (!Array.isArray(b)) {
    throw new ValidationError(`string_${field}`, b, `string_${field} must be a list`);
  }
  const n = a.length + b.length;
  if (n < min || n > max) {
    throw new ValidationError(
      field,
      n,
      `${field} and string_${field} have ${n} entries together; they must have ${min} to ${max}`,
    );
  }
  try {
    return idsFromWire(a, b, field);
  } catch (e) {
    if (e instanceof PointIdError) throw new ValidationError(e.field, e.value, e.message);
    throw e;
  }
}

/**
 * A vector: a non-empty array of at most DIMENSION_MAX finite float32 numbers, of length
 * `dimension` when given. Returns the same array.
 */
export function validateVector(vector: unknown, field = "vector", dimension?: number): number[] {
  if (!Array.isArray(vector)) {
    throw new ValidationError(
      field,
      vector,
      `${field} must be an array of numbers, got ${quote(vector)}`,
    );
  }
  const n = vector.length;
  if (n === 0) throw new ValidationError(field, vector, `${field} is empty`);
  if (n > DIMENSION_MAX) {
    throw new ValidationError(field, n, `${field} has ${n} values; the limit is ${DIMENSION_MAX}`);
  }
  if (dimension !== undefined && n !== dimension) {
    throw new ValidationError(
      field,
      n,
      `${field} dimension ${n} does not match the collection dimension ${dimension}`,
    );
  }
  for (let i = 0; i < n; i++) {
    const v = vector[i];
    // Fast path: the float32 rounding of every finite in-range number is finite.
    if (typeof v === "number" && Number.isFinite(Math.fround(v))) continue;
    const at = `${field}[${i}]`;
    if (typeof v !== "number") {
      throw new ValidationError(at, v, `${at} ${quote(v)} is not a number`);
    }
    if (Number.isNaN(v) || !Number.isFinite(v)) throw new ValidationError(at, v, `${at} is ${v}`);
    throw new ValidationError(at, v, `${at} ${v} is outside the float32 range`);
  }
  return vector;
}

/** A validated vector: a plain array (`repeated float`) or a Float32Array (`vector_bytes`). */
export type VectorValue = number[] | Float32Array;

/** True when a Float32Array's bytes are little-endian on this host (every common one). */
const HOST_LITTLE_ENDIAN = new Uint8Array(new Float32Array([1]).buffer)[3] === 0x3f;

/** True when `bytes` is a set (non-empty) `vector_bytes` field. */
function isSetBytes(bytes: unknown): boolean {
  return bytes !== undefined && bytes !== null &&
    !(bytes instanceof Uint8Array && bytes.length === 0);
}

/**
 * The name of the field a request's vector came in: `${field}_bytes` when its packed form is
 * set, else `field` (for messages about a vector checked later, e.g. against a dimension).
 */
export function vectorFieldName(request: { vector_bytes?: unknown }, field = "vector"): string {
  return isSetBytes(request.vector_bytes) ? `${field}_bytes` : field;
}

/**
 * A vector given as `field` (`repeated float`) or `${field}_bytes` (packed little-endian float32,
 * see proto/vector_db.proto): exactly one may be set. The packed form becomes a Float32Array
 * without per-value decoding (over the bytes when 4-aligned, else over an aligned copy), checked
 * like {@link validateVector}: 1 … DIMENSION_MAX finite values, `dimension` of them when given.
 */
export function validateVectorOrBytes(
  vector: unknown,
  bytes: unknown,
  field = "vector",
  dimension?: number,
): VectorValue {
  if (!isSetBytes(bytes)) return validateVector(vector, field, dimension);
  const name = `${field}_bytes`;
  if (!(bytes instanceof Uint8Array)) {
    throw new ValidationError(name, bytes, `${name} must be bytes, got ${quote(bytes)}`);
  }
  if (Array.isArray(vector) && vector.length > 0) {
    throw new ValidationError(
      name,
      bytes.length,
      `${field} (${vector.length} values) and ${name} (${bytes.length} bytes) are both set; ` +
        `set exactly one`,
    );
  }
  const b = bytes as Uint8Array;
  if (b.length % 4 !== 0) {
    throw new ValidationError(
      name,
      b.length,
      `${name} has ${b.length} bytes, not a multiple of 4 (one float32 is 4 bytes)`,
    );
  }
  const n = b.length / 4;
  if (n > DIMENSION_MAX) {
    throw new ValidationError(name, n, `${name} has ${n} values; the limit is ${DIMENSION_MAX}`);
  }
  if (dimension !== undefined && n !== dimension) {
    throw new ValidationError(
      name,
      n,
      `${name} dimension ${n} (${b.length} bytes) does not match the collection dimension ` +
        `${dimension}`,
    );
  }
  let out: Float32Array;
  if (!HOST_LITTLE_ENDIAN) {
    out = new Float32Array(n);
    const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
    for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
  } else if (b.byteOffset % 4 === 0) {
    out = new Float32Array(b.buffer, b.byteOffset, n);
  } else {
    // Not b.slice(): a Buffer's slice is a view of the same memory.
    const copy = new Uint8Array(b.length);
    copy.set(b);
    out = new Float32Array(copy.buffer, 0, n);
  }
  for (let i = 0; i < n; i++) {
    if (Number.isFinite(out[i])) continue;
    const at = `${name}[${i}]`;
    throw new ValidationError(at, out[i], `${at} is ${out[i]}`);
  }
  return out;
}

/** Search `k`: 1 … K_MAX. */
export function validateK(k: unknown, field = "k"): number {
  return integerIn(k, field, 1, K_MAX);
}

/** Search `ef`: 0 (server default) or 1 … EF_MAX. */
export function validateEf(ef: unknown, field = "ef"): number {
  if (ef === undefined) return 0;
  return integerIn(ef, field, 0, EF_MAX, " (0 selects the server default)");
}

/** A collection name: 1 … 64 characters from [A-Za-z0-9_-] (common/collection_name.ts). */
export function validateCollectionName(name: unknown, field = "name"): string {
  const problem = collectionNameProblem(name, field);
  if (problem !== null) throw new ValidationError(field, name, problem);
  return name as string;
}

/** The `collection` field of a point request: "" or absent selects DEFAULT_COLLECTION. */
export function resolveCollection(name: unknown, field = "collection"): string {
  if (name === undefined || name === "") return DEFAULT_COLLECTION;
  return validateCollectionName(name, field);
}

/** A metric name; "" or absent selects DEFAULT_METRIC. */
export function validateMetric(metric: unknown, field = "metric"): Metric {
  if (metric === undefined || metric === "") return DEFAULT_METRIC;
  if (!(METRICS as readonly unknown[]).includes(metric)) {
    throw new ValidationError(
      field,
      metric,
      `${field} ${quote(metric)} must be one of ${METRICS.map((m) => `"${m}"`).join(", ")}`,
    );
  }
  return metric as Metric;
}

/** A write consistency level; "" or absent gives undefined (the server default). */
export function validateConsistency(
  consistency: unknown,
  field = "consistency",
): Consistency | undefined {
  if (consistency === undefined || consistency === "") return undefined;
  if (!(CONSISTENCY_LEVELS as readonly unknown[]).includes(consistency)) {
    throw new ValidationError(
      field,
      consistency,
      `${field} ${quote(consistency)} must be one of ${
        CONSISTENCY_LEVELS.map((c) => `"${c}"`).join(", ")
      } or empty`,
    );
  }
  return consistency as Consistency;
}

/**
 * A write version (a uint64 field: a decimal string as proto-loader decodes it with `longs:
 * String`, or a number): 0 … VERSION_MAX; absent or "" gives 0 ("stamp it for me").
 */
export function validateVersion(version: unknown, field = "version"): number {
  if (version === undefined || version === "") return 0;
  const shown = typeof version === "string" && version.length > 40
    ? quote(`${version.slice(0, 40)}...`)
    : quote(version);
  // A decimal string above VERSION_MAX converts to at least 2^53, so one range check serves both.
  const n = typeof version === "string" && /^[0-9]+$/.test(version) ? Number(version) : version;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0) {
    throw new ValidationError(field, version, `${field} ${shown} is not an unsigned integer`);
  }
  if (n > VERSION_MAX) {
    throw new ValidationError(field, version, `${field} ${shown} is above ${VERSION_MAX}`);
  }
  return n;
}

/**
 * A write version from outside: {@link validateVersion}, and at most
 * {@link VERSION_FUTURE_MAX_MS} ahead of this server's clock (`now_ms`), so that no request can
 * push a clock that observes it out of range (see `versionCeiling` in common/version.ts).
 */
export function validateVersionFromOutside(
  version: unknown,
  field = "version",
  now_ms: number = Date.now(),
): number {
  const n = validateVersion(version, field);
  const ceiling = versionCeiling(now_ms);
  if (n > ceiling) {
    throw new ValidationError(
      field,
      version,
      `${field} ${quote(version)} is more than ${VERSION_FUTURE_MAX_MS / 60_000} minutes ahead ` +
        `of this server's clock (the largest accepted now is ${ceiling}; a version is ` +
        `milliseconds since 1970 x 1024 plus a counter)`,
    );
  }
  return n;
}

/**
 * A payload field: JSON text of an object within the limits of common/payload.ts, or "" /
 * absent for none. Returns the canonical bytes (null for none).
 */
export function validatePayload(payload: unknown, field = "payload"): Uint8Array | null {
  if (payload === undefined || payload === null || payload === "") return null;
  if (typeof payload !== "string") {
    throw new ValidationError(
      field,
      payload,
      `${field} must be a string of JSON text, got ${quote(payload)}`,
    );
  }
  try {
    return parsePayload(payload, field);
  } catch (e) {
    if (e instanceof PayloadError) throw new ValidationError(field, e.value, e.message);
    throw e;
  }
}

/** A boolean request flag; absent is false. */
export function validateFlag(value: unknown, field: string): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value !== "boolean") {
    throw new ValidationError(field, value, `${field} ${quote(value)} must be true or false`);
  }
  return value;
}

// ----- Whole requests -----

/** A validated Put. */
export interface ValidPut {
  id: PointId;
  vector: VectorValue;
  /** Canonical JSON bytes of the payload (common/payload.ts); null for none. */
  payload: Uint8Array | null;
  collection: string;
  consistency: Consistency | undefined;
  /** 0 when the request left it for the server to stamp. */
  version: number;
}

/** A validated PutBatch. */
export interface ValidPutBatch {
  /** `payload`: canonical JSON bytes, null for none. */
  points: { id: PointId; vector: VectorValue; payload: Uint8Array | null }[];
  collection: string;
  consistency: Consistency | undefined;
  /** 0 when the request left it for the server to stamp. */
  version: number;
}

/** A validated Get or Delete. */
export interface ValidPointRef {
  id: PointId;
  collection: string;
  consistency: Consistency | undefined;
  /** A Delete's version; 0 when absent (Get has none). */
  version: number;
}

/** A validated Search; `ef` 0 means the server default. */
export interface ValidSearch {
  vector: VectorValue;
  k: number;
  ef: number;
  collection: string;
  /** Results carry payloads / stored vectors. */
  with_payload: boolean;
  with_vector: boolean;
  /** Only points matching it (absent or null: every point). */
  filter?: Filter | null;
  /** Brute force over every live point instead of the graph (SearchRequest.exact). */
  exact?: boolean;
}

/**
 * A filter field (JSON text in Qdrant's form, src/common/filter.ts): null for absent, "" or a
 * filter without conditions; a malformed one is a ValidationError naming the JSON path of the
 * bad part under `field` (`filter.must[1].range.gt`).
 */
export function validateFilter(value: unknown, field = "filter"): Filter | null {
  if (value === undefined || value === null || value === "") return null;
  if (typeof value !== "string") {
    throw new ValidationError(field, value, `${field} must be a string of JSON text`);
  }
  let f: Filter;
  try {
    f = parseFilter(value, field);
  } catch (e) {
    if (!(e instanceof FilterError)) throw e;
    throw new ValidationError(e.path, value, e.message);
  }
  return isEmptyFilter(f) ? null : f;
}

/**
 * The filter text to pass on to the nodes, given the request's `raw` field and its validated
 * form from {@link validateFilter}: the text as sent when it has a condition, else "".
 */
export function filterJson(raw: unknown, parsed: Filter | null | undefined): string {
  return parsed === null || parsed === undefined ? "" : raw as string;
}

/** A validated CreateCollection with defaults filled in. */
export interface ValidCollection {
  name: string;
  dimension: number;
  metric: Metric;
  m: number;
  ef_construction: number;
  /** Present only for a quantized collection (absent: "none"). */
  quantization?: Quantization;
  /** Re-ranking factor, present with `quantization`. */
  rescore?: number;
  /**
   * Shards, 1 .. SHARDS_MAX; absent: not chosen yet (a router picks the number of its storage
   * nodes; a node makes 1). Absent also for collections made before shards existed.
   */
  shard_number?: number;
  /** Replicas per shard, 1 .. REPLICATION_FACTOR_MAX; absent: the router's default. */
  replication_factor?: number;
}

/** A quantization name; "" or absent gives "none". */
export function validateQuantization(value: unknown, field = "quantization"): Quantization {
  if (value === undefined || value === "") return "none";
  if (!(QUANTIZATIONS as readonly unknown[]).includes(value)) {
    throw new ValidationError(
      field,
      value,
      `${field} ${quote(value)} must be one of ${QUANTIZATIONS.map((q) => `"${q}"`).join(", ")}`,
    );
  }
  return value as Quantization;
}

interface PutLike {
  id?: unknown;
  string_id?: unknown;
  vector?: unknown;
  vector_bytes?: unknown;
  payload?: unknown;
  collection?: unknown;
  consistency?: unknown;
  version?: unknown;
}

/** Validates a PutRequest; checks the vector's dimension when `dimension` is given. */
export function validatePutRequest(request: PutLike, dimension?: number): ValidPut {
  return {
    id: validatePointId(request.id, request.string_id),
    vector: validateVectorOrBytes(request.vector, request.vector_bytes, "vector", dimension),
    payload: validatePayload(request.payload),
    collection: resolveCollection(request.collection),
    consistency: validateConsistency(request.consistency),
    version: validateVersionFromOutside(request.version),
  };
}

/** Validates a PutBatchRequest: 1 … BATCH_POINTS_MAX points, each a valid id and vector. */
export function validatePutBatchRequest(
  request: { points?: unknown; collection?: unknown; consistency?: unknown; version?: unknown },
  dimension?: number,
): ValidPutBatch {
  const points = request.points;
  if (!Array.isArray(points)) {
    throw new ValidationError("points", points, `points must be an array, got ${quote(points)}`);
  }
  if (points.length === 0) throw new ValidationError("points", points, "points is empty");
  if (points.length > BATCH_POINTS_MAX) {
    throw new ValidationError(
      "points",
      points.length,
      `points has ${points.length} entries; the limit is ${BATCH_POINTS_MAX}`,
    );
  }
  // Every point must have the dimension of the first when the collection's is unknown.
  let dim = dimension;
  const valid = new Array<ValidPutBatch["points"][number]>(points.length);
  for (let i = 0; i < points.length; i++) {
    const p = points[i] as
      | {
        id?: unknown;
        string_id?: unknown;
        vector?: unknown;
        vector_bytes?: unknown;
        payload?: unknown;
      }
      | null;
    if (p === null || typeof p !== "object") {
      throw new ValidationError(`points[${i}]`, p, `points[${i}] ${quote(p)} is not a point`);
    }
    const id = validatePointId(p.id, p.string_id, `points[${i}].`);
    const v = validateVectorOrBytes(p.vector, p.vector_bytes, `points[${i}].vector`, dim);
    if (dim === undefined) dim = v.length;
    valid[i] = { id, vector: v, payload: validatePayload(p.payload, `points[${i}].payload`) };
  }
  return {
    points: valid,
    collection: resolveCollection(request.collection),
    consistency: validateConsistency(request.consistency),
    version: validateVersionFromOutside(request.version),
  };
}

/** Validates a GetRequest or DeleteRequest. */
export function validatePointRef(
  request: {
    id?: unknown;
    string_id?: unknown;
    collection?: unknown;
    consistency?: unknown;
    version?: unknown;
  },
): ValidPointRef {
  return {
    id: validatePointId(request.id, request.string_id),
    collection: resolveCollection(request.collection),
    consistency: validateConsistency(request.consistency),
    version: validateVersionFromOutside(request.version),
  };
}

/** Validates a SearchRequest; checks the query's dimension when `dimension` is given. */
export function validateSearchRequest(
  request: {
    vector?: unknown;
    vector_bytes?: unknown;
    k?: unknown;
    ef?: unknown;
    collection?: unknown;
    with_payload?: unknown;
    with_vector?: unknown;
    filter?: unknown;
    exact?: unknown;
  },
  dimension?: number,
): ValidSearch {
  return {
    vector: validateVectorOrBytes(request.vector, request.vector_bytes, "vector", dimension),
    k: validateK(request.k),
    ef: validateEf(request.ef),
    collection: resolveCollection(request.collection),
    with_payload: validateFlag(request.with_payload, "with_payload"),
    with_vector: validateFlag(request.with_vector, "with_vector"),
    filter: validateFilter(request.filter, "filter"),
    // Present only when asked for, so a plain search's validated form is unchanged.
    ...(validateFlag(request.exact, "exact") ? { exact: true } : {}),
  };
}

/** Validates a CreateCollectionRequest and fills in the defaults of 0 / "" fields. */
export function validateCreateCollectionRequest(request: {
  name?: unknown;
  dimension?: unknown;
  metric?: unknown;
  m?: unknown;
  ef_construction?: unknown;
  quantization?: unknown;
  rescore?: unknown;
  shard_number?: unknown;
  replication_factor?: unknown;
}): ValidCollection {
  const name = validateCollectionName(request.name, "name");
  const dimension = integerIn(request.dimension, "dimension", 1, DIMENSION_MAX);
  const metric = validateMetric(request.metric);
  const m = request.m === undefined || request.m === 0
    ? DEFAULT_M
    : integerIn(request.m, "m", M_MIN, M_MAX, ` (0 selects ${DEFAULT_M})`);
  const ef_construction = request.ef_construction === undefined || request.ef_construction === 0
    ? Math.max(DEFAULT_EF_CONSTRUCTION, m)
    : integerIn(
      request.ef_construction,
      "ef_construction",
      m,
      EF_CONSTRUCTION_MAX,
      ` (at least m; 0 selects ${DEFAULT_EF_CONSTRUCTION})`,
    );
  const quantization = validateQuantization(request.quantization);
  const given = request.rescore === undefined || request.rescore === 0
    ? DEFAULT_RESCORE
    : integerIn(request.rescore, "rescore", 1, RESCORE_MAX, ` (0 selects ${DEFAULT_RESCORE})`);
  const v: ValidCollection = { name, dimension, metric, m, ef_construction };
  // Without quantization nothing is re-ranked: both fields stay absent (a float collection's
  // parameters are what they were before quantization existed), whatever rescore was sent.
  if (quantization !== "none") {
    v.quantization = quantization;
    v.rescore = given;
  }
  // 0 or absent: left for the receiver to choose (both stay absent, as before shards existed).
  if (request.shard_number !== undefined && request.shard_number !== 0) {
    v.shard_number = integerIn(
      request.shard_number,
      "shard_number",
      1,
      SHARDS_MAX,
      " (0 lets the router choose)",
    );
  }
  if (request.replication_factor !== undefined && request.replication_factor !== 0) {
    v.replication_factor = integerIn(
      request.replication_factor,
      "replication_factor",
      1,
      REPLICATION_FACTOR_MAX,
      " (0 selects the router's --replication-factor)",
    );
  }
  return v;
}

/**
 * Typed WAL records and their codec. The WAL itself treats payloads as opaque bytes; this module
 * gives them meaning.
 *
 * Every payload starts with the collection name (a `string`, see `src/io/binary.ts`). The empty
 * name means "the collection this log belongs to", which is the default use (one log per
 * collection); a shared log can name the collection in each record instead.
 *
 * | Type | Name              | Payload after the collection name                               |
 * | ---- | ----------------- | --------------------------------------------------------------- |
 * | 1    | PUT (legacy)      | id u32, vector f32Array                                         |
 * | 2    | DELETE (legacy)   | id u32                                                          |
 * | 3    | PUT_BATCH (legacy)| dimension u32, ids u32Array, vectors f32Array (ids × dimension) |
 * | 4    | CREATE_COLLECTION | dimension u32, metric string, m u32, ef_construction u32;       |
 * |      |                   | then, for a quantized or sharded collection only: quantization  |
 * |      |                   | string, rescore u32 ("none" and 0 when not quantized); then,    |
 * |      |                   | for a sharded one only: shard_number u32, replication_factor u32|
 * | 5    | DROP_COLLECTION   | (nothing)                                                       |
 * | 6    | PUT_V             | id u32, version u64, vector f32Array                            |
 * | 7    | DELETE_V          | id u32, version u64                                             |
 * | 8    | PUT_BATCH_V       | dimension u32, ids u32Array, versions, vectors f32Array         |
 * | 9    | COPY              | dimension u32, ids u32Array, versions, deleted bytes (one u8 0/1 |
 * |      |                   | per id), vectors f32Array (live entries only, in order)         |
 * | 10   | FORGET            | ids u32Array, versions                                          |
 * | 11   | PUT_P             | id u32, version u64, vector f32Array, payload bytes             |
 * | 12   | PUT_BATCH_P       | as PUT_BATCH_V, then payloads                                   |
 * | 13   | COPY_P            | as COPY, then payloads (tombstones: empty)                      |
 * | 14   | CREATE_FIELD_INDEX| field string, type string ("keyword", "integer", "float", "bool")|
 * | 15   | DROP_FIELD_INDEX  | field string                                                    |
 * | 16   | PUT_K             | id, version u64, vector f32Array, payload bytes (empty: none)   |
 * | 17   | DELETE_K          | id, version u64                                                 |
 * | 18   | PUT_BATCH_K       | dimension u32, id list, versions, vectors f32Array, payloads    |
 * | 19   | COPY_K            | dimension u32, id list, versions, deleted bytes, vectors        |
 * |      |                   | f32Array (live entries only), payloads (tombstones: empty)      |
 * | 20   | FORGET_K          | id list, versions                                               |
 *
 * `id` is a point id as `writeId` writes it (src/common/point_id.ts: a kind byte, then a u64 or
 * a string of 1 .. ID_STRING_BYTES_MAX bytes); `id list` is a u32 count followed by that many.
 * Types 16 to 20 are written only when some id of the record is not a uint32 (an integer above
 * 2^32 - 1 or a string id); a record whose ids are all uint32 keeps the older type, so logs of
 * collections that use only uint32 ids are byte for byte what earlier versions wrote. They
 * always carry payloads (empty when none), like types 11 to 13.
 *
 * `versions` is a u32 count (equal to the number of ids) followed by one u64 per id. A version
 * is an integer 0 .. 2^53 - 1 (`VERSION_MAX`, src/common/version.ts); see "Versions" in
 * proto/vector_db.proto for what they mean. Types 1 to 3 were written before versions existed:
 * they still decode (as version 0, which a collection applies unconditionally), but the encoder
 * always writes types 6 to 8 for `put`, `delete` and `put_batch` records.
 *
 * `payloads` is a u32 count (equal to the number of ids) followed by one length-prefixed byte
 * string per id: the point's payload as canonical JSON (src/common/payload.ts), at most
 * PAYLOAD_BYTES_MAX bytes; empty means no payload. `payload bytes` is one such string.
 *
 * Types 11 to 13 are written only when some entry of the record has a payload; a record
 * without any keeps the older type (6, 8 or 9), so logs of collections that use no payloads are
 * byte for byte what earlier versions wrote, and those versions can still read them.
 *
 * Types 14 and 15 define and drop payload indexes (src/storage/payload_index.ts); the field is
 * a dotted key of at most FIELD_INDEX_NAME_BYTES_MAX bytes. The collection checks the key and the
 * type before logging; decoding bounds their sizes only, and the collection refuses a bad
 * definition at replay like any other invalid record.
 *
 * A point write (types 1-3, 6-9, 11-13, 16-19) may trail with `shard_number u32`: the
 * router's hint logs write it (the collection's shard count when the write was accepted, sent
 * with the replay so a node with another layout refuses it); a collection's log never does.
 * A hint log holding such records is not readable by routers from before it.
 *
 * CREATE_COLLECTION's quantization fields trail the record and are written only when the
 * quantization is not "none" or shard fields follow them: a float collection's record without
 * shards is byte for byte what earlier versions wrote, and a record without them decodes as
 * "none". The shard fields (written when `shard_number` is set; replication_factor 0 means the
 * router's default) come last; a record without them decodes with both absent.
 *
 * Every field is validated when encoding and again when decoding; decoding also requires that
 * the payload is consumed exactly.
 * @module
 */
import { BinaryFormatError, BinaryReader, BinaryWriter, BufferSink } from "../io/binary.ts";
import { isVersion, VERSION_MAX } from "./version.ts";
import {
  canonicalId,
  formatId,
  isU32Id,
  type PointId,
  readId,
  stringIdProblem,
  writeId,
} from "./point_id.ts";
import { utf8Length } from "./utf8.ts";

/** WAL record type codes (the `type` byte of a WAL record). */
export const RecordType = {
  /** Legacy (unversioned): decoded, never encoded. */
  PUT: 1,
  /** Legacy (unversioned): decoded, never encoded. */
  DELETE: 2,
  /** Legacy (unversioned): decoded, never encoded. */
  PUT_BATCH: 3,
  CREATE_COLLECTION: 4,
  DROP_COLLECTION: 5,
  PUT_V: 6,
  DELETE_V: 7,
  PUT_BATCH_V: 8,
  COPY: 9,
  FORGET: 10,
  PUT_P: 11,
  PUT_BATCH_P: 12,
  COPY_P: 13,
  CREATE_FIELD_INDEX: 14,
  DROP_FIELD_INDEX: 15,
  PUT_K: 16,
  DELETE_K: 17,
  PUT_BATCH_K: 18,
  COPY_K: 19,
  FORGET_K: 20,
} as const;

/** Largest payload index field name in a record (UTF-8 bytes). */
export const FIELD_INDEX_NAME_BYTES_MAX = 1024;

import { DIMENSION_MAX, type Metric, METRICS, PAYLOAD_BYTES_MAX } from "./limits.ts";
import {
  type Quantization,
  QUANTIZATIONS,
  REPLICATION_FACTOR_MAX,
  RESCORE_MAX,
  SHARDS_MAX,
} from "./limits.ts";
export { DIMENSION_MAX, type Metric, METRICS };
/** Largest collection name, in UTF-8 bytes. */
export const COLLECTION_NAME_BYTES_MAX = 255;

/**
 * The ids of a batch record: a Uint32Array when all are uint32 ids (what records of types 1 to
 * 15 hold), else canonical PointIds (src/common/point_id.ts).
 */
export type RecordIds = Uint32Array | readonly PointId[];

/**
 * A typed WAL record. Versions are integers 0 .. VERSION_MAX; 0 only in records decoded from
 * legacy types (or written by a caller that has no version).
 */
export type WalRecord =
  | {
    kind: "put";
    collection?: string;
    id: PointId;
    vector: Float32Array;
    version: number;
    /** Canonical JSON bytes (src/common/payload.ts); null, empty or absent: none. */
    payload?: Uint8Array | null;
    /**
     * The collection's shard count when the router accepted the write (hint logs only, see
     * {@link layoutTrailer}; absent in a collection's own log): sent with the hint's replay,
     * so a node whose collection has another shard count refuses it.
     */
    shard_number?: number;
  }
  | {
    kind: "delete";
    collection?: string;
    id: PointId;
    version: number;
    /**
     * The collection's shard count when the router accepted the write (hint logs only, see
     * {@link layoutTrailer}; absent in a collection's own log): sent with the hint's replay,
     * so a node whose collection has another shard count refuses it.
     */
    shard_number?: number;
  }
  | {
    kind: "put_batch";
    collection?: string;
    dimension: number;
    /** A Uint32Array when every id is a uint32 one (the common, compact case). */
    ids: RecordIds;
    /** Row-major, `ids.length * dimension` values. */
    vectors: Float32Array;
    /** One per id. */
    versions: Float64Array;
    /** One per id, or absent (none has one): canonical JSON bytes; null or empty: none. */
    payloads?: readonly (Uint8Array | null)[];
    /**
     * The collection's shard count when the router accepted the write (hint logs only, see
     * {@link layoutTrailer}; absent in a collection's own log): sent with the hint's replay,
     * so a node whose collection has another shard count refuses it.
     */
    shard_number?: number;
  }
  | {
    /** Entries copied from another node: live points and tombstones, each with its version. */
    kind: "copy";
    collection?: string;
    dimension: number;
    /** A Uint32Array when every id is a uint32 one (the common, compact case). */
    ids: RecordIds;
    /** One per id. */
    versions: Float64Array;
    /** One per id: 1 for a tombstone, 0 for a live point. */
    deleted: Uint8Array;
    /** Row-major vectors of the live entries only, in order: `live count * dimension` values. */
    vectors: Float32Array;
    /** One per id, or absent: a live entry's payload; null or empty: none (always, tombstones). */
    payloads?: readonly (Uint8Array | null)[];
    /**
     * The collection's shard count when the router accepted the write (hint logs only, see
     * {@link layoutTrailer}; absent in a collection's own log): sent with the hint's replay,
     * so a node whose collection has another shard count refuses it.
     */
    shard_number?: number;
  }
  | {
    /** Entries to forget (point or tombstone, no tombstone left), each when held <= version. */
    kind: "forget";
    collection?: string;
    /** A Uint32Array when every id is a uint32 one (the common, compact case). */
    ids: RecordIds;
    /** One per id. */
    versions: Float64Array;
  }
  | {
    kind: "create_collection";
    collection: string;
    dimension: number;
    metric: Metric;
    m: number;
    ef_construction: number;
    /** Absent (or "none"): float vectors only. */
    quantization?: Quantization;
    /** Re-ranking factor of a quantized collection, 1 .. RESCORE_MAX. */
    rescore?: number;
    /** Shards, 1 .. SHARDS_MAX; absent: a collection made before shards (or without a choice). */
    shard_number?: number;
    /** Replicas per shard, 0 .. REPLICATION_FACTOR_MAX (0: the router's default); with shards. */
    replication_factor?: number;
  }
  | { kind: "drop_collection"; collection: string }
  | {
    /** Defines a payload index on `field` (a dotted key) of `type`. */
    kind: "create_field_index";
    collection?: string;
    field: string;
    type: string;
  }
  | { kind: "drop_field_index"; collection?: string; field: string };

/** An encoded record, ready for `Wal.append(type, payload)`. */
export interface EncodedRecord {
  type: number;
  payload: Uint8Array;
}

/** Thrown when a record to encode is invalid. */
export class InvalidRecordError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidRecordError";
  }
}

/** Thrown when a payload does not decode to a valid record. */
export class RecordFormatError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RecordFormatError";
  }
}

const TYPE_NAMES: Record<number, string> = {
  1: "PUT",
  2: "DELETE",
  3: "PUT_BATCH",
  4: "CREATE_COLLECTION",
  5: "DROP_COLLECTION",
  6: "PUT_V",
  7: "DELETE_V",
  8: "PUT_BATCH_V",
  9: "COPY",
  10: "FORGET",
  11: "PUT_P",
  12: "PUT_BATCH_P",
  13: "COPY_P",
  14: "CREATE_FIELD_INDEX",
  15: "DROP_FIELD_INDEX",
  16: "PUT_K",
  17: "DELETE_K",
  18: "PUT_BATCH_K",
  19: "COPY_K",
  20: "FORGET_K",
};

/** The name of a record type code, or `UNKNOWN(<code>)`. */
export function recordTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `UNKNOWN(${type})`;
}

const utf8 = new TextEncoder();

/** Why `id` is not a canonical point id, or null. */
function idProblem(id: PointId): string | null {
  if (typeof id === "number" && Number.isInteger(id) && id >= 0 && id <= 0xffffffff) return null;
  if (typeof id === "string") {
    const bad = stringIdProblem(id);
    return bad === null ? null : `String id ${formatId(id)} ${bad}`;
  }
  try {
    if (canonicalId(id) === id) return null;
  } catch {
    // falls through to the message below
  }
  return `Point id ${String(id)} is not a canonical id (an integer 0 .. 2^64 - 1 or a string)`;
}

/** Why an id list is not valid, or null. */
function idsProblem(ids: RecordIds): string | null {
  if (ids instanceof Uint32Array) return null;
  if (!Array.isArray(ids)) return "Ids must be a Uint32Array or an array of point ids";
  for (let i = 0; i < ids.length; i++) {
    const bad = idProblem(ids[i]);
    if (bad !== null) return `Entry ${i}: ${bad}`;
  }
  return null;
}

/** Whether every id is a uint32 one (then the record keeps its older type). */
function allU32(ids: RecordIds): boolean {
  if (ids instanceof Uint32Array) return true;
  for (let i = 0; i < ids.length; i++) if (!isU32Id(ids[i])) return false;
  return true;
}

/** Bytes `writeId` takes for `id`. */
function idBytes(id: PointId): number {
  return typeof id === "string" ? 1 + 4 + utf8Length(id) : 1 + 8;
}

/** Bytes of an `id list`. */
function idListBytes(ids: RecordIds): number {
  let n = 4;
  for (let i = 0; i < ids.length; i++) n += idBytes(ids[i]);
  return n;
}

function writeIdList(w: BinaryWriter, ids: RecordIds): void {
  w.u32(ids.length);
  for (let i = 0; i < ids.length; i++) writeId(w, ids[i]);
}

/** Smallest encoding of one id (a kind byte, then a string of at least one byte). */
const ID_BYTES_MIN = 1 + 4 + 1;

/** Reads an `id list`, its count bounded by the bytes that remain. */
function readIdList(r: BinaryReader): PointId[] {
  const n = r.u32();
  if (n * ID_BYTES_MIN > r.remaining) {
    throw new BinaryFormatError(
      `${n} ids need ${n * ID_BYTES_MIN}+ bytes but ${r.remaining} remain`,
    );
  }
  const out = new Array<PointId>(n);
  for (let i = 0; i < n; i++) out[i] = readId(r);
  return out;
}

/** A Uint32Array for `ids` when all are uint32 ones (the older record types). */
function u32Ids(ids: RecordIds): Uint32Array {
  return ids instanceof Uint32Array ? ids : Uint32Array.from(ids as number[]);
}
const badDim = (d: number) => !Number.isInteger(d) || d < 1 || d > DIMENSION_MAX;
const nonFinite = (v: Float32Array) => {
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return i;
  return -1;
};
const versionProblem = (v: number, what: string): string | null =>
  isVersion(v) ? null : `Version ${v} of ${what} is not an integer between 0 and ${VERSION_MAX}`;

/** Checks a `versions` array against its ids; returns an error message or null. */
function versionsProblem(ids: RecordIds, versions: Float64Array): string | null {
  if (!(versions instanceof Float64Array)) return "Versions must be a Float64Array";
  if (versions.length !== ids.length) {
    return `${ids.length} ids come with ${versions.length} versions`;
  }
  for (let i = 0; i < versions.length; i++) {
    const bad = versionProblem(versions[i], `entry ${i} (point ${formatId(ids[i])})`);
    if (bad !== null) return bad;
  }
  return null;
}

/** Bytes of a payload; 0 for none. */
const payloadLength = (p: Uint8Array | null | undefined): number => p?.length ?? 0;

/** Whether any entry has a payload (then the record is written as a type 11 to 13). */
function anyPayload(payloads: readonly (Uint8Array | null)[] | undefined): boolean {
  return payloads !== undefined && payloads.some((p) => payloadLength(p) > 0);
}

/** Checks a payload's size; returns an error message or null. */
function payloadProblem(p: Uint8Array | null | undefined, what: string): string | null {
  if (p === null || p === undefined) return null;
  if (!(p instanceof Uint8Array)) return `Payload of ${what} is not a Uint8Array`;
  return p.length > PAYLOAD_BYTES_MAX
    ? `Payload of ${what} is ${p.length} bytes; the limit is ${PAYLOAD_BYTES_MAX}`
    : null;
}

/** Checks a `payloads` array against its ids; returns an error message or null. */
function payloadsProblem(
  ids: RecordIds,
  payloads: readonly (Uint8Array | null)[] | undefined,
  deleted?: Uint8Array,
): string | null {
  if (payloads === undefined) return null;
  if (payloads.length !== ids.length) {
    return `${ids.length} ids come with ${payloads.length} payloads`;
  }
  for (let i = 0; i < payloads.length; i++) {
    const bad = payloadProblem(payloads[i], `entry ${i} (point ${formatId(ids[i])})`);
    if (bad !== null) return bad;
    if (deleted !== undefined && deleted[i] === 1 && payloadLength(payloads[i]) > 0) {
      return `Tombstone entry ${i} (point ${formatId(ids[i])}) has a payload`;
    }
  }
  return null;
}

/** Validates a record; returns an error message or null. Shared by both directions. */
function problem(r: WalRecord): string | null {
  const name = r.collection ?? "";
  if (typeof name !== "string") return `Collection name ${JSON.stringify(name)} is not a string`;
  if (utf8.encode(name).length > COLLECTION_NAME_BYTES_MAX) {
    return `Collection name ${JSON.stringify(name)} is longer than ` +
      `${COLLECTION_NAME_BYTES_MAX} bytes`;
  }
  const shards = layoutTrailer(r);
  if (shards !== undefined && (!Number.isInteger(shards) || shards < 1 || shards > SHARDS_MAX)) {
    return `Shard number ${shards} is outside 1..${SHARDS_MAX}`;
  }
  switch (r.kind) {
    case "put": {
      const badId = idProblem(r.id);
      if (badId !== null) return badId;
      if (badDim(r.vector.length)) {
        return `Vector dimension ${r.vector.length} is outside 1..${DIMENSION_MAX}`;
      }
      const at = nonFinite(r.vector);
      if (at >= 0) return `Vector component ${at} of point ${formatId(r.id)} is ${r.vector[at]}`;
      return versionProblem(r.version, `point ${formatId(r.id)}`) ??
        payloadProblem(r.payload, `point ${formatId(r.id)}`);
    }
    case "delete":
      return idProblem(r.id) ?? versionProblem(r.version, `point ${formatId(r.id)}`);
    case "put_batch": {
      const badIds = idsProblem(r.ids);
      if (badIds !== null) return badIds;
      if (badDim(r.dimension)) return `Dimension ${r.dimension} is outside 1..${DIMENSION_MAX}`;
      if (r.vectors.length !== r.ids.length * r.dimension) {
        return `Batch of ${r.ids.length} ids with dimension ${r.dimension} needs ` +
          `${r.ids.length * r.dimension} values but has ${r.vectors.length}`;
      }
      const at = nonFinite(r.vectors);
      if (at >= 0) return `Batch value ${at} is ${r.vectors[at]}`;
      return versionsProblem(r.ids, r.versions) ?? payloadsProblem(r.ids, r.payloads);
    }
    case "copy": {
      const badIds = idsProblem(r.ids);
      if (badIds !== null) return badIds;
      if (badDim(r.dimension)) return `Dimension ${r.dimension} is outside 1..${DIMENSION_MAX}`;
      const bad = versionsProblem(r.ids, r.versions);
      if (bad !== null) return bad;
      if (r.deleted.length !== r.ids.length) {
        return `${r.ids.length} ids come with ${r.deleted.length} deleted flags`;
      }
      let live = 0;
      for (let i = 0; i < r.deleted.length; i++) {
        if (r.deleted[i] > 1) return `Deleted flag ${r.deleted[i]} of entry ${i} is not 0 or 1`;
        if (r.deleted[i] === 0) live++;
      }
      if (r.vectors.length !== live * r.dimension) {
        return `Copy of ${live} live entries with dimension ${r.dimension} needs ` +
          `${live * r.dimension} values but has ${r.vectors.length}`;
      }
      const at = nonFinite(r.vectors);
      if (at >= 0) return `Copy value ${at} is ${r.vectors[at]}`;
      return payloadsProblem(r.ids, r.payloads, r.deleted);
    }
    case "forget":
      return idsProblem(r.ids) ?? versionsProblem(r.ids, r.versions);
    case "create_collection":
      if (name === "") return "Collection name must not be empty";
      if (badDim(r.dimension)) return `Dimension ${r.dimension} is outside 1..${DIMENSION_MAX}`;
      if (!(METRICS as readonly string[]).includes(r.metric)) {
        return `Metric ${JSON.stringify(r.metric)} is not one of ${METRICS.join(", ")}`;
      }
      if (!Number.isInteger(r.m) || r.m < 2 || r.m > 0xffff) return `M ${r.m} is outside 2..65535`;
      if (
        !Number.isInteger(r.ef_construction) || r.ef_construction < 1 ||
        r.ef_construction > 0xffffff
      ) {
        return `ef_construction ${r.ef_construction} is outside 1..16777215`;
      }
      if (r.quantization !== undefined && r.quantization !== "none") {
        if (!(QUANTIZATIONS as readonly string[]).includes(r.quantization)) {
          return `Quantization ${JSON.stringify(r.quantization)} is not one of ${
            QUANTIZATIONS.join(", ")
          }`;
        }
        const q = r.rescore;
        if (q === undefined || !Number.isInteger(q) || q < 1 || q > RESCORE_MAX) {
          return `Rescore ${q} is outside 1..${RESCORE_MAX}`;
        }
      }
      if (r.shard_number !== undefined) {
        const s = r.shard_number;
        if (!Number.isInteger(s) || s < 1 || s > SHARDS_MAX) {
          return `Shard number ${s} is outside 1..${SHARDS_MAX}`;
        }
        const f = r.replication_factor ?? 0;
        if (!Number.isInteger(f) || f < 0 || f > REPLICATION_FACTOR_MAX) {
          return `Replication factor ${f} is outside 0..${REPLICATION_FACTOR_MAX}`;
        }
      } else if (r.replication_factor !== undefined) {
        return "Replication factor needs a shard number";
      }
      return null;
    case "drop_collection":
      return name === "" ? "Collection name must not be empty" : null;
    case "create_field_index":
      return fieldProblem(r.field) ??
        (typeof r.type === "string" && r.type.length > 0 && r.type.length <= 16
          ? null
          : `Field index type ${JSON.stringify(r.type)} is not a short non-empty string`);
    case "drop_field_index":
      return fieldProblem(r.field);
    default:
      return `Record kind ${JSON.stringify((r as { kind: unknown }).kind)} is unknown`;
  }
}

/** Checks a field index's field name; returns an error message or null. */
function fieldProblem(field: unknown): string | null {
  if (typeof field !== "string" || field.length === 0) {
    return `Field index field ${JSON.stringify(field)} is not a non-empty string`;
  }
  return utf8.encode(field).length > FIELD_INDEX_NAME_BYTES_MAX
    ? `Field index field of ${utf8.encode(field).length} bytes is longer than ` +
      `${FIELD_INDEX_NAME_BYTES_MAX}`
    : null;
}

/** Bytes of a `payloads` section (see the module comment). */
function payloadsBytes(payloads: readonly (Uint8Array | null)[]): number {
  let n = 4;
  for (const p of payloads) n += 4 + payloadLength(p);
  return n;
}

/**
 * The shard count a point write's record trails with (put, delete, put_batch, copy: a u32
 * after every other field, written only when set), or undefined. Hint logs of the router carry
 * it (src/router/hints/replay.ts sends it as the write's `shard_number`); a collection's own
 * log never does, so its records stay byte for byte what earlier versions wrote. Every other
 * field ends with a length-prefixed value, so 4 bytes left after them can only be this one.
 */
function layoutTrailer(r: WalRecord): number | undefined {
  switch (r.kind) {
    case "put":
    case "delete":
    case "put_batch":
    case "copy":
      return r.shard_number;
    default:
      return undefined;
  }
}

function payloadBytes(r: WalRecord): number {
  return bodyBytes(r) + (layoutTrailer(r) !== undefined ? 4 : 0);
}

function bodyBytes(r: WalRecord): number {
  const name = 4 + utf8.encode(r.collection ?? "").length;
  switch (r.kind) {
    case "put":
      if (!isU32Id(r.id)) {
        return name + idBytes(r.id) + 8 + 4 + r.vector.byteLength + 4 + payloadLength(r.payload);
      }
      return name + 4 + 8 + 4 + r.vector.byteLength +
        (payloadLength(r.payload) > 0 ? 4 + payloadLength(r.payload) : 0);
    case "delete":
      return name + (isU32Id(r.id) ? 4 : idBytes(r.id)) + 8;
    case "put_batch":
      if (!allU32(r.ids)) {
        return name + 4 + idListBytes(r.ids) + 4 + 8 * r.versions.length + 4 +
          r.vectors.byteLength + payloadsBytes(r.payloads ?? new Array(r.ids.length).fill(null));
      }
      return name + 4 + 4 + 4 * r.ids.length + 4 + 8 * r.versions.length + 4 +
        r.vectors.byteLength + (anyPayload(r.payloads) ? payloadsBytes(r.payloads!) : 0);
    case "copy":
      if (!allU32(r.ids)) {
        return name + 4 + idListBytes(r.ids) + 4 + 8 * r.versions.length + 4 +
          r.deleted.length + 4 + r.vectors.byteLength +
          payloadsBytes(r.payloads ?? new Array(r.ids.length).fill(null));
      }
      return name + 4 + 4 + 4 * r.ids.length + 4 + 8 * r.versions.length + 4 +
        r.deleted.length + 4 + r.vectors.byteLength +
        (anyPayload(r.payloads) ? payloadsBytes(r.payloads!) : 0);
    case "forget":
      return name + (allU32(r.ids) ? 4 + 4 * r.ids.length : idListBytes(r.ids)) + 4 +
        8 * r.versions.length;
    case "create_collection": {
      const quantized = r.quantization !== undefined && r.quantization !== "none";
      const sharded = r.shard_number !== undefined;
      return name + 4 + 4 + utf8.encode(r.metric).length + 4 + 4 +
        (quantized || sharded ? 4 + utf8.encode(r.quantization ?? "none").length + 4 : 0) +
        (sharded ? 8 : 0);
    }
    case "drop_collection":
      return name;
    case "create_field_index":
      return name + 4 + utf8.encode(r.field).length + 4 + utf8.encode(r.type).length;
    case "drop_field_index":
      return name + 4 + utf8.encode(r.field).length;
  }
}

function writeVersions(w: BinaryWriter, versions: Float64Array): void {
  w.u32(versions.length);
  for (let i = 0; i < versions.length; i++) w.u64(versions[i]);
}

function writePayloads(w: BinaryWriter, payloads: readonly (Uint8Array | null)[]): void {
  w.u32(payloads.length);
  for (const p of payloads) w.bytes(p ?? EMPTY_BYTES);
}

const EMPTY_BYTES = new Uint8Array(0);

/** Reads one payload (`bytes`), bounded before it is copied; null when empty. */
function readPayload(r: BinaryReader): Uint8Array | null {
  const n = r.u32();
  if (n > PAYLOAD_BYTES_MAX) {
    throw new BinaryFormatError(`Payload of ${n} bytes is over the limit of ${PAYLOAD_BYTES_MAX}`);
  }
  return n === 0 ? null : r.raw(n).slice();
}

function readPayloads(r: BinaryReader): (Uint8Array | null)[] {
  const n = r.u32();
  if (n * 4 > r.remaining) {
    throw new BinaryFormatError(`${n} payloads need ${n * 4}+ bytes but ${r.remaining} remain`);
  }
  const out = new Array<Uint8Array | null>(n);
  for (let i = 0; i < n; i++) out[i] = readPayload(r);
  return out;
}

function readVersions(r: BinaryReader): Float64Array {
  const n = r.u32();
  if (n * 8 > r.remaining) {
    throw new BinaryFormatError(`${n} versions need ${n * 8} bytes but ${r.remaining} remain`);
  }
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = r.u64Number();
  return out;
}

/**
 * Encodes a typed record into a WAL record type and payload. `put`, `delete` and `put_batch`
 * always encode as the versioned types (6 to 8).
 */
export function encodeRecord(r: WalRecord): EncodedRecord {
  const bad = problem(r);
  if (bad !== null) throw new InvalidRecordError(bad);
  const size = payloadBytes(r);
  const sink = new BufferSink({ initial_bytes: size, bytes_max: size });
  const w = new BinaryWriter(sink, { buffer_bytes: Math.max(16, size) });
  w.string(r.collection ?? "");
  let type: number;
  switch (r.kind) {
    case "put":
      if (!isU32Id(r.id)) {
        type = RecordType.PUT_K;
        writeId(w, r.id);
        w.u64(r.version);
        w.f32Array(r.vector);
        w.bytes(r.payload ?? EMPTY_BYTES);
        break;
      }
      type = payloadLength(r.payload) > 0 ? RecordType.PUT_P : RecordType.PUT_V;
      w.u32(r.id);
      w.u64(r.version);
      w.f32Array(r.vector);
      if (type === RecordType.PUT_P) w.bytes(r.payload!);
      break;
    case "delete":
      if (!isU32Id(r.id)) {
        type = RecordType.DELETE_K;
        writeId(w, r.id);
        w.u64(r.version);
        break;
      }
      type = RecordType.DELETE_V;
      w.u32(r.id);
      w.u64(r.version);
      break;
    case "put_batch":
      if (!allU32(r.ids)) {
        type = RecordType.PUT_BATCH_K;
        w.u32(r.dimension);
        writeIdList(w, r.ids);
        writeVersions(w, r.versions);
        w.f32Array(r.vectors);
        writePayloads(w, r.payloads ?? new Array(r.ids.length).fill(null));
        break;
      }
      type = anyPayload(r.payloads) ? RecordType.PUT_BATCH_P : RecordType.PUT_BATCH_V;
      w.u32(r.dimension);
      w.u32Array(u32Ids(r.ids));
      writeVersions(w, r.versions);
      w.f32Array(r.vectors);
      if (type === RecordType.PUT_BATCH_P) writePayloads(w, r.payloads!);
      break;
    case "copy":
      if (!allU32(r.ids)) {
        type = RecordType.COPY_K;
        w.u32(r.dimension);
        writeIdList(w, r.ids);
        writeVersions(w, r.versions);
        w.bytes(r.deleted);
        w.f32Array(r.vectors);
        writePayloads(w, r.payloads ?? new Array(r.ids.length).fill(null));
        break;
      }
      type = anyPayload(r.payloads) ? RecordType.COPY_P : RecordType.COPY;
      w.u32(r.dimension);
      w.u32Array(u32Ids(r.ids));
      writeVersions(w, r.versions);
      w.bytes(r.deleted);
      w.f32Array(r.vectors);
      if (type === RecordType.COPY_P) writePayloads(w, r.payloads!);
      break;
    case "forget":
      if (!allU32(r.ids)) {
        type = RecordType.FORGET_K;
        writeIdList(w, r.ids);
        writeVersions(w, r.versions);
        break;
      }
      type = RecordType.FORGET;
      w.u32Array(u32Ids(r.ids));
      writeVersions(w, r.versions);
      break;
    case "create_collection":
      type = RecordType.CREATE_COLLECTION;
      w.u32(r.dimension);
      w.string(r.metric);
      w.u32(r.m);
      w.u32(r.ef_construction);
      if (r.quantization !== undefined && r.quantization !== "none") {
        w.string(r.quantization);
        w.u32(r.rescore!);
      } else if (r.shard_number !== undefined) {
        w.string("none");
        w.u32(0);
      }
      if (r.shard_number !== undefined) {
        w.u32(r.shard_number);
        w.u32(r.replication_factor ?? 0);
      }
      break;
    case "drop_collection":
      type = RecordType.DROP_COLLECTION;
      break;
    case "create_field_index":
      type = RecordType.CREATE_FIELD_INDEX;
      w.string(r.field);
      w.string(r.type);
      break;
    case "drop_field_index":
      type = RecordType.DROP_FIELD_INDEX;
      w.string(r.field);
      break;
  }
  const shards = layoutTrailer(r);
  if (shards !== undefined) w.u32(shards);
  w.flush();
  if (sink.length !== size) {
    throw new Error(
      `Encoded ${recordTypeName(type)} payload is ${sink.length} bytes, expected ${size}`,
    );
  }
  return { type, payload: sink.view() };
}

/** Decodes a WAL record type and payload into a typed record (legacy types: version 0). */
export function decodeRecord(type: number, payload: Uint8Array): WalRecord {
  const r = new BinaryReader(payload);
  let rec: WalRecord;
  try {
    const collection = r.string();
    switch (type) {
      case RecordType.PUT:
        rec = { kind: "put", collection, id: r.u32(), vector: r.f32Array(), version: 0 };
        break;
      case RecordType.DELETE:
        rec = { kind: "delete", collection, id: r.u32(), version: 0 };
        break;
      case RecordType.PUT_BATCH: {
        const dimension = r.u32();
        const ids = r.u32Array();
        const vectors = r.f32Array();
        rec = {
          kind: "put_batch",
          collection,
          dimension,
          ids,
          vectors,
          versions: new Float64Array(ids.length),
        };
        break;
      }
      case RecordType.PUT_V:
      case RecordType.PUT_P: {
        const id = r.u32();
        const version = r.u64Number();
        const vector = r.f32Array();
        rec = { kind: "put", collection, id, vector, version };
        if (type === RecordType.PUT_P) rec.payload = readPayload(r);
        break;
      }
      case RecordType.DELETE_V:
        rec = { kind: "delete", collection, id: r.u32(), version: r.u64Number() };
        break;
      case RecordType.PUT_BATCH_V:
      case RecordType.PUT_BATCH_P: {
        const dimension = r.u32();
        const ids = r.u32Array();
        const versions = readVersions(r);
        const vectors = r.f32Array();
        rec = { kind: "put_batch", collection, dimension, ids, versions, vectors };
        if (type === RecordType.PUT_BATCH_P) rec.payloads = readPayloads(r);
        break;
      }
      case RecordType.COPY:
      case RecordType.COPY_P: {
        const dimension = r.u32();
        const ids = r.u32Array();
        const versions = readVersions(r);
        const deleted = r.bytes();
        rec = {
          kind: "copy",
          collection,
          dimension,
          ids,
          versions,
          deleted,
          vectors: r.f32Array(),
        };
        if (type === RecordType.COPY_P) rec.payloads = readPayloads(r);
        break;
      }
      case RecordType.FORGET: {
        const ids = r.u32Array();
        rec = { kind: "forget", collection, ids, versions: readVersions(r) };
        break;
      }
      case RecordType.PUT_K: {
        const id = readId(r);
        const version = r.u64Number();
        const vector = r.f32Array();
        rec = { kind: "put", collection, id, vector, version, payload: readPayload(r) };
        break;
      }
      case RecordType.DELETE_K:
        rec = { kind: "delete", collection, id: readId(r), version: r.u64Number() };
        break;
      case RecordType.PUT_BATCH_K: {
        const dimension = r.u32();
        const ids = readIdList(r);
        const versions = readVersions(r);
        const vectors = r.f32Array();
        const payloads = readPayloads(r);
        rec = { kind: "put_batch", collection, dimension, ids, versions, vectors, payloads };
        break;
      }
      case RecordType.COPY_K: {
        const dimension = r.u32();
        const ids = readIdList(r);
        const versions = readVersions(r);
        const deleted = r.bytes();
        const vectors = r.f32Array();
        const payloads = readPayloads(r);
        rec = { kind: "copy", collection, dimension, ids, versions, deleted, vectors, payloads };
        break;
      }
      case RecordType.FORGET_K: {
        const ids = readIdList(r);
        rec = { kind: "forget", collection, ids, versions: readVersions(r) };
        break;
      }
      case RecordType.CREATE_COLLECTION: {
        const created: Extract<WalRecord, { kind: "create_collection" }> = {
          kind: "create_collection",
          collection,
          dimension: r.u32(),
          metric: r.string() as Metric,
          m: r.u32(),
          ef_construction: r.u32(),
        };
        if (r.remaining > 0) {
          // Bounded: a quantization name is a few bytes.
          if (r.remaining > 64) {
            throw new BinaryFormatError(`Create record has ${r.remaining} trailing bytes`);
          }
          const quantization = r.string() as Quantization;
          const rescore = r.u32();
          if (quantization !== "none") {
            created.quantization = quantization;
            created.rescore = rescore;
          }
          if (r.remaining > 0) {
            created.shard_number = r.u32();
            created.replication_factor = r.u32();
          }
        }
        rec = created;
        break;
      }
      case RecordType.DROP_COLLECTION:
        rec = { kind: "drop_collection", collection };
        break;
      case RecordType.CREATE_FIELD_INDEX:
        rec = { kind: "create_field_index", collection, field: r.string(), type: r.string() };
        break;
      case RecordType.DROP_FIELD_INDEX:
        rec = { kind: "drop_field_index", collection, field: r.string() };
        break;
      default:
        throw new RecordFormatError(`Record type ${type} is unknown`);
    }
    // A point write's layout trailer (hint logs, see layoutTrailer).
    const k = rec.kind;
    if (r.remaining === 4 && (k === "put" || k === "delete" || k === "put_batch" || k === "copy")) {
      rec.shard_number = r.u32();
    }
    r.expectEnd();
  } catch (e) {
    if (e instanceof RecordFormatError) throw e;
    throw new RecordFormatError(
      `${recordTypeName(type)} payload of ${payload.length} bytes is malformed: ` +
        (e as Error).message,
      { cause: e },
    );
  }
  const bad = problem(rec);
  if (bad !== null) throw new RecordFormatError(`Decoded ${recordTypeName(type)} record: ${bad}`);
  return rec;
}

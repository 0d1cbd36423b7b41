/**
 * Typed WAL records and their codec. The WAL itself treats payloads as opaque bytes; this module
 * gives them meaning.
 *
 * Every payload starts with the collection name (a `string`, see `src/io/binary.ts`). The empty
 * name means "the collection this log belongs to", which is the default use (one log per
 * collection); a shared log can name the collection in each record instead.
 *
 * | Type | Name              | Payload after the collection name                              |
 * | ---- | ----------------- | -------------------------------------------------------------- |
 * | 1    | PUT               | id u32, vector f32Array                                        |
 * | 2    | DELETE            | id u32                                                         |
 * | 3    | PUT_BATCH         | dimension u32, ids u32Array, vectors f32Array (ids × dimension)|
 * | 4    | CREATE_COLLECTION | dimension u32, metric string, m u32, ef_construction u32       |
 * | 5    | DROP_COLLECTION   | (nothing)                                                      |
 *
 * Every field is validated when encoding and again when decoding; decoding also requires that
 * the payload is consumed exactly.
 * @module
 */
import { BinaryReader, BinaryWriter, BufferSink } from "../io/binary.ts";

/** WAL record type codes (the `type` byte of a WAL record). */
export const RecordType = {
  PUT: 1,
  DELETE: 2,
  PUT_BATCH: 3,
  CREATE_COLLECTION: 4,
  DROP_COLLECTION: 5,
} as const;

/** Distance metrics a collection can be created with. */
export const METRICS = ["l2", "cosine", "dot"] as const;
export type Metric = typeof METRICS[number];

/** Largest vector dimension a record may carry. */
export const DIMENSION_MAX = 65536;
/** Largest collection name, in UTF-8 bytes. */
export const COLLECTION_NAME_BYTES_MAX = 255;

export type WalRecord =
  | { kind: "put"; collection?: string; id: number; vector: Float32Array }
  | { kind: "delete"; collection?: string; id: number }
  | {
    kind: "put_batch";
    collection?: string;
    dimension: number;
    ids: Uint32Array;
    /** Row-major, `ids.length * dimension` values. */
    vectors: Float32Array;
  }
  | {
    kind: "create_collection";
    collection: string;
    dimension: number;
    metric: Metric;
    m: number;
    ef_construction: number;
  }
  | { kind: "drop_collection"; collection: string };

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
};

/** The name of a record type code, or `UNKNOWN(<code>)`. */
export function recordTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `UNKNOWN(${type})`;
}

const utf8 = new TextEncoder();

/** Validates a record; returns an error message or null. Shared by both directions. */
function problem(r: WalRecord): string | null {
  const name = r.collection ?? "";
  if (typeof name !== "string") return `Collection name ${JSON.stringify(name)} is not a string`;
  if (utf8.encode(name).length > COLLECTION_NAME_BYTES_MAX) {
    return `Collection name ${JSON.stringify(name)} is longer than ` +
      `${COLLECTION_NAME_BYTES_MAX} bytes`;
  }
  const badId = (id: number) => !Number.isInteger(id) || id < 0 || id > 0xffffffff;
  const badDim = (d: number) => !Number.isInteger(d) || d < 1 || d > DIMENSION_MAX;
  const nonFinite = (v: Float32Array) => {
    for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return i;
    return -1;
  };
  switch (r.kind) {
    case "put": {
      if (badId(r.id)) return `Point id ${r.id} is not an unsigned 32-bit integer`;
      if (badDim(r.vector.length)) {
        return `Vector dimension ${r.vector.length} is outside 1..${DIMENSION_MAX}`;
      }
      const at = nonFinite(r.vector);
      if (at >= 0) return `Vector component ${at} of point ${r.id} is ${r.vector[at]}`;
      return null;
    }
    case "delete":
      return badId(r.id) ? `Point id ${r.id} is not an unsigned 32-bit integer` : null;
    case "put_batch": {
      if (badDim(r.dimension)) return `Dimension ${r.dimension} is outside 1..${DIMENSION_MAX}`;
      if (r.vectors.length !== r.ids.length * r.dimension) {
        return `Batch of ${r.ids.length} ids with dimension ${r.dimension} needs ` +
          `${r.ids.length * r.dimension} values but has ${r.vectors.length}`;
      }
      const at = nonFinite(r.vectors);
      if (at >= 0) return `Batch value ${at} is ${r.vectors[at]}`;
      return null;
    }
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
      return null;
    case "drop_collection":
      return name === "" ? "Collection name must not be empty" : null;
    default:
      return `Record kind ${JSON.stringify((r as { kind: unknown }).kind)} is unknown`;
  }
}

function payloadBytes(r: WalRecord): number {
  const name = 4 + utf8.encode(r.collection ?? "").length;
  switch (r.kind) {
    case "put":
      return name + 4 + 4 + r.vector.byteLength;
    case "delete":
      return name + 4;
    case "put_batch":
      return name + 4 + 4 + r.ids.byteLength + 4 + r.vectors.byteLength;
    case "create_collection":
      return name + 4 + 4 + utf8.encode(r.metric).length + 4 + 4;
    case "drop_collection":
      return name;
  }
}

/** Encodes a typed record into a WAL record type and payload. */
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
      type = RecordType.PUT;
      w.u32(r.id);
      w.f32Array(r.vector);
      break;
    case "delete":
      type = RecordType.DELETE;
      w.u32(r.id);
      break;
    case "put_batch":
      type = RecordType.PUT_BATCH;
      w.u32(r.dimension);
      w.u32Array(r.ids);
      w.f32Array(r.vectors);
      break;
    case "create_collection":
      type = RecordType.CREATE_COLLECTION;
      w.u32(r.dimension);
      w.string(r.metric);
      w.u32(r.m);
      w.u32(r.ef_construction);
      break;
    case "drop_collection":
      type = RecordType.DROP_COLLECTION;
      break;
  }
  w.flush();
  if (sink.length !== size) {
    throw new Error(
      `Encoded ${recordTypeName(type)} payload is ${sink.length} bytes, expected ${size}`,
    );
  }
  return { type, payload: sink.view() };
}

/** Decodes a WAL record type and payload into a typed record. */
export function decodeRecord(type: number, payload: Uint8Array): WalRecord {
  const r = new BinaryReader(payload);
  let rec: WalRecord;
  try {
    const collection = r.string();
    switch (type) {
      case RecordType.PUT:
        rec = { kind: "put", collection, id: r.u32(), vector: r.f32Array() };
        break;
      case RecordType.DELETE:
        rec = { kind: "delete", collection, id: r.u32() };
        break;
      case RecordType.PUT_BATCH:
        rec = {
          kind: "put_batch",
          collection,
          dimension: r.u32(),
          ids: r.u32Array(),
          vectors: r.f32Array(),
        };
        break;
      case RecordType.CREATE_COLLECTION:
        rec = {
          kind: "create_collection",
          collection,
          dimension: r.u32(),
          metric: r.string() as Metric,
          m: r.u32(),
          ef_construction: r.u32(),
        };
        break;
      case RecordType.DROP_COLLECTION:
        rec = { kind: "drop_collection", collection };
        break;
      default:
        throw new RecordFormatError(`Record type ${type} is unknown`);
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

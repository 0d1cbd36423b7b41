/**
 * Validation of the point-reading requests SearchBatch, Scroll and Count (proto/vector_db.proto),
 * shared by storage nodes and the router so a request is refused with the same message wherever
 * it enters, and the Scroll cursor format.
 *
 * **Scroll cursor.** Opaque to clients; today it names the last id a page listed. Its format
 * carries a version prefix so that a later kind of id (strings, say) gets its own prefix and
 * both can be told apart:
 *
 * | cursor        | meaning                                                 |
 * |---------------|---------------------------------------------------------|
 * | `""`          | from the start                                          |
 * | `v1:<id>`     | points with ids above `<id>` (decimal uint64, no sign, no leading zeros) |
 * | `v1s:<json>`  | points with ids above the string id `<json>` (a JSON string literal)     |
 *
 * Anything else is INVALID_ARGUMENT naming `cursor` and the value (shortened when long).
 *
 * @module
 */
import {
  canonicalId,
  ID_INTEGER_MAX,
  ID_STRING_BYTES_MAX,
  idToWire,
  type PointId,
  stringIdProblem,
} from "../common/point_id.ts";
import type { Filter } from "../common/filter.ts";
import type { PointRecord } from "./proto.ts";
import { type Consistency, FILTER_KEY_CHARS_MAX, PAYLOAD_FIELD_TYPES } from "../common/limits.ts";
import {
  BATCH_POINTS_MAX,
  GET_BATCH_MAX,
  SCROLL_LIMIT_DEFAULT,
  SCROLL_LIMIT_MAX,
  SEARCH_BATCH_MAX,
} from "../common/limits.ts";
import {
  filterJson,
  quote,
  resolveCollection,
  validateConsistency,
  validateEf,
  validateFilter,
  validateFlag,
  validateK,
  validatePointIds,
  validateVectorOrBytes,
  validateVersionFromOutside,
  ValidationError,
  type ValidSearch,
} from "./validate.ts";

/** Prefix of a cursor that holds a uint32 id (format version 1). */
export const CURSOR_PREFIX_V1 = "v1:";

/** Longest cursor quoted whole in an error message; longer ones are cut. */
const CURSOR_QUOTE_CHARS_MAX = 64;

/** Prefix of a cursor that holds a string id. */
export const CURSOR_PREFIX_V1_STRING = "v1s:";

/** The cursor that continues after `id` (the last id of a page). */
export function encodeCursor(id: PointId): string {
  const canonical = canonicalId(id, "cursor id");
  if (typeof canonical === "string") return CURSOR_PREFIX_V1_STRING + JSON.stringify(canonical);
  return CURSOR_PREFIX_V1 + canonical.toString();
}

/** A cursor quoted for an error message, cut to {@link CURSOR_QUOTE_CHARS_MAX} characters. */
function quoteCursor(cursor: string): string {
  if (cursor.length <= CURSOR_QUOTE_CHARS_MAX) return JSON.stringify(cursor);
  return `${JSON.stringify(cursor.slice(0, CURSOR_QUOTE_CHARS_MAX))}... (${cursor.length} ` +
    `characters)`;
}

/**
 * The id a cursor continues after; null for "" (from the start). Throws a ValidationError
 * naming `field` and the value for anything this module did not make.
 */
export function decodeCursor(cursor: unknown, field = "cursor"): PointId | null {
  if (cursor === undefined || cursor === null || cursor === "") return null;
  if (typeof cursor !== "string") {
    throw new ValidationError(field, cursor, `${field} must be a string`);
  }
  const bad = () =>
    new ValidationError(
      field,
      cursor,
      `${field} ${quoteCursor(cursor)} is not a cursor this server handed out ` +
        `(pass "" to start, then each answer's next_cursor)`,
    );
  if (cursor.startsWith(CURSOR_PREFIX_V1_STRING)) {
    // Bounded before parsing: a quoted id of 128 bytes takes at most 6 characters per byte.
    if (cursor.length > CURSOR_PREFIX_V1_STRING.length + 2 + 6 * ID_STRING_BYTES_MAX) throw bad();
    let s: unknown;
    try {
      s = JSON.parse(cursor.slice(CURSOR_PREFIX_V1_STRING.length));
    } catch {
      throw bad();
    }
    if (typeof s !== "string" || stringIdProblem(s) !== null) throw bad();
    return s;
  }
  if (!cursor.startsWith(CURSOR_PREFIX_V1)) throw bad();
  const digits = cursor.slice(CURSOR_PREFIX_V1.length);
  if (!/^(0|[1-9][0-9]{0,19})$/.test(digits)) throw bad();
  const big = BigInt(digits);
  if (big > ID_INTEGER_MAX) throw bad();
  return canonicalId(big);
}

/** A validated ScrollRequest. */
export interface ValidScroll {
  collection: string;
  /** 1 .. SCROLL_LIMIT_MAX (0 in the request: the default). */
  limit: number;
  /** List ids above this one (`compareIds` order); null: from the start. */
  after: PointId | null;
  with_vector: boolean;
  /** Only points matching it; null: every point. */
  filter: Filter | null;
  with_payload: boolean;
}

/** Validates a ScrollRequest and fills in the default limit. */
export function validateScrollRequest(request: {
  collection?: unknown;
  limit?: unknown;
  cursor?: unknown;
  with_vector?: unknown;
  filter?: unknown;
  with_payload?: unknown;
}): ValidScroll {
  const collection = resolveCollection(request.collection);
  const raw = request.limit ?? 0;
  if (typeof raw !== "number" || !Number.isInteger(raw) || raw < 0 || raw > SCROLL_LIMIT_MAX) {
    throw new ValidationError(
      "limit",
      raw,
      `limit ${JSON.stringify(raw)} must be between 1 and ${SCROLL_LIMIT_MAX} ` +
        `(0 selects ${SCROLL_LIMIT_DEFAULT})`,
    );
  }
  const with_vector = request.with_vector ?? false;
  if (typeof with_vector !== "boolean") {
    throw new ValidationError(
      "with_vector",
      with_vector,
      `with_vector ${JSON.stringify(with_vector)} must be true or false`,
    );
  }
  return {
    collection,
    limit: raw === 0 ? SCROLL_LIMIT_DEFAULT : raw,
    after: decodeCursor(request.cursor),
    with_vector,
    filter: validateFilter(request.filter, "filter"),
    with_payload: validateFlag(request.with_payload, "with_payload"),
  };
}

/** Validates a CountRequest: the collection name and the filter (null: count every point). */
export function validateCountRequest(
  request: { collection?: unknown; filter?: unknown },
): { collection: string; filter: Filter | null } {
  return {
    collection: resolveCollection(request.collection),
    filter: validateFilter(request.filter, "filter"),
  };
}

/** A field name of CreateFieldIndex / DropFieldIndex: a non-empty string, bounded. */
function validateFieldName(value: unknown, field = "field"): string {
  if (typeof value !== "string" || value.length === 0) {
    throw new ValidationError(
      field,
      value,
      `${field} ${quote(value)} must be a non-empty dotted key`,
    );
  }
  if (value.length > FILTER_KEY_CHARS_MAX) {
    throw new ValidationError(
      field,
      value,
      `${field} of ${value.length} characters is longer than ${FILTER_KEY_CHARS_MAX}`,
    );
  }
  return value;
}

/** Validates a CreateFieldIndexRequest: a field name and one of the index types. */
export function validateCreateFieldIndexRequest(
  request: { collection?: unknown; field?: unknown; type?: unknown },
): { collection: string; field: string; type: string } {
  const type = request.type ?? "";
  if (!(PAYLOAD_FIELD_TYPES as readonly unknown[]).includes(type)) {
    throw new ValidationError(
      "type",
      type,
      `type ${quote(type)} must be one of ${PAYLOAD_FIELD_TYPES.map((t) => `"${t}"`).join(", ")}`,
    );
  }
  return {
    collection: resolveCollection(request.collection),
    field: validateFieldName(request.field),
    type: type as string,
  };
}

/** Validates a DropFieldIndexRequest. */
export function validateDropFieldIndexRequest(
  request: { collection?: unknown; field?: unknown },
): { collection: string; field: string } {
  return {
    collection: resolveCollection(request.collection),
    field: validateFieldName(request.field),
  };
}

/** Validates a GetBatchRequest: 1 .. GET_BATCH_MAX ids. */
/** GetBatch's answer for an id that was never written (or whose collection is absent). */
export function missingRecord(id: PointId): PointRecord {
  return { ...idToWire(id), found: false, vector: [], payload: "", version: "0", deleted: false };
}

export function validateGetBatchRequest(request: {
  collection?: unknown;
  ids?: unknown;
  string_ids?: unknown;
  with_vector?: unknown;
  with_payload?: unknown;
}): { collection: string; ids: PointId[]; with_vector: boolean; with_payload: boolean } {
  return {
    collection: resolveCollection(request.collection),
    ids: validatePointIds(request.ids, request.string_ids, GET_BATCH_MAX),
    with_vector: validateFlag(request.with_vector, "with_vector"),
    with_payload: validateFlag(request.with_payload, "with_payload"),
  };
}

/** Validates a DeleteBatchRequest: 1 .. BATCH_POINTS_MAX ids. */
export function validateDeleteBatchRequest(request: {
  collection?: unknown;
  ids?: unknown;
  string_ids?: unknown;
  consistency?: unknown;
  version?: unknown;
}): { collection: string; ids: PointId[]; consistency: Consistency | undefined; version: number } {
  return {
    collection: resolveCollection(request.collection),
    ids: validatePointIds(request.ids, request.string_ids, BATCH_POINTS_MAX),
    consistency: validateConsistency(request.consistency),
    version: validateVersionFromOutside(request.version),
  };
}

/** Validates a DeleteByFilterRequest: the filter is required and must have a condition. */
export function validateDeleteByFilterRequest(request: {
  collection?: unknown;
  filter?: unknown;
  consistency?: unknown;
  version?: unknown;
}): {
  collection: string;
  filter: Filter;
  /** The filter's JSON text as sent (a router passes it on to the nodes). */
  filter_json: string;
  consistency: Consistency | undefined;
  version: number;
} {
  const filter = validateFilter(request.filter, "filter");
  if (filter === null) {
    throw new ValidationError(
      "filter",
      request.filter,
      `filter ${
        JSON.stringify(String(request.filter ?? "").slice(0, 64))
      } is required and must have at least one condition (DeleteByFilter never deletes every ` +
        "point; drop the collection for that)",
    );
  }
  return {
    collection: resolveCollection(request.collection),
    filter,
    filter_json: filterJson(request.filter, filter),
    consistency: validateConsistency(request.consistency),
    version: validateVersionFromOutside(request.version),
  };
}

/**
 * Validates every search of a SearchBatchRequest (1 .. SEARCH_BATCH_MAX) before any runs;
 * errors name the search: `searches[3].k`. Also checks that a non-zero ef is at least k.
 */
export function validateSearchBatchRequest(request: { searches?: unknown }): ValidSearch[] {
  const list = request.searches ?? [];
  if (!Array.isArray(list)) {
    throw new ValidationError("searches", list, "searches must be an array");
  }
  if (list.length < 1 || list.length > SEARCH_BATCH_MAX) {
    throw new ValidationError(
      "searches",
      list.length,
      `searches has ${list.length} entries; it must have 1 to ${SEARCH_BATCH_MAX}`,
    );
  }
  return list.map((raw, i) => {
    const at = `searches[${i}]`;
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
      throw new ValidationError(at, raw, `${at} is not a search`);
    }
    const s = raw as {
      vector?: unknown;
      vector_bytes?: unknown;
      k?: unknown;
      ef?: unknown;
      collection?: unknown;
      with_payload?: unknown;
      with_vector?: unknown;
      filter?: unknown;
    };
    const v: ValidSearch = {
      vector: validateVectorOrBytes(s.vector, s.vector_bytes, `${at}.vector`),
      k: validateK(s.k, `${at}.k`),
      ef: validateEf(s.ef, `${at}.ef`),
      collection: resolveCollection(s.collection, `${at}.collection`),
      with_payload: validateFlag(s.with_payload, `${at}.with_payload`),
      with_vector: validateFlag(s.with_vector, `${at}.with_vector`),
      filter: validateFilter(s.filter, `${at}.filter`),
    };
    checkEfAtLeastK(v, `${at}.ef`);
    return v;
  });
}

/** A non-zero ef below k is INVALID_ARGUMENT (as a storage node's Search answers). */
export function checkEfAtLeastK(v: { k: number; ef: number }, field = "ef"): void {
  if (v.ef !== 0 && v.ef < v.k) {
    throw new ValidationError(field, v.ef, `${field} ${v.ef} must be at least k ${v.k} (or 0)`);
  }
}

/** A validated GetBatch. */
export type ValidGetBatch = ReturnType<typeof validateGetBatchRequest>;
/** A validated DeleteBatch (version 0: the receiver stamps one). */
export type ValidDeleteBatch = ReturnType<typeof validateDeleteBatchRequest>;
/** A validated DeleteByFilter. */
export type ValidDeleteByFilter = ReturnType<typeof validateDeleteByFilterRequest>;
/** A validated CreateFieldIndex, or a DropFieldIndex (no type). */
export type ValidFieldIndex = { collection: string; field: string; type?: string };

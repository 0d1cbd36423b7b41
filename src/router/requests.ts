/**
 * The router's checks of the filter-bearing and many-id requests (Search/SearchBatch/Scroll/Count
 * `filter`, Scroll `with_payload`, CreateFieldIndex, DropFieldIndex, GetBatch, DeleteBatch,
 * DeleteByFilter), on top of the shared validators of api/validate.ts and api/points_read.ts.
 * Everything is checked before any node is called, so a malformed filter is INVALID_ARGUMENT
 * naming its JSON path (`filter.must[1].range.gt`) and no node sees the request.
 *
 * | request        | checked here                                                     |
 * | -------------- | ---------------------------------------------------------------- |
 * | filter         | "" / absent (none) or JSON text parseFilter accepts               |
 * | field index    | field: 1 .. 256 characters; type: keyword, integer, float, bool   |
 * | GetBatch       | 1 .. GET_BATCH_MAX ids                                            |
 * | DeleteBatch    | 1 .. BATCH_POINTS_MAX ids; consistency; version                   |
 * | DeleteByFilter | a filter with at least one condition; consistency; version        |
 *
 * @module
 */
import { BATCH_POINTS_MAX, type Consistency, GET_BATCH_MAX } from "../common/limits.ts";
import { FilterError, isEmptyFilter, parseFilter } from "../common/filter.ts";
import {
  quote,
  resolveCollection,
  validateConsistency,
  validateFlag,
  validateId,
  validateVersionFromOutside,
  ValidationError,
} from "../api/validate.ts";

/** The payload index types. */
export const FIELD_INDEX_TYPES = ["keyword", "integer", "float", "bool"] as const;
/** Longest indexed field name, in characters. */
export const FIELD_NAME_CHARS_MAX = 256;

/**
 * A filter field: "" or absent gives "" (no filter); otherwise the text must parse
 * (common/filter.ts) and is returned as it came, for the nodes. A FilterError becomes a
 * ValidationError naming the bad part's path.
 */
export function validateFilterText(raw: unknown, field = "filter"): string {
  if (raw === undefined || raw === null || raw === "") return "";
  if (typeof raw !== "string") {
    throw new ValidationError(field, raw, `${field} must be a string of JSON text`);
  }
  try {
    parseFilter(raw, field);
  } catch (e) {
    if (e instanceof FilterError) throw new ValidationError(e.path, raw, e.message);
    throw e;
  }
  return raw;
}

/** A validated CreateFieldIndex / DropFieldIndex (`type` "" for a drop). */
export interface ValidFieldIndex {
  collection: string;
  field: string;
  type: string;
}

/** Validates the field (and for a creation, the type) of a field index request. */
export function validateFieldIndexRequest(
  r: { collection?: unknown; field?: unknown; type?: unknown },
  create: boolean,
): ValidFieldIndex {
  const collection = resolveCollection(r.collection);
  const field = r.field;
  if (typeof field !== "string" || field === "" || field.length > FIELD_NAME_CHARS_MAX) {
    throw new ValidationError(
      "field",
      field,
      `field ${quote(field)} must be a dotted payload key of 1 to ${FIELD_NAME_CHARS_MAX} ` +
        `characters`,
    );
  }
  if (!create) return { collection, field, type: "" };
  if (!(FIELD_INDEX_TYPES as readonly unknown[]).includes(r.type)) {
    throw new ValidationError(
      "type",
      r.type,
      `type ${quote(r.type)} must be one of ${FIELD_INDEX_TYPES.map((t) => `"${t}"`).join(", ")}`,
    );
  }
  return { collection, field, type: r.type as string };
}

/** Checks a list of ids: 1 .. `max` uint32 ids; errors name `ids[i]`. */
function validateIds(raw: unknown, max: number): number[] {
  if (!Array.isArray(raw)) throw new ValidationError("ids", raw, "ids must be a list of ids");
  if (raw.length < 1 || raw.length > max) {
    throw new ValidationError(
      "ids",
      raw.length,
      `ids has ${raw.length} entries; it must have 1 to ${max}`,
    );
  }
  return raw.map((id, i) => validateId(id, `ids[${i}]`));
}

/** A validated GetBatch. */
export interface ValidGetBatch {
  collection: string;
  ids: number[];
  with_vector: boolean;
  with_payload: boolean;
}

/** Validates a GetBatchRequest. */
export function validateGetBatchRequest(r: {
  collection?: unknown;
  ids?: unknown;
  with_vector?: unknown;
  with_payload?: unknown;
}): ValidGetBatch {
  return {
    collection: resolveCollection(r.collection),
    ids: validateIds(r.ids ?? [], GET_BATCH_MAX),
    with_vector: validateFlag(r.with_vector, "with_vector"),
    with_payload: validateFlag(r.with_payload, "with_payload"),
  };
}

/** A validated DeleteBatch. */
export interface ValidDeleteBatch {
  collection: string;
  ids: number[];
  consistency: Consistency | undefined;
  /** 0: the router stamps one. */
  version: number;
}

/** Validates a DeleteBatchRequest. */
export function validateDeleteBatchRequest(r: {
  collection?: unknown;
  ids?: unknown;
  consistency?: unknown;
  version?: unknown;
}): ValidDeleteBatch {
  return {
    collection: resolveCollection(r.collection),
    ids: validateIds(r.ids ?? [], BATCH_POINTS_MAX),
    consistency: validateConsistency(r.consistency),
    version: validateVersionFromOutside(r.version),
  };
}

/** A validated DeleteByFilter. */
export interface ValidDeleteByFilter {
  collection: string;
  filter: string;
  consistency: Consistency | undefined;
  version: number;
}

/** Validates a DeleteByFilterRequest: the filter is required and must have a condition. */
export function validateDeleteByFilterRequest(r: {
  collection?: unknown;
  filter?: unknown;
  consistency?: unknown;
  version?: unknown;
}): ValidDeleteByFilter {
  const filter = validateFilterText(r.filter);
  if (filter === "" || isEmptyFilter(parseFilter(filter))) {
    throw new ValidationError(
      "filter",
      r.filter,
      "filter must have at least one condition (DeleteByFilter never deletes every point; " +
        "drop the collection for that)",
    );
  }
  return {
    collection: resolveCollection(r.collection),
    filter,
    consistency: validateConsistency(r.consistency),
    version: validateVersionFromOutside(r.version),
  };
}

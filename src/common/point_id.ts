/**
 * Point ids: an unsigned 64-bit integer or a short string (see "Ids" in proto/vector_db.proto).
 *
 * In memory an id is a `PointId` in its canonical form, so that `===`, `Map` keys and `Set`
 * members compare ids by value without any wrapper object:
 *
 * | Id                                 | Canonical JS value              |
 * | ---------------------------------- | ------------------------------- |
 * | integer 0 .. 2^53 - 1              | `number` (a safe integer)       |
 * | integer 2^53 .. 2^64 - 1           | `bigint`                        |
 * | string, 1 .. 128 bytes of UTF-8    | `string` (well formed, no NUL)  |
 *
 * A `bigint` below 2^53 is never canonical (`canonicalId` turns it into a number), so the
 * integer 5 is always `5`, never `5n`. The string "5" is a different id from the integer 5.
 *
 * On the wire (proto-loader with `longs: String`) an id is the pair (`id`, `string_id`): a
 * non-empty `string_id` is the id and `id` must be 0; otherwise `id` (a decimal string or a
 * number) is. Binary records (WAL, snapshots) use `writeId`/`readId`:
 *
 * | Kind byte | Then                                   |
 * | --------- | -------------------------------------- |
 * | 0         | u64: the integer id                    |
 * | 1         | string (u32 length, UTF-8), 1 .. 128 B |
 *
 * Order (`compareIds`): every integer before every string; integers by value; strings by UTF-16
 * code units (JavaScript's `<`), which every process of the cluster computes the same way.
 *
 * @example
 * ```ts
 * import { canonicalId, compareIds, idFromWire, idToWire } from "./point_id.ts";
 * console.log(idFromWire("18446744073709551615", "")); // 18446744073709551615n
 * console.log(idFromWire("0", "doc-7")); // "doc-7"
 * console.log(canonicalId(5n)); // 5
 * console.log(idToWire("doc-7")); // { id: 0, string_id: "doc-7" }
 * console.log([3, "a", 1].sort(compareIds)); // [1, 3, "a"]
 * ```
 * @module
 */
import type { BinaryReader, BinaryWriter } from "../io/binary.ts";
import { BinaryFormatError } from "../io/binary.ts";
import { utf8Length } from "./utf8.ts";

/** A point id in canonical form (see the module comment). */
export type PointId = number | bigint | string;

/** Longest string id, in UTF-8 bytes. */
export const ID_STRING_BYTES_MAX = 128;

/** Largest integer id: 2^64 - 1. */
export const ID_INTEGER_MAX = 0xffff_ffff_ffff_ffffn;

/** Largest id held as a JS number: 2^53 - 1. */
const SAFE_MAX = Number.MAX_SAFE_INTEGER;

/** Largest id of the uint32 era (ids that need no mapping and keep their old ring hash). */
export const ID_U32_MAX = 0xffff_ffff;

/** Kind bytes of `writeId`. */
const KIND_INTEGER = 0;
const KIND_STRING = 1;

/**
 * An id that is not valid where it was given. `field` is the request field (e.g.
 * `points[3].string_id`), `value` the offending value as text (shortened), so servers answer
 * INVALID_ARGUMENT with `message` as is.
 */
export class PointIdError extends RangeError {
  constructor(readonly field: string, readonly value: string, reason: string) {
    super(`${field} ${value} ${reason}`);
    this.name = "PointIdError";
  }
}

/** Shortens `s` for an error message (quotes it as JSON). */
function quote(s: string): string {
  const text = JSON.stringify(s.length > 64 ? `${s.slice(0, 61)}...` : s);
  return text;
}

/** Shows any value in an error message. */
function show(value: unknown): string {
  if (typeof value === "string") return quote(value);
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") return String(value);
  try {
    const text = JSON.stringify(value) ?? String(value);
    return text.length > 64 ? `${text.slice(0, 61)}...` : text;
  } catch {
    return String(value);
  }
}

/** Why `s` is not a valid string id, or null when it is. */
export function stringIdProblem(s: string): string | null {
  if (s.length === 0) return "is empty";
  if (s.length > ID_STRING_BYTES_MAX) {
    return `is over ${ID_STRING_BYTES_MAX} bytes of UTF-8 (${utf8Length(s)})`;
  }
  if (!s.isWellFormed()) return "is not well-formed UTF-16 (a lone surrogate)";
  if (s.includes("\u0000")) return "contains U+0000";
  const bytes = utf8Length(s);
  if (bytes > ID_STRING_BYTES_MAX) {
    return `is over ${ID_STRING_BYTES_MAX} bytes of UTF-8 (${bytes})`;
  }
  return null;
}

/** Checks a string id (`field` names it in the error). */
export function validateStringId(s: string, field = "string_id"): string {
  const problem = stringIdProblem(s);
  if (problem !== null) throw new PointIdError(field, quote(s), problem);
  return s;
}

/**
 * The canonical form of an id given as a number, bigint or string (as the typed client and
 * JSON interfaces accept). Throws PointIdError naming `field` when it is not a valid id: a
 * number must be a non-negative safe integer, a bigint in 0 .. 2^64 - 1.
 */
export function canonicalId(value: unknown, field = "id"): PointId {
  if (typeof value === "number") {
    if (Number.isInteger(value) && value >= 0 && value <= SAFE_MAX) return value;
    if (Number.isInteger(value) && value > SAFE_MAX && value < 2 ** 64) {
      throw new PointIdError(
        field,
        show(value),
        `is above 2^53 - 1 (${SAFE_MAX}): a number that large has lost precision; ` +
          `give it as a bigint (typed client) or through gRPC`,
      );
    }
    throw new PointIdError(field, show(value), "is not an integer between 0 and 2^64 - 1");
  }
  if (typeof value === "bigint") {
    if (value < 0n || value > ID_INTEGER_MAX) {
      throw new PointIdError(field, show(value), "is not an integer between 0 and 2^64 - 1");
    }
    return value <= BigInt(SAFE_MAX) ? Number(value) : value;
  }
  if (typeof value === "string") return validateStringId(value, field);
  throw new PointIdError(field, show(value), "is not an id (an integer or a string)");
}

/** Parses a decimal uint64 as proto-loader (`longs: String`) hands it over. */
function integerFromDecimal(text: string, field: string): PointId {
  if (!/^[0-9]{1,20}$/.test(text)) {
    throw new PointIdError(field, show(text), "is not an integer between 0 and 2^64 - 1");
  }
  if (text.length < 16) return Number(text); // below 10^15: exact as a number
  return canonicalId(BigInt(text), field);
}

/**
 * The id named by a message's (`id`, `string_id`) pair (see "Ids" in proto/vector_db.proto).
 * `id` may be a decimal string (as proto-loader decodes uint64), a number or a bigint; absent
 * or "" counts as 0. `field` prefixes the field names in errors (`points[3].` → `points[3].id`).
 */
export function idFromWire(id: unknown, stringId: unknown, prefix = ""): PointId {
  const sid = stringId ?? "";
  if (typeof sid !== "string") {
    throw new PointIdError(`${prefix}string_id`, show(sid), "is not a string");
  }
  if (sid !== "") {
    if (!(id === undefined || id === null || id === 0 || id === "0" || id === "" || id === 0n)) {
      throw new PointIdError(
        `${prefix}id`,
        show(id),
        `must be 0 when string_id is set (${quote(sid)})`,
      );
    }
    return validateStringId(sid, `${prefix}string_id`);
  }
  if (id === undefined || id === null || id === "") return 0;
  if (typeof id === "string") return integerFromDecimal(id, `${prefix}id`);
  if (typeof id === "number" || typeof id === "bigint") {
    const v = canonicalId(id, `${prefix}id`);
    return v;
  }
  throw new PointIdError(`${prefix}id`, show(id), "is not an integer between 0 and 2^64 - 1");
}

/** An id as a message's (`id`, `string_id`) pair; bigints as decimal strings. */
export function idToWire(id: PointId): { id: number | string; string_id: string } {
  if (typeof id === "number") return { id, string_id: "" };
  if (typeof id === "bigint") return { id: id.toString(), string_id: "" };
  return { id: 0, string_id: id };
}

/**
 * The ids of a message's two lists (`ids`, `string_ids`), integers first, then strings, each in
 * the order given. `field` names the integer list (`ids`); the string list's name is
 * `string_${field}`. Does not bound the count: callers check `ids.length + string_ids.length`
 * against their limit before calling.
 */
export function idsFromWire(ids: unknown, stringIds: unknown, field = "ids"): PointId[] {
  const nums = ids ?? [];
  const strs = stringIds ?? [];
  if (!Array.isArray(nums)) throw new PointIdError(field, show(nums), "is not a list");
  if (!Array.isArray(strs)) {
    throw new PointIdError(`string_${field}`, show(strs), "is not a list");
  }
  const out: PointId[] = new Array(nums.length + strs.length);
  for (let i = 0; i < nums.length; i++) {
    const v = nums[i];
    if (v === "" || v === null || v === undefined) {
      throw new PointIdError(`${field}[${i}]`, show(v), "is not an integer id");
    }
    out[i] = typeof v === "string"
      ? integerFromDecimal(v, `${field}[${i}]`)
      : canonicalId(v, `${field}[${i}]`);
    if (typeof out[i] === "string") {
      throw new PointIdError(`${field}[${i}]`, show(v), "is not an integer id");
    }
  }
  for (let i = 0; i < strs.length; i++) {
    const v = strs[i];
    if (typeof v !== "string") {
      throw new PointIdError(`string_${field}[${i}]`, show(v), "is not a string");
    }
    out[nums.length + i] = validateStringId(v, `string_${field}[${i}]`);
  }
  return out;
}

/**
 * Ids as a message's two lists: integer ids (bigints as decimal strings) in `ids`, string ids
 * in `string_ids`, each keeping the order of `ids`. A receiver lists them integers first: sort
 * or partition beforehand where the order matters.
 */
export function idsToWire(
  ids: Iterable<PointId>,
): { ids: (number | string)[]; string_ids: string[] } {
  const nums: (number | string)[] = [];
  const strs: string[] = [];
  for (const id of ids) {
    if (typeof id === "string") strs.push(id);
    else nums.push(typeof id === "bigint" ? id.toString() : id);
  }
  return { ids: nums, string_ids: strs };
}

/** Whether `id` is an integer id of the uint32 era (0 .. 2^32 - 1). */
export function isU32Id(id: PointId): id is number {
  return typeof id === "number" && id <= ID_U32_MAX;
}

/**
 * Total order of ids: integers (numbers and bigints, by value) before strings; strings by
 * UTF-16 code units. Returns a negative number, 0 or a positive number.
 */
export function compareIds(a: PointId, b: PointId): number {
  const sa = typeof a === "string";
  const sb = typeof b === "string";
  if (sa !== sb) return sa ? 1 : -1;
  if (sa) return a < b ? -1 : a > b ? 1 : 0;
  // Both integers: canonical numbers are below every canonical bigint.
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (typeof a === "number") return -1;
  if (typeof b === "number") return 1;
  return (a as bigint) < (b as bigint) ? -1 : (a as bigint) > (b as bigint) ? 1 : 0;
}

/** An id as text for messages and logs: integers as digits, strings quoted as JSON. */
export function formatId(id: PointId): string {
  return typeof id === "string" ? quote(id) : id.toString();
}

/**
 * An id given in JSON (HTTP bodies, JSON lines, filters' `has_id`): a JSON number (an integer
 * 0 .. 2^53 - 1; a larger one has lost precision in the parser and is refused) or a string.
 */
export function idFromJson(value: unknown, field = "id"): PointId {
  if (typeof value === "number" || typeof value === "string") return canonicalId(value, field);
  throw new PointIdError(field, show(value), "is not an id (an integer or a string)");
}

/**
 * An id for a JSON answer: a number or a string; a bigint stays a bigint, which
 * `stringifyWithIds` writes as an exact JSON integer.
 */
export function idToJson(id: PointId): number | bigint | string {
  return id;
}

/**
 * `JSON.stringify` that writes bigints as exact JSON integers (plain `JSON.stringify` throws on
 * them), so 64-bit ids leave a JSON answer digit for digit.
 */
export function stringifyWithIds(value: unknown, space?: number): string {
  const marks: string[] = [];
  // A random tag per call: a payload string can hold any text, so a fixed marker could be
  // forged; JSON.stringify writes U+0000 as the six characters \u0000.
  const tag = Math.random().toString(36).slice(2, 10);
  const text = JSON.stringify(
    value,
    (_key, v) => {
      if (typeof v !== "bigint") return v;
      marks.push(v.toString());
      return `\u0000${tag}:${marks.length - 1}\u0000`;
    },
    space,
  );
  if (marks.length === 0) return text;
  const pattern = new RegExp(`"\\\\u0000${tag}:(\\d+)\\\\u0000"`, "g");
  return text.replace(pattern, (_m, i: string) => marks[Number(i)]);
}

/** Writes an id (kind byte, then u64 or string; see the module comment). */
export function writeId(w: BinaryWriter, id: PointId): void {
  if (typeof id === "string") {
    w.u8(KIND_STRING);
    w.string(id);
  } else {
    w.u8(KIND_INTEGER);
    w.u64(id);
  }
}

/** Reads an id written by `writeId`, checking it as a client's (BinaryFormatError if bad). */
export function readId(r: BinaryReader): PointId {
  const kind = r.u8();
  if (kind === KIND_INTEGER) {
    const v = r.u64();
    return v <= BigInt(SAFE_MAX) ? Number(v) : v;
  }
  if (kind === KIND_STRING) {
    const s = r.string();
    const problem = stringIdProblem(s);
    if (problem !== null) throw new BinaryFormatError(`String id ${quote(s)} ${problem}`);
    return s;
  }
  throw new BinaryFormatError(`Id kind ${kind} is not 0 (integer) or 1 (string)`);
}

/**
 * The collection-name rule, shared by the API validation, the storage layer (names become
 * directory names) and the WAL records: 1 to {@link COLLECTION_NAME_CHARS_MAX} characters from
 * `[A-Za-z0-9_-]`, so a name is always a safe, portable file name.
 *
 * @example
 * ```ts
 * import { collectionNameProblem, isCollectionName } from "./collection_name.ts";
 * isCollectionName("glove-100"); // true
 * collectionNameProblem("a/b", "name"); // 'name "a/b" must be 1 to 64 characters from …'
 * ```
 * @module
 */
import { COLLECTION_NAME_CHARS_MAX } from "./limits.ts";

const NAME = /^[A-Za-z0-9_-]+$/;

/** Whether `name` follows the collection-name rule. */
export function isCollectionName(name: unknown): name is string {
  return typeof name === "string" && name.length > 0 &&
    name.length <= COLLECTION_NAME_CHARS_MAX && NAME.test(name);
}

/** Shortens a quoted value for an error message. */
function quote(value: unknown): string {
  const s = typeof value === "string" ? JSON.stringify(value) : String(value);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** The message for a name that breaks the rule, naming `field`; null when the name is fine. */
export function collectionNameProblem(name: unknown, field: string): string | null {
  if (isCollectionName(name)) return null;
  return `${field} ${
    quote(name)
  } must be 1 to ${COLLECTION_NAME_CHARS_MAX} characters from A-Z, a-z, 0-9, "_" and "-"`;
}

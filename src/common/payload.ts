/**
 * Point payloads: the JSON object a point may carry beside its vector (see "Payloads" in
 * proto/vector_db.proto). This module checks a payload's JSON text against the limits of
 * src/common/limits.ts and turns it into the bytes that are stored, logged and copied.
 *
 * | rule                                   | limit                        | error names          |
 * |----------------------------------------|------------------------------|----------------------|
 * | UTF-8 bytes of the text (before parse) | PAYLOAD_BYTES_MAX (65,536)   | size and limit       |
 * | valid JSON                             |                              | the parser's reason  |
 * | top value is an object                 | (not an array, string, null) | the type found       |
 * | nesting of objects and arrays          | PAYLOAD_DEPTH_MAX (32)       | the path reached     |
 * | keys over all objects                  | PAYLOAD_KEYS_MAX (1,024)     | the path reached     |
 * | bytes of one key                       | PAYLOAD_KEY_BYTES_MAX (256)  | the path of the key  |
 * | numbers are finite doubles             | (e.g. `1e400` is refused)    | the path             |
 * | UTF-8 bytes of the canonical form      | PAYLOAD_BYTES_MAX            | size and limit       |
 *
 * **Canonical form**: `JSON.stringify` of the parsed value: no whitespace, keys in the order
 * they first appear (a repeated key keeps its last value, as JSON.parse does), numbers as
 * JavaScript prints them, strings with only the escapes JSON requires. Equal input text gives
 * equal bytes, so copies of a point can be compared byte for byte. The empty text means "no
 * payload" (null).
 *
 * The size is checked on the text before JSON.parse runs, so no request can make a server
 * parse more than PAYLOAD_BYTES_MAX bytes of JSON per payload.
 *
 * @module
 */
import { utf8Length } from "./utf8.ts";
import {
  PAYLOAD_BYTES_MAX,
  PAYLOAD_DEPTH_MAX,
  PAYLOAD_KEY_BYTES_MAX,
  PAYLOAD_KEYS_MAX,
} from "./limits.ts";

export { PAYLOAD_BYTES_MAX, PAYLOAD_DEPTH_MAX, PAYLOAD_KEY_BYTES_MAX, PAYLOAD_KEYS_MAX };

/**
 * A payload breaks a rule of the module table. A RangeError, so servers answer
 * INVALID_ARGUMENT; `field` is the request field (e.g. `points[3].payload`), `value` the text
 * (shortened in the message).
 */
export class PayloadError extends RangeError {
  constructor(readonly field: string, readonly value: string, message: string) {
    super(message);
    this.name = "PayloadError";
  }
}

/** Characters of a payload quoted in an error message. */
const QUOTE_CHARS_MAX = 48;

/** The text quoted for an error message: JSON-quoted, cut after {@link QUOTE_CHARS_MAX}. */
export function shortQuote(text: string): string {
  if (text.length <= QUOTE_CHARS_MAX) return JSON.stringify(text);
  return `${JSON.stringify(text.slice(0, QUOTE_CHARS_MAX))}... (${text.length} characters)`;
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** Walks a parsed value, enforcing depth, key and number rules; returns the keys counted. */
function check(
  value: unknown,
  path: string,
  depth: number,
  keys: number,
  fail: (message: string) => never,
): number {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) fail(`${path} is a number outside the double range`);
    return keys;
  }
  if (value === null || typeof value !== "object") return keys;
  if (depth > PAYLOAD_DEPTH_MAX) {
    fail(`${path} is nested ${depth} levels deep; the limit is ${PAYLOAD_DEPTH_MAX}`);
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      keys = check(value[i], `${path}[${i}]`, depth + 1, keys, fail);
    }
    return keys;
  }
  for (const key of Object.keys(value)) {
    const at = `${path}.${key.length > 32 ? `${key.slice(0, 32)}...` : key}`;
    if (++keys > PAYLOAD_KEYS_MAX) {
      fail(`has more than ${PAYLOAD_KEYS_MAX} keys (the limit, over all objects) at ${at}`);
    }
    const bytes = utf8Length(key);
    if (bytes > PAYLOAD_KEY_BYTES_MAX) {
      fail(`key ${at} is ${bytes} bytes long; the limit is ${PAYLOAD_KEY_BYTES_MAX}`);
    }
    keys = check((value as Record<string, unknown>)[key], at, depth + 1, keys, fail);
  }
  return keys;
}

/**
 * Checks a payload's JSON text and returns its canonical UTF-8 bytes, or null for the empty
 * text (no payload). Throws a {@link PayloadError} naming `field` and the (shortened) text.
 */
export function parsePayload(text: string, field = "payload"): Uint8Array | null {
  if (typeof text !== "string") {
    throw new PayloadError(
      field,
      String(text),
      `${field} must be a string of JSON text, got ${typeof text}`,
    );
  }
  if (text === "") return null;
  const fail = (message: string): never => {
    throw new PayloadError(field, text, `${field} ${shortQuote(text)} ${message}`);
  };
  // Every UTF-16 unit takes at least one UTF-8 byte, so the length alone refuses huge texts
  // before any work proportional to them.
  if (text.length > PAYLOAD_BYTES_MAX) {
    fail(`is at least ${text.length} bytes; the limit is ${PAYLOAD_BYTES_MAX}`);
  }
  const bytes = utf8Length(text);
  if (bytes > PAYLOAD_BYTES_MAX) fail(`is ${bytes} bytes; the limit is ${PAYLOAD_BYTES_MAX}`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    fail(`is not valid JSON (${(e as Error).message})`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    const kind = value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
    fail(`must be a JSON object, got ${kind}`);
  }
  check(value, "payload", 1, 0, fail);
  const canonical = utf8.encode(JSON.stringify(value));
  if (canonical.length > PAYLOAD_BYTES_MAX) {
    fail(`is ${canonical.length} bytes in compact form; the limit is ${PAYLOAD_BYTES_MAX}`);
  }
  return canonical;
}

/**
 * Checks a payload given as a parsed JSON value (the HTTP API's `payload` field): undefined or
 * null is no payload; anything else goes through {@link parsePayload} as its JSON text.
 */
export function payloadFromValue(value: unknown, field = "payload"): Uint8Array | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "object" || Array.isArray(value)) {
    const kind = Array.isArray(value) ? "an array" : typeof value;
    throw new PayloadError(
      field,
      String(value),
      `${field} must be a JSON object, got ${kind} ${shortQuote(String(value))}`,
    );
  }
  let text: string;
  try {
    text = JSON.stringify(value);
  } catch (e) {
    throw new PayloadError(
      field,
      "",
      `${field} cannot be written as JSON: ${(e as Error).message}`,
    );
  }
  return parsePayload(text, field);
}

/** The JSON text of stored payload bytes; "" for none (the wire form). */
export function payloadText(bytes: Uint8Array | null | undefined): string {
  if (bytes === null || bytes === undefined || bytes.length === 0) return "";
  return utf8Decoder.decode(bytes);
}

import assert from "node:assert/strict";
import { utf8Length } from "./utf8.ts";
import {
  parsePayload,
  PAYLOAD_BYTES_MAX,
  PAYLOAD_DEPTH_MAX,
  PAYLOAD_KEY_BYTES_MAX,
  PAYLOAD_KEYS_MAX,
  PayloadError,
  payloadFromValue,
  payloadText,
} from "./payload.ts";

const text = (b: Uint8Array | null) => payloadText(b);

function refuses(input: string, pattern: RegExp, field = "payload"): PayloadError {
  let caught: unknown = null;
  try {
    parsePayload(input, field);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof PayloadError, `expected a PayloadError for ${input.slice(0, 40)}`);
  assert.ok(caught instanceof RangeError);
  assert.equal(caught.field, field);
  assert.match(caught.message, pattern);
  assert.ok(caught.message.startsWith(field), caught.message);
  assert.ok(caught.message.length < 400, `message too long: ${caught.message.length}`);
  return caught;
}

Deno.test("parsePayload: empty text is no payload; objects come back compact", () => {
  assert.equal(parsePayload(""), null);
  assert.equal(
    text(parsePayload('{ "a" : 1 , "b": [true, null, "x\\u00e9"], "c": {} }')),
    '{"a":1,"b":[true,null,"xé"],"c":{}}',
  );
  // Key order kept; a repeated key keeps its last value.
  assert.equal(text(parsePayload('{"z":1,"a":2,"z":3}')), '{"z":3,"a":2}');
  // Equal meaning, equal bytes.
  assert.deepEqual(parsePayload('{"n": 1.0}'), parsePayload('{"n":1}'));
});

Deno.test("parsePayload: refuses non-objects, invalid JSON and out-of-range numbers", () => {
  refuses("[1,2]", /must be a JSON object, got an array/);
  refuses('"s"', /must be a JSON object, got string/);
  refuses("null", /got null/);
  refuses("42", /got number/);
  refuses("{", /is not valid JSON/);
  refuses('{"a":1}x', /is not valid JSON/, "points[3].payload");
  refuses('{"a":1e400}', /payload\.a is a number outside the double range/);
});

Deno.test("parsePayload: size is checked on the text, before parsing", () => {
  const big = `{"a":"${"x".repeat(PAYLOAD_BYTES_MAX)}"}`;
  const e = refuses(big, /the limit is 65536/);
  // The value is quoted shortened.
  assert.match(e.message, /\.\.\. \(65544 characters\)/);
  // Multi-byte characters count in UTF-8 bytes.
  const fits = `{"a":"${"é".repeat((PAYLOAD_BYTES_MAX - 8) / 2)}"}`;
  assert.equal(utf8Length(fits), PAYLOAD_BYTES_MAX - 8 + 8);
  assert.ok(parsePayload(fits) !== null);
  refuses(`{"a":"${"é".repeat(PAYLOAD_BYTES_MAX / 2)}"}`, /is 65544 bytes; the limit/);
  // Even invalid JSON over the limit is refused for its size (so never parsed).
  refuses("{" + " ".repeat(PAYLOAD_BYTES_MAX), /the limit is 65536/);
  // The compact form is checked too: 1e21 prints as 1e+21.
  const n = Math.floor((PAYLOAD_BYTES_MAX - 8) / 5);
  const nums = `[${Array(n).fill("1e21").join(",")}]`;
  const t = `{"a":${nums}}`;
  assert.ok(t.length <= PAYLOAD_BYTES_MAX, `${t.length}`);
  refuses(t, /in compact form; the limit is 65536/);
});

Deno.test("parsePayload: depth, key count and key length limits name the path", () => {
  const nest = (d: number) => "[".repeat(d - 1) + "]".repeat(d - 1);
  assert.ok(parsePayload(`{"a":${nest(PAYLOAD_DEPTH_MAX)}}`) !== null);
  refuses(
    `{"a":${nest(PAYLOAD_DEPTH_MAX + 1)}}`,
    /payload\.a(\[0\])+ is nested 33 levels deep; the limit is 32/,
  );
  // A very deep text is refused without a stack overflow.
  refuses(`{"a":${nest(20_000)}}`, /nested 33 levels deep/);
  const keys = (n: number) => `{${Array.from({ length: n }, (_, i) => `"k${i}":0`).join(",")}}`;
  assert.ok(parsePayload(keys(PAYLOAD_KEYS_MAX)) !== null);
  refuses(keys(PAYLOAD_KEYS_MAX + 1), /more than 1024 keys.* at payload\.k1024/);
  // Nested objects count towards the same total.
  refuses(`{"o":${keys(PAYLOAD_KEYS_MAX)}}`, /more than 1024 keys/);
  const k = "k".repeat(PAYLOAD_KEY_BYTES_MAX);
  assert.ok(parsePayload(`{"${k}":1}`) !== null);
  refuses(`{"x":{"${k}k":1}}`, /key payload\.x\.k{32}\.\.\. is 257 bytes long; the limit is 256/);
});

Deno.test("payloadFromValue: objects pass, other values are refused, null is none", () => {
  assert.equal(payloadFromValue(undefined), null);
  assert.equal(payloadFromValue(null), null);
  assert.equal(text(payloadFromValue({ a: [1, "b"] })), '{"a":[1,"b"]}');
  assert.throws(() => payloadFromValue([1]), /payload must be a JSON object, got an array/);
  assert.throws(
    () => payloadFromValue("x", "body.payload"),
    /body\.payload must be a JSON object, got string/,
  );
  assert.throws(() => parsePayload(7 as unknown as string), PayloadError);
});
